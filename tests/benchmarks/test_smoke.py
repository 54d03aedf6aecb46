"""Every benchmark's --quick mode runs to its JSON line, and the answers it compares agree.

Speed is for the benchmarks to report (benchmarks/RESULTS.md); these tests assert only what must hold on
any machine: the run finishes, the last line is the documented JSON, and the solvers a benchmark races
give the same answers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RAYLET_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\(raylet\)")  # a line Ray's raylet sends to every driver


def run_quick(name: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    # the JSON line is the benchmark's last; a driver joined to the session's Ray may still receive the raylet's
    # warnings after it (e.g. "10 PYTHON worker processes have been started")
    last = [line for line in done.stdout.strip().splitlines() if not RAYLET_LINE.match(line)][-1]
    figures: dict[str, Any] = json.loads(last)
    assert figures["benchmark"] == name
    assert figures["quick"] is True
    return figures


def test_allocator_benchmark_fast_and_reference_agree() -> None:
    figures = run_quick("allocator")
    assert {row["n"] for row in figures["rows"]} == {100, 1_000}
    for row in figures["rows"] + figures["batched"]:
        gaps = [value for key, value in row.items() if key.startswith("max_abs_dw")]
        assert gaps, row
        assert max(gaps) < 1e-6, row


def test_planner_benchmark_solvers_agree() -> None:
    figures = run_quick("planner")
    assert figures["rows"]
    for row in figures["rows"]:
        assert row["highs_objective"] == pytest.approx(row["clarabel_lp_objective"], rel=1e-6)
        assert row["dual_ascent_status"] == "optimal"
        assert row["qp_gap"] < 1e-5  # dual ascent against Clarabel on the same QP
        assert 0 <= row["lp_gap"] < 2e-3  # the LP surrogate: a little below the LP optimum, never above


def test_serving_benchmark_runs_all_three_paths() -> None:
    figures = run_quick("serving")
    (row,) = figures["rows"]
    assert row["n"] == 100
    assert row["grpc_calls"] > 10
    assert row["naive_calls"] == 5
    for key in ("inproc_p50_ms", "grpc_p50_ms", "naive_p50_ms", "grpc_throughput_rps_2_clients"):
        assert row[key] > 0, key


def test_memory_benchmark_measures_both_settings() -> None:
    # How many page faults the default setting costs depends on glibc's adaptive thresholds and differs from
    # run to run (0 to 582 per call seen in quick runs), so only the measurement itself is checked here;
    # tests/serving/test_memory.py checks the effect on a fixed allocation pattern.
    figures = run_quick("memory")
    (row,) = figures["rows"]
    assert row["calls"] == 40
    for key in ("default_p50_ms", "kept_p50_ms", "default_p99_ms", "kept_p99_ms"):
        assert row[key] > 0, key
    assert row["default_faults_per_call"] >= 0
    assert row["kept_faults_per_call"] >= 0


def test_ray_planner_benchmark_plans_the_same_on_ray(ray_address: str) -> None:
    figures = run_quick("ray_planner", "--address", ray_address)  # the session's Ray
    assert [(row["markets"], row["largest_market_pairs"] < row["pairs"]) for row in figures["rows"]] == [
        (2, True), (4, True)]
    for row in figures["rows"]:
        assert row["ray_matches_here"], row
        assert row["partitioned_objective"] > 0
    assert figures["size_reached"] in {0, *(row["pairs"] for row in figures["rows"])}


def test_ray_scoring_benchmark_scores_the_same_on_ray(ray_address: str) -> None:
    figures = run_quick("ray_scoring", "--address", ray_address)  # the session's Ray
    assert [row["candidates"] for row in figures["rows"]] == [20_000]
    for row in figures["rows"]:
        assert row["ray"], row
        for ray in row["ray"]:
            assert ray["matches_here"], ray
            assert ray["per_s"] > 0


def test_ray_training_benchmark_measures_both_distances(ray_address: str) -> None:
    figures = run_quick("ray_training", "--address", ray_address)  # the session's Ray
    assert [run["run"] for run in figures["runs"]] == ["single", "single, reordered 1", "single, reordered 2",
                                                       "single, reordered 3", "Ray 2 workers"]
    assert set(figures["ray_distance"]) == set(figures["reordered_spread"])
    # reordering the rows really changes the minibatches (a spread of 0 would make the yardstick meaningless)
    assert figures["reordered_spread"]["best_val_loss"] > 0
    assert figures["ray_distance"]["best_val_loss"] < 0.01 * figures["runs"][0]["best_val_loss"]


@pytest.mark.parametrize("name", ["simulator", "mtl"])
def test_other_benchmarks_run(name: str) -> None:
    run_quick(name)
