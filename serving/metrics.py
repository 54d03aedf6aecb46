"""Prometheus metrics: the go-grpc-prometheus names for every RPC, plus the ranking's own.

    grpc_server_started_total{grpc_type, grpc_service, grpc_method}
    grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}
    grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}       (histogram)
    ecorank_model_seconds, ecorank_solver_seconds{status="ok"|"degraded"}  (histograms)
    ecorank_candidates_per_request (histogram), ecorank_degraded_total (counter)

Served over HTTP on a port of their own (`ecorank serve --metrics-port`), from a registry owned by the
server (not the process-global one), so several servers in one process (tests) do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CANDIDATE_BUCKETS = (1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter("grpc_server_started_total", "RPCs started on the server.", labels,
                               registry=self.registry)
        self.handled = Counter("grpc_server_handled_total", "RPCs completed on the server, by status code.",
                               (*labels, "grpc_code"), registry=self.registry)
        self.handling = Histogram("grpc_server_handling_seconds", "Time from receiving an RPC to answering it.",
                                  labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model = Histogram("ecorank_model_seconds", "Multi-task model prediction time per request.",
                               buckets=LATENCY_BUCKETS, registry=self.registry)
        self.solver = Histogram("ecorank_solver_seconds", "Blend + prices + allocation time per request.",
                                ("status",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.candidates = Histogram("ecorank_candidates_per_request", "Candidates per ranked request.",
                                    buckets=CANDIDATE_BUCKETS, registry=self.registry)
        self.degraded = Counter("ecorank_degraded_total", "Requests answered with a fallback (degraded).",
                                registry=self.registry)

    def observe_rank(self, *, candidates: int, model_s: float, solver_s: float, degraded: bool) -> None:
        self.candidates.observe(candidates)
        self.model.observe(model_s)
        self.solver.labels(status="degraded" if degraded else "ok").observe(solver_s)
        if degraded:
            self.degraded.inc()

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics endpoint in a background thread; returns the bound port (port 0: any free one)."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts and times every unary RPC with the status it ended with."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:  # streams (health Watch, reflection) pass as they are
            return handler
        service, _, method = details.method.lstrip("/").rpartition("/")
        labels = {"grpc_type": "unary", "grpc_service": service, "grpc_method": method}
        behavior, m = handler.unary_unary, self.metrics

        async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
            m.started.labels(**labels).inc()
            started, code = time.perf_counter(), grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except BaseException:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                if not isinstance(code, grpc.StatusCode):  # aio reports an int code after abort
                    code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
                m.handled.labels(**labels, grpc_code=code.name).inc()
                m.handling.labels(**labels).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(measured, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)
