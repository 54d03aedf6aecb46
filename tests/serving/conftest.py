"""Serving fixtures: one small trained bundle, one traffic plan, a core, and a real server on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from fairness.planner import plan_traffic, save_plan, synthetic_inputs
from fairness.policy import load_policy
from mtl.bundle import load_bundle
from serving.auth import Tokens
from serving.convert import rank_request
from serving.core import RankingCore, RankInput
from serving.generated.ecorank.v1 import traffic_pb2, traffic_pb2_grpc
from serving.server import RunningServer, ServerOptions, start_server
from tests.bundles import small_bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory, rounds=10, epochs=2)


@pytest.fixture(scope="session")
def plan_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two saved plans (versions 1 and 2) over the same creators."""
    policy = load_policy()
    out = tmp_path_factory.mktemp("plans")
    inputs = synthetic_inputs(400, np.random.default_rng(0))
    return (save_plan(plan_traffic(inputs, policy, version=1), out),
            save_plan(plan_traffic(inputs, policy, version=2), out))


@pytest.fixture
def core(bundle_dir: Path, plan_dirs: tuple[Path, Path]) -> RankingCore:
    from fairness.planner import load_plan

    return RankingCore(load_bundle(bundle_dir), load_policy(), plan=load_plan(plan_dirs[0]))


def candidates(core: RankingCore, n: int, seed: int = 0) -> RankInput:
    """n candidates of creators in the plan, random features, a third of them originals."""
    rng = np.random.default_rng(seed)
    plan = core.state.engine.plan
    assert plan is not None
    pool = plan.creators
    rows = rng.choice(len(pool), size=n)
    cols = len(core.state.feature_names)
    return RankInput(request_id=f"r{seed}", surface="content", item_ids=rng.permutation(10 * n)[:n].astype(np.int64),
                     creator_ids=pool["creator"].to_numpy()[rows], cluster_ids=pool["cluster"].to_numpy()[rows],
                     original=rng.random(n) < 0.33, features=rng.random((n, cols)).astype(np.float32))


def to_request(x: RankInput, **changes: object) -> traffic_pb2.RankRequest:
    request = rank_request(x.item_ids, x.creator_ids, x.features, cluster_ids=x.cluster_ids, original=x.original,
                           surface=x.surface, overrides=x.overrides, explain=x.explain, request_id=x.request_id,
                           market="test")
    for key, value in changes.items():
        setattr(request, key, value)
    return request


@dataclass
class Served:
    core: RankingCore
    port: int
    stub: traffic_pb2_grpc.TrafficRegulatorStub
    channel: grpc.Channel


ADMIN_TOKEN = "admin-test-token"
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)


@contextmanager
def serving(core: RankingCore, options: ServerOptions, *, credentials: grpc.ChannelCredentials | None = None,
            ) -> Iterator[Served]:
    """A real grpc.aio server on 127.0.0.1, port 0 (so_reuseport off), on its own event loop thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        running: RunningServer = asyncio.run_coroutine_threadsafe(start_server(core, options), loop).result(30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        raise
    target = f"127.0.0.1:{running.port}"
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    try:
        yield Served(core=core, port=running.port, stub=traffic_pb2_grpc.TrafficRegulatorStub(channel),
                     channel=channel)
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(running.stop(grace=1.0), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@pytest.fixture
def served(core: RankingCore) -> Iterator[Served]:
    """The server most tests use: data RPCs open, admin RPCs with ADMIN_TOKEN."""
    with serving(core, ServerOptions(port=0, model_threads=1, tokens=Tokens(admin=ADMIN_TOKEN))) as running:
        yield running
