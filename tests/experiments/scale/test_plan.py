"""The per-market planner on Ray tasks gives the plan of the in-process per-market planner, and
`ecorank plan` writes a plan that the server loads (in process, on Ray, from input files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.scale.plan import plan_markets_on_ray
from fairness.planner import load_plan
from fairness.planner.partition import plan_by_market, synthetic_markets
from fairness.policy import load_policy


@pytest.mark.usefixtures("ray_session")
def test_ray_tasks_plan_like_this_process() -> None:
    inputs = synthetic_markets(3, 1_000, np.random.default_rng(7), supply=np.array([0.6, 0.3, 0.1]))
    policy = load_policy()
    on_ray = plan_markets_on_ray(inputs, policy, version=4, now=10.0)
    here = plan_by_market(inputs, policy, version=4, now=10.0)
    pd.testing.assert_frame_equal(on_ray.creators, here.creators)
    pd.testing.assert_frame_equal(on_ray.clusters, here.clusters)
    assert (on_ray.objective, on_ray.segment_prices, on_ray.relaxed) == (here.objective, here.segment_prices,
                                                                          here.relaxed)
    assert on_ray.stats["markets"] == 3


@pytest.mark.usefixtures("ray_session")
def test_plan_command_writes_a_servable_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plans, inputs = tmp_path / "plans", tmp_path / "inputs"
    assert main(["plan", "--synthetic-markets", "2", "--pairs-per-market", "800", "--seed", "3", "--out", str(plans),
                 "--save-inputs", str(inputs)]) == 0
    assert main(["plan", "--inputs", str(inputs), "--ray", "--out", str(plans), "--version", "2"]) == 0
    assert main(["plan", "--inputs", str(inputs), "--by", "none", "--out", str(plans), "--version", "3"]) == 0
    out = capsys.readouterr().out
    assert "as 2 market program(s)" in out
    assert "on Ray" in out
    assert "as 1 joint program(s)" in out
    local, ray_plan, joint = (load_plan(plans / f"v{v:06d}") for v in (1, 2, 3))
    pd.testing.assert_frame_equal(local.creators, ray_plan.creators)  # the same inputs, read back from Parquet
    assert len(joint.creators) == len(local.creators)
    assert local.creators["target"].sum() == pytest.approx(1.0, rel=1e-6)


def test_plan_command_refuses_a_partition_that_splits_creators(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--synthetic-markets", "1", "--pairs-per-market", "300", "--by", "segment",
                 "--out", str(tmp_path)])
    assert code == 2
    assert "expected every creator to sell in one market" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
