"""Prometheus metrics over HTTP: go-grpc-prometheus names per method and code, and the ranking's own."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.auth import Tokens
from serving.core import RankingCore
from serving.generated.ecorank.v1 import traffic_pb2
from serving.metrics import ServingMetrics
from serving.server import ServerOptions
from tests.serving.conftest import ADMIN_TOKEN, candidates, serving, to_request


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _handled(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], method: str, code: str) -> float:
    labels = (("grpc_code", code), ("grpc_method", method), ("grpc_service", "ecorank.v1.TrafficRegulator"),
              ("grpc_type", "unary"))
    return samples.get(("grpc_server_handled_total", labels), 0.0)


def _total_handled(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "grpc_server_handled_total")


def test_metrics_count_calls_by_code_and_time_the_model(core: RankingCore, plan_dirs: tuple[Path, Path]) -> None:
    metrics = ServingMetrics()
    options = ServerOptions(port=0, model_threads=1, metrics=metrics, tokens=Tokens(admin=ADMIN_TOKEN))
    with serving(core, options) as s:
        port = metrics.serve_http(0)
        for seed in (1, 2):
            s.stub.Rank(to_request(candidates(core, 40, seed=seed)), timeout=30)
        bad = to_request(candidates(core, 40), surface="feed")
        with pytest.raises(grpc.RpcError):
            s.stub.Rank(bad, timeout=30)
        with pytest.raises(grpc.RpcError):
            s.stub.Reload(traffic_pb2.ReloadRequest(plan_path=str(plan_dirs[1])), timeout=30)  # no token
        # the server counts a call when its handler returns, which can be just after the client has the answer
        deadline = time.monotonic() + 5
        samples = _scrape(port)
        while _total_handled(samples) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
            samples = _scrape(port)
    assert _handled(samples, "Rank", "OK") == 2
    assert _handled(samples, "Rank", "INVALID_ARGUMENT") == 1
    assert _handled(samples, "Reload", "UNAUTHENTICATED") == 1
    started = (("grpc_method", "Rank"), ("grpc_service", "ecorank.v1.TrafficRegulator"), ("grpc_type", "unary"))
    assert samples[("grpc_server_started_total", started)] == 3
    assert samples[("grpc_server_handling_seconds_count", started)] == 3
    assert samples[("ecorank_candidates_per_request_count", ())] == 2
    assert samples[("ecorank_candidates_per_request_sum", ())] == 80
    assert samples[("ecorank_model_seconds_count", ())] == 2
    assert samples[("ecorank_model_seconds_sum", ())] > 0
    assert samples[("ecorank_solver_seconds_count", (("status", "ok"),))] == 2
    assert samples[("ecorank_degraded_total", ())] == 0
