"""Scenario sanity under GMV-only ranking (P0): the dynamics each scenario exists to show.

These run reduced-size worlds (fewer users and creators than the `default` preset, full length),
which keep the default preset's dynamics at a fraction of the cost; figures at full size are in
docs/simulator.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.config import load_scenario
from experiments.simulator.runner import run_experiment

HALF = ["users.n_users=2500", "accounts.initial_operators=650", "entry.rate=2.5"]
QUARTER = ["users.n_users=1250", "accounts.initial_operators=300", "entry.rate=1.2"]


def _experiment(tmp_path: Path, scenario: str, policies: list[str], overrides: list[str],
                seeds: tuple[int, ...] = (0,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-policy means of the run metrics over `seeds`, and the per-round table."""
    config = load_scenario(scenario, preset="default", overrides=overrides)
    result = run_experiment(config, policies=policies, seeds=list(seeds), out=tmp_path / scenario,
                            jobs=len(policies), quiet=True)
    runs = result.runs.groupby("policy").mean(numeric_only=True)
    return runs, pd.read_parquet(tmp_path / scenario / "rounds.parquet")


@pytest.mark.slow
def test_s0_control_lock_in_differences_vanish(tmp_path: Path) -> None:
    runs, _ = _experiment(tmp_path, "S0", ["p0", "p1", "random"], [*QUARTER, "run.rounds=100"])
    for metric in ("gini_trend", "gini_panel_trend"):
        trends = runs[metric]
        assert trends.abs().max() < 0.05, (metric, trends.to_dict())
        assert trends.max() - trends.min() < 0.05, (metric, trends.to_dict())


@pytest.mark.slow
def test_s1_gmv_only_locks_exposure_in(tmp_path: Path) -> None:
    """Following the creators present after burn-in, GMV-only ranking concentrates their exposure over time
    (winners keep it, the rest starve and leave) far more than random ranking; newcomers rarely make it.

    Two seeds: newcomer survival is a rate over a few dozen newcomers, and on one seed the two policies
    can tie (seed 0 on an AMD EPYC: 0.306 both; seeds 1, 2: P0 0.253, 0.262 vs random 0.336, 0.281)."""
    runs, _ = _experiment(tmp_path, "S1", ["p0", "random"], HALF, seeds=(0, 1))
    p0, uniform = runs.loc["p0"], runs.loc["random"]
    assert p0["gini_panel_trend"] > 0.05
    assert p0["gini_panel_trend"] > uniform["gini_panel_trend"] + 0.03
    assert p0["gini_account"] > uniform["gini_account"] + 0.15
    assert p0["newcomer_survival"] < uniform["newcomer_survival"]
    assert p0["accounts_final"] < 0.5 * uniform["accounts_final"]


@pytest.mark.slow
def test_s2_copies_take_exposure_from_their_sources(tmp_path: Path) -> None:
    _, rounds = _experiment(tmp_path, "S2", ["p0"], [*HALF, "run.rounds=120"])
    p0 = rounds[rounds.policy == "p0"].set_index("round")
    before = p0.loc[10:29, "original_share"].mean()
    after = p0.loc[90:119, "original_share"].mean()
    assert after < before - 0.2, (before, after)
    assert p0.loc[90:119, "piracy_leakage"].mean() > 0.5  # copies out-earn the originals they copy
    assert np.isnan(p0.loc[:29, "piracy_leakage"]).all()  # no copies before the wave


@pytest.mark.slow
def test_s3_matrix_farms_take_a_substantial_share(tmp_path: Path) -> None:
    """Farms are ~1% of operators at full size; splitting into many accounts earns them several times that."""
    runs, _ = _experiment(tmp_path, "S3", ["p0"], ["run.rounds=120"])
    config = load_scenario("S3", preset="default")
    farm_operator_share = config.wave.matrix_operators / (config.accounts.initial_operators
                                                           + config.wave.matrix_operators)
    sybil = runs.loc["p0", "sybil_share"]
    assert sybil > 2.5 * farm_operator_share, (sybil, farm_operator_share)
