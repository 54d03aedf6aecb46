"""A real grpc.aio server on loopback (port 0): answers equal the in-process core's; bad input gets
INVALID_ARGUMENT with field details and the server keeps serving; health, reflection, limits, reload."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from serving.core import RankingCore
from serving.generated.ecorank.v1 import traffic_pb2
from serving.server import SERVICE_NAME, ServerOptions
from tests.serving.conftest import ADMIN, Served, candidates, serving, to_request


def test_rank_over_grpc_equals_the_in_process_core(served: Served) -> None:
    """Bit for bit at the server's thread count (BLAS may round differently with another one)."""
    x = replace(candidates(served.core, 300, seed=5), explain=True)
    response = served.stub.Rank(to_request(x), timeout=30)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the served fixture's model_threads
    try:
        local = served.core.rank(x)
    finally:
        torch.set_num_threads(previous)
    assert response.request_id == x.request_id
    assert np.array_equal(np.array(response.weights), local.weights)  # doubles travel exactly
    assert list(response.ranking) == local.ranking.tolist()
    for head in ("gmv", "prosperity", "risk", "complaint"):
        assert np.array_equal(np.array(getattr(response.predictions, head)), local.predictions[head]), head
    assert response.model_version == served.core.state.bundle.version
    assert response.plan_version == 1
    assert response.policy_name == "default"
    assert len(response.explanation.binding) == 300
    assert not response.degraded


def test_no_explanation_unless_asked(served: Served) -> None:
    response = served.stub.Rank(to_request(candidates(served.core, 20)), timeout=30)
    assert not response.HasField("explanation")


def test_model_info_publishes_the_feature_order(served: Served) -> None:
    info = served.stub.GetModelInfo(traffic_pb2.GetModelInfoRequest(), timeout=30)
    assert tuple(info.feature_names) == served.core.state.feature_names
    assert set(info.heads) == {"gmv", "prosperity", "risk", "complaint"}
    assert info.plan_version == 1
    assert list(info.surfaces) == ["content", "shelf"]
    assert info.max_candidates == 10_000
    assert [(p.surface, p.policy_name) for p in info.surface_policies] == [("content", "default"),
                                                                          ("shelf", "default")]
    assert {p.policy_fingerprint for p in info.surface_policies} == {info.policy_fingerprint}


def test_surface_policies_are_published_and_served(core: RankingCore) -> None:
    from fairness.policy import load_policy

    shelf = load_policy("default", overrides=["name=shelf_policy", "allocation.item_cap=0.1"])
    both = RankingCore(core.state.bundle, core.policy, plan=core.state.plan, surface_policies={"shelf": shelf})
    with serving(both, ServerOptions(port=0, model_threads=1)) as running:
        info = running.stub.GetModelInfo(traffic_pb2.GetModelInfoRequest(), timeout=30)
        assert {p.surface: p.policy_name for p in info.surface_policies} == {"content": "default",
                                                                            "shelf": "shelf_policy"}
        assert {p.surface: p.policy_fingerprint for p in info.surface_policies}["shelf"] == shelf.fingerprint()
        x = candidates(both, 100, seed=2)
        answer = running.stub.Rank(to_request(x, surface="shelf"), timeout=30)
        assert answer.policy_name == "shelf_policy"
        assert max(answer.weights) <= 0.1 + 1e-12


