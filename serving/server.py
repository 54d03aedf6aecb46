"""The gRPC adapter: ecorank.v1.TrafficRegulator on grpc.aio, plus grpc.health.v1 and server reflection.

The servicer converts messages to the core's plain types and back (serving/core.py does the work) and maps
errors to status codes as the design note lists them: bad input -> INVALID_ARGUMENT with a
google.rpc.BadRequest naming each field; too little time left -> DEADLINE_EXCEEDED before the model runs;
more calls in flight than `max_concurrent_rpcs` -> RESOURCE_EXHAUSTED (grpc's own limit); a refused
reload -> FAILED_PRECONDITION, the old state still serving; anything unexpected -> INTERNAL with the
exception named (never a bare UNKNOWN). The model and the solver run in a small thread
pool (torch and numpy release the GIL), so the event loop keeps accepting calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import torch
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from serving.auth import TokenAuthInterceptor, Tokens
from serving.convert import to_rank_input, to_response
from serving.core import InvalidRequest, Ranked, RankingCore, ReloadError
from serving.generated.ecorank.v1 import traffic_pb2, traffic_pb2_grpc
from serving.metrics import MetricsInterceptor, ServingMetrics

LOG = logging.getLogger("ecorank.serving")
SERVICE_NAME = traffic_pb2.DESCRIPTOR.services_by_name["TrafficRegulator"].full_name  # ecorank.v1.TrafficRegulator
DEFAULT_PORT = 50051
# The default 4 MB is too small for 10,000 candidates x 64 float32 features (2.6 MB) plus ids; 64 MB bounds
# what one call can make the server hold.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Below this much time left the request is answered DEADLINE_EXCEEDED before the model runs.
MIN_TIME_LEFT_S = 0.002


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT         # 0: any free port (tests)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_rpcs: int = 64    # beyond: RESOURCE_EXHAUSTED
    model_threads: int = 2           # torch intra-op threads and the worker pool size
    reuse_port: bool = False         # SO_REUSEPORT (several worker processes on one port); off in tests
    tokens: Tokens = field(default_factory=Tokens)  # serving/auth.py: no admin token, no admin RPCs
    tls_cert: Path | None = None     # PEM certificate chain and private key: serve TLS instead of plaintext
    tls_key: Path | None = None
    metrics: ServingMetrics | None = None  # Prometheus counters and histograms (serving/metrics.py)


def _bad_request(err: InvalidRequest) -> grpc.Status:
    details = any_pb2.Any()
    details.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        for v in err.violations]))
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(err),
                                                  details=[details]))


class TrafficRegulatorServicer(traffic_pb2_grpc.TrafficRegulatorServicer):
    def __init__(self, core: RankingCore, executor: ThreadPoolExecutor, metrics: ServingMetrics | None = None
                 ) -> None:
        self.core = core
        self.executor = executor
        self.metrics = metrics

    def _log(self, request: traffic_pb2.RankRequest, code: str, started: float, ranked: Ranked | None = None,
             error: str = "") -> None:
        """One JSON line per Rank call on the `ecorank.serving` logger (request id, versions, outcome, time)."""
        if not LOG.isEnabledFor(logging.INFO):
            return
        record: dict[str, object] = {
            "event": "rank", "request_id": request.request_id, "surface": request.surface,
            "market": request.market, "candidates": len(request.candidates.item_ids), "code": code,
            "ms": round(1e3 * (time.perf_counter() - started), 3)}
        if ranked is not None:
            record.update(model_version=ranked.model_version, plan_version=ranked.plan_version,
                          degraded=ranked.degraded, model_ms=round(1e3 * ranked.model_seconds, 3),
                          solver_ms=round(1e3 * ranked.solver_seconds, 3))
        if error:
            record["error"] = error
        LOG.info(json.dumps(record))

    async def Rank(self, request: traffic_pb2.RankRequest,
                   context: grpc.aio.ServicerContext) -> traffic_pb2.RankResponse:
        started = time.perf_counter()
        try:
            decoded = to_rank_input(request)
        except InvalidRequest as err:
            self._log(request, "INVALID_ARGUMENT", started, error=str(err))
            await context.abort_with_status(_bad_request(err))
        left = context.time_remaining()
        if left is not None and left < MIN_TIME_LEFT_S:
            self._log(request, "DEADLINE_EXCEEDED", started)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"{left * 1e3:.1f} ms left of the deadline: not enough to rank "
                                f"{len(decoded.item_ids)} candidates; set a longer deadline")
        try:
            ranked = await asyncio.get_running_loop().run_in_executor(self.executor, self.core.rank, decoded)
        except InvalidRequest as err:
            self._log(request, "INVALID_ARGUMENT", started, error=str(err))
            await context.abort_with_status(_bad_request(err))
        except Exception as err:  # a bug, not the caller's fault: say what failed; the server keeps serving
            self._log(request, "INTERNAL", started, error=f"{type(err).__name__}: {err}")
            await context.abort(grpc.StatusCode.INTERNAL, f"ranking request {request.request_id!r} failed: "
                                f"{type(err).__name__}: {err}")
        if self.metrics is not None:
            self.metrics.observe_rank(candidates=len(ranked.weights), model_s=ranked.model_seconds,
                                      solver_s=ranked.solver_seconds, degraded=ranked.degraded)
        response = to_response(request.request_id, ranked)
        self._log(request, "OK", started, ranked)
        return response

    async def GetModelInfo(self, request: traffic_pb2.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> traffic_pb2.ModelInfo:
        state, core = self.core.state, self.core
        return traffic_pb2.ModelInfo(
            model_name=state.bundle.model_name, model_version=state.bundle.version,
            feature_names=list(state.feature_names), heads=[h.name for h in state.bundle.model.heads],
            plan_version=state.plan_version, policy_name=core.policy.name,
            policy_fingerprint=core.policy.fingerprint(), surfaces=list(core.limits.surfaces),
            max_candidates=core.limits.max_candidates,
            surface_policies=[traffic_pb2.SurfacePolicy(surface=s, policy_name=core.policy_for(s).name,
                                                        policy_fingerprint=core.policy_for(s).fingerprint())
                              for s in core.limits.surfaces])

    async def Reload(self, request: traffic_pb2.ReloadRequest,
                     context: grpc.aio.ServicerContext) -> traffic_pb2.ReloadResponse:
        bundle = Path(request.bundle_path) if request.bundle_path else None
        plan = Path(request.plan_path) if request.plan_path else None
        if bundle is None and plan is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "Reload: received neither bundle_path nor plan_path; expected at least one")
        try:
            state = await asyncio.get_running_loop().run_in_executor(
                self.executor, lambda: self.core.reload(bundle_path=bundle, plan_path=plan))
        except ReloadError as err:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return traffic_pb2.ReloadResponse(model_version=state.bundle.version, plan_version=state.plan_version)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    executor: ThreadPoolExecutor

    async def stop(self, grace: float | None = 5.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then drain in-flight calls for `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.executor.shutdown(wait=True)


async def start_server(core: RankingCore, options: ServerOptions | None = None) -> RunningServer:
    """Start TrafficRegulator, health and reflection on options.host:options.port; returns the bound port."""
    o = options or ServerOptions()
    torch.set_num_threads(o.model_threads)  # oversubscribed threads pushed p99 from 14 ms to 255-495 ms
    executor = ThreadPoolExecutor(max_workers=o.model_threads, thread_name_prefix="ecorank-model")
    if (o.tls_cert is None) != (o.tls_key is None):
        raise ValueError("TLS needs both a certificate and its private key (--tls-cert and --tls-key); got one")
    server = grpc.aio.server(
        # outermost first: metrics see every call, the ones auth turns away included
        interceptors=[*([MetricsInterceptor(o.metrics)] if o.metrics is not None else []),
                      TokenAuthInterceptor(o.tokens)],
        maximum_concurrent_rpcs=o.max_concurrent_rpcs,
        options=[("grpc.max_receive_message_length", o.max_message_bytes),
                 ("grpc.max_send_message_length", o.max_message_bytes),
                 ("grpc.so_reuseport", 1 if o.reuse_port else 0)])
    traffic_pb2_grpc.add_TrafficRegulatorServicer_to_server(  # type: ignore[no-untyped-call]
        TrafficRegulatorServicer(core, executor, o.metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{o.host}:{o.port}"
    if o.tls_cert is not None and o.tls_key is not None:
        credentials = grpc.ssl_server_credentials([(o.tls_key.read_bytes(), o.tls_cert.read_bytes())])
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {o.host}:{o.port}; pick a free port with --port")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=port, health=health_servicer, executor=executor)
