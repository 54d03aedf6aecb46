"""The command line: a real run, and every documented bad input exits 2 with a message, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main


def test_simulate_writes_the_run_folder_and_prints_the_table(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["simulate", "--scenario", "S2", "--preset", "tiny", "--policies", "p0,p1", "--seeds", "2",
                 "--out", str(out), "--quiet", "--set", "run.rounds=12"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "S2 Re-upload wave" in printed
    assert "p0 (ref)" in printed
    assert "gmv_rel" in printed
    assert (out / "summary.csv").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["overrides"] == ["run.rounds=12"]
    assert manifest["config"]["run"]["rounds"] == 12


def test_simulate_json_and_parallel_jobs_match_serial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--scenario", "S1", "--preset", "tiny", "--policies", "p0,random", "--seeds", "2",
            "--quiet", "--json", "--set", "run.rounds=8"]
    assert main([*args, "--out", str(tmp_path / "serial")]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "parallel"), "--jobs", "2"]) == 0
    parallel = json.loads(capsys.readouterr().out)
    assert serial == parallel


def test_listing_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    listing = capsys.readouterr().out
    assert all(s in listing for s in ("S0", "S1", "S2", "S3", "S4", "matthew_lockin"))
    assert main(["policies"]) == 0
    assert "p0" in capsys.readouterr().out
    assert main(["config", "--scenario", "S3", "--preset", "tiny", "--set", "users.n_users=123"]) == 0
    assert json.loads(capsys.readouterr().out)["users"]["n_users"] == 123


@pytest.mark.parametrize(("args", "message"), [
    (["simulate", "--scenario", "S9"], "unknown scenario 'S9'"),
    (["simulate", "--preset", "huge"], "invalid choice: 'huge'"),
    (["simulate", "--policies", "p0,p7"], "unknown ['p7']"),
    (["simulate", "--policies", "p0,p0"], "names a policy twice"),
    (["simulate", "--seeds", "0"], "received '0'; expected an integer >= 1"),
    (["simulate", "--seeds", "two"], "received 'two'; expected an integer"),
    (["simulate", "--set", "users.n_usrs=3"], "did you mean 'n_users'"),
    (["simulate", "--set", "run.burn_in=500"], "run.burn_in = 500 must be smaller than run.rounds"),
    (["simulate", "--impressions", "some"], "invalid choice: 'some'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_a_clear_message_and_no_traceback(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "experiments.cli", *args, "--preset", "tiny"]
                            if args[0] == "simulate" and "--preset" not in args else
                            [sys.executable, "-m", "experiments.cli", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
