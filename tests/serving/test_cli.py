"""`ecorank serve` as a real process (the embedded default, built into a temporary cache) and `ecorank rank`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from serving.client import TrafficClient
from serving.convert import rank_request


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "ECORANK_CACHE": str(tmp_path_factory.mktemp("cache"))}
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "serve", "--port", "0", "--threads", "1",
                                "--grace", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    started = time.monotonic()
    event: dict[str, str] = {}
    while not event:  # the default is built first (about 10 s; HiGHS prints its banner), then one JSON line
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        event = _event(line)
    assert event["event"] == "serving"
    assert time.monotonic() - started < 60  # ready within 60 s on a fresh cache
    try:
        yield process, event["address"]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _event(line: str) -> dict[str, str]:
    """The JSON event a line holds, or {} for anything else on stdout."""
    try:
        parsed = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) and "event" in parsed else {}


def frame_for(client: TrafficClient, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    features = {name: rng.random(n) for name in client.feature_names()}
    creator = rng.integers(0, 40, n)
    return pd.DataFrame({"item_id": np.arange(n), "creator_id": creator, "cluster_id": creator // 2,
                         "original": rng.random(n) < 0.4, **features})


def test_default_server_ranks_and_the_rank_command_scores_a_file(server: tuple[subprocess.Popen[str], str],
                                                                  tmp_path: Path) -> None:
    _, address = server
    with TrafficClient(address) as client:
        info = client.model_info()
        assert info.plan_version == 1
        frame = frame_for(client, 200)
        result = client.rank(frame)
    assert result.weights.sum() == pytest.approx(1.0)
    frame.to_parquet(tmp_path / "candidates.parquet")
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "rank", "--data",
                           str(tmp_path / "candidates.parquet"), "--server", address,
                           "--out", str(tmp_path / "weights.parquet")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    weights = pd.read_parquet(tmp_path / "weights.parquet")
    assert np.allclose(weights["weight"], result.weights)
    assert json.loads(done.stdout)["candidates"] == 200
    frame.drop(columns=["price"]).to_parquet(tmp_path / "bad.parquet")
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "rank", "--data", str(tmp_path / "bad.parquet"),
                          "--server", address], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2
    assert "missing columns ['price']" in bad.stderr


def test_sigterm_drains_the_call_in_flight_then_stops(server: tuple[subprocess.Popen[str], str]) -> None:
    process, address = server
    with TrafficClient(address, timeout=60) as client:
        frame = frame_for(client, 10_000)
        channel_future = client.stub.Rank.future(_request(client, frame), timeout=60)
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        answer = channel_future.result()  # the call that was in flight is answered, not cut off
        assert len(answer.weights) == 10_000
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    events = [e["event"] for e in map(_event, process.stdout.read().splitlines()) if e]
    assert events == ["draining", "stopped"]


def _request(client: TrafficClient, frame: pd.DataFrame) -> object:
    return rank_request(frame["item_id"], frame["creator_id"], frame[list(client.feature_names())],
                        cluster_ids=frame["cluster_id"], original=frame["original"], request_id="big")


def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    pd.DataFrame({"item_id": [1]}).to_parquet(tmp_path / "one.parquet")
    with TrafficClient("127.0.0.1:1", timeout=2) as client, pytest.raises(grpc.RpcError) as raised:
        client.model_info()
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_workers_share_one_port_and_stop_together(bundle_dir: Path, plan_dirs: tuple[Path, Path]) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "serve", "--bundle", str(bundle_dir),
                                "--plan", str(plan_dirs[0]), "--port", str(port), "--workers", "2", "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        serving = []
        while len(serving) < 2:
            line = process.stdout.readline()
            assert line, "a worker exited before serving"
            if _event(line).get("event") == "serving":
                serving.append(_event(line))
        assert {e["address"] for e in serving} == {f"127.0.0.1:{port}"}
        assert len({e["pid"] for e in serving}) == 2
        for _ in range(6):  # fresh connections; the kernel spreads them over the workers
            with TrafficClient(f"127.0.0.1:{port}") as client:
                assert client.rank(frame_for(client, 20)).weights.sum() == pytest.approx(1.0)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        stopped = [e for e in map(_event, process.stdout.read().splitlines()) if e.get("event") == "stopped"]
        assert len(stopped) == 2
    finally:
        if process.poll() is None:
            process.kill()


def test_workers_need_a_fixed_port() -> None:
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", "--workers", "2", "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "--workers > 1 needs a fixed --port" in done.stderr


@pytest.mark.parametrize(("arguments", "message"), [
    (["--surface-policy", "shelf"], "expected SURFACE=POLICY"),
    (["--surface-policy", "shelf=nope"], "unknown policy 'nope'"),
    ([], "is not a model bundle"),
])
def test_serve_errors_say_what_to_send(tmp_path: Path, arguments: list[str], message: str) -> None:
    """Bad options end with exit 2 and one line naming the fix, not a traceback."""
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", *arguments, "--port", "0",
                           "--bundle", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_watch_picks_up_a_new_plan_version(bundle_dir: Path, plan_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    plans = tmp_path / "plans"
    shutil.copytree(plan_dirs[0], plans / "v000001")
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "serve", "--bundle", str(bundle_dir),
                                "--plan", str(plans / "v000001"), "--port", "0", "--threads", "1", "--watch", "0.2"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    try:
        while _event(process.stdout.readline() or '{"event": "eof"}').get("event") not in ("serving", "eof"):
            pass
        shutil.copytree(plan_dirs[1], plans / "v000002")
        event: dict[str, str] = {}
        while event.get("event") != "watch":
            line = process.stdout.readline()
            assert line, "the server exited"
            event = _event(line)
        assert event["detail"] == f"reloaded plan {plans / 'v000002'}"
        assert event["plan_version"] == 2  # type: ignore[comparison-overlap]
    finally:
        process.terminate()
        process.wait(timeout=30)