def _field_violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def _blob(request: traffic_pb2.RankRequest, data: bytes, rows: int | None = None) -> traffic_pb2.RankRequest:
    request.candidates.features.data = data
    if rows is not None:
        request.candidates.features.rows = rows
    return request


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda r: _blob(r, r.candidates.features.data[:-4]), "candidates.features.data", "expected rows x cols x 4"),
    (lambda r: _blob(r, np.full((10, 12), np.inf, "<f4").tobytes()), "candidates.features.data", "non-finite"),
    (lambda r: _blob(r, b"", rows=0), "candidates.features.rows", "expected one row per candidate (10)"),
    (lambda r: r.candidates.creator_ids.pop(), "candidates.creator_ids", "received 9 entries"),
    (lambda r: r.candidates.item_ids.__setitem__(1, r.candidates.item_ids[0]), "candidates.item_ids", "duplicated"),
    (lambda r: setattr(r, "surface", "feed"), "surface", "received 'feed'"),
    (lambda r: r.blend_overrides.__setitem__("risk", 99.0), "blend_overrides", "outside the allowed range"),
    (lambda r: r.ClearField("candidates"), "candidates.item_ids", "empty batch"),
])
def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(served: Served, mutate: object, field: str,
                                                                    message: str) -> None:
    request = to_request(candidates(served.core, 10))
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.Rank(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = _field_violations(raised.value)
    assert field in violations, violations
    assert message in violations[field]
    assert message in raised.value.details()
    ok = served.stub.Rank(to_request(candidates(served.core, 10)), timeout=30)  # still serving
    assert sum(ok.weights) == pytest.approx(1.0)


def test_too_many_candidates_is_refused_before_the_model(served: Served) -> None:
    served.core.limits = replace(served.core.limits, max_candidates=50)
    with pytest.raises(grpc.RpcError) as raised:
        served.stub.Rank(to_request(candidates(served.core, 51)), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected at most 50 per request" in raised.value.details()


def test_health_and_reflection(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    answers = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names
    files = list(reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol=SERVICE_NAME)]), timeout=10))
    assert files[0].file_descriptor_response.file_descriptor_proto  # enough for grpcurl to build requests


def test_reload_under_load_fails_no_call_and_refuses_a_corrupt_bundle(served: Served, plan_dirs: tuple[Path, Path],
                                                                      bundle_dir: Path, tmp_path: Path) -> None:
    request = to_request(candidates(served.core, 100, seed=9))
    stop, failures, versions = threading.Event(), [], set()

    def hammer() -> None:
        while not stop.is_set():
            try:
                versions.add(served.stub.Rank(request, timeout=30).plan_version)
            except grpc.RpcError as err:  # any failed call fails the test
                failures.append(err)

    with ThreadPoolExecutor(max_workers=3) as pool:
        for _ in range(3):
            pool.submit(hammer)
        while not versions and not failures:  # calls are flowing before the first swap
            stop.wait(0.01)
        for plan in (plan_dirs[1], plan_dirs[0], plan_dirs[1]):
            answer = served.stub.Reload(traffic_pb2.ReloadRequest(plan_path=str(plan)), timeout=60, metadata=ADMIN)
            assert answer.plan_version in (1, 2)
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "bundle.json").write_text("{not json")
        (broken / "model.pt").write_bytes(b"\0")
        with pytest.raises(grpc.RpcError) as raised:
            served.stub.Reload(traffic_pb2.ReloadRequest(bundle_path=str(broken)), timeout=60, metadata=ADMIN)
        stop.set()
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "still serving model" in raised.value.details()
    assert failures == []
    assert versions == {1, 2}
    after = served.stub.Rank(request, timeout=30)
    assert after.plan_version == 2
    assert after.model_version == served.core.state.bundle.version


def test_every_rank_call_logs_one_json_line(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    caplog.set_level(logging.INFO, logger="ecorank.serving")
    served.stub.Rank(to_request(candidates(served.core, 30)), timeout=30)
    with pytest.raises(grpc.RpcError):
        served.stub.Rank(_blob(to_request(candidates(served.core, 30)), b"x"), timeout=30)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ecorank.serving"]
    assert [line["code"] for line in lines] == ["OK", "INVALID_ARGUMENT"]
    ok, bad = lines
    assert ok["request_id"] == "r0"
    assert ok["candidates"] == 30
    assert ok["plan_version"] == 1
    assert ok["model_version"] == served.core.state.bundle.version
    assert ok["ms"] > 0
    assert "expected rows x cols x 4" in bad["error"]
