from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.loop.plots import (
    LORENZ_GRID,
    REFERENCE_COLOR,
    lorenz_curve,
    pareto_front,
    plot_all,
    plot_gmv,
    plot_pareto,
    plot_series,
    policy_colors,
)

FILES = {"gini.png", "lorenz.png", "original_share.png", "gmv.png", "complaint_rate.png", "sybil_share.png",
         "piracy_leakage.png", "risk_share.png", "newcomer_survival.png", "pareto.png"}
POLICIES = ("p0", "fairco", "ecorank")
RATIOS = ("gini_account", "gini_operator", "original_share", "piracy_leakage", "sybil_share", "risk_share")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """2 scenarios x 3 policies x 2 seeds x 10 rounds, 6 accounts of 4 operators, a 3-value ecorank sweep; with NaNs."""
    rng = np.random.default_rng(7)
    keys = pd.MultiIndex.from_product([["S2", "S1"], POLICIES, [0, 1], range(10)],
                                      names=["scenario", "policy", "seed", "round"]).to_frame(index=False)
    rounds = keys.assign(gmv=rng.uniform(50, 150, len(keys)),
                         complaints_per_1k=rng.uniform(0, 5, len(keys)),
                         complaints_per_purchase=rng.uniform(0, 0.1, len(keys)),
                         **{name: rng.uniform(0, 1, len(keys)) for name in RATIOS})
    no_purchase = rng.uniform(size=len(rounds)) < 0.3
    rounds.loc[no_purchase, "complaints_per_purchase"] = np.nan
    rounds.loc[(rounds["round"] == 0) & (rounds["seed"] == 0), "original_share"] = np.nan
    rounds.loc[(rounds["scenario"] == "S1") & (rounds["policy"] == "fairco"), "piracy_leakage"] = np.nan

    cells = pd.MultiIndex.from_product([["S1", "S2"], POLICIES, [0, 1], range(6)],
                                       names=["scenario", "policy", "seed", "account"]).to_frame(index=False)
    accounts = cells.assign(operator=cells["account"] % 4, exposure=rng.exponential(10.0, len(cells)))
    accounts.loc[(accounts["policy"] == "p0") & (accounts["scenario"] == "S2"), "exposure"] = 0.0

    runs = pd.MultiIndex.from_product([["S1", "S2"], POLICIES, [0, 1]],
                                      names=["scenario", "policy", "seed"]).to_frame(index=False)
    runs = runs.assign(gmv_rel=np.where(runs["policy"] == "p0", 1.0, rng.uniform(0.8, 1.05, len(runs))),
                       gini_account=rng.uniform(0.2, 0.7, len(runs)), gini_operator=rng.uniform(0.2, 0.7, len(runs)),
                       newcomer_survival=rng.uniform(0, 1, len(runs)))
    runs.loc[runs["scenario"] == "S2", "newcomer_survival"] = np.nan  # no newcomers there: no bars
    runs.loc[(runs["policy"] == "fairco") & (runs["seed"] == 1), "newcomer_survival"] = np.nan

    sweep = pd.MultiIndex.from_product([["S1", "S2"], ["ecorank"], [0.0, 0.5, 1.0], [0, 1]],
                                       names=["scenario", "family", "value", "seed"]).to_frame(index=False)
    sweep = sweep.assign(knob="planner.kappa", gmv_rel=1.0 - 0.1 * sweep["value"] + rng.normal(0, 0.01, len(sweep)),
                         gini_account=0.6 - 0.3 * sweep["value"], gini_operator=0.5 - 0.2 * sweep["value"])
    return {"rounds": rounds, "accounts": accounts, "runs": runs, "sweep": sweep}


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(b"\x89PNG")


def test_pareto_front_keeps_exactly_the_non_dominated_points() -> None:
    points = pd.DataFrame({
        "name": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "gini": [0.2, 0.3, 0.3, 0.5, 0.4, 0.2, 0.6, np.nan],
        "gmv": [0.9, 1.0, 0.95, 1.1, 0.97, 0.9, 1.1, 2.0],
    })
    # a, f: a tie, both kept; c: same Gini as b, lower GMV; e: worse than b on both; g: same GMV as d, higher Gini;
    # h: NaN cannot be compared
    front = pareto_front(points, x="gini", y="gmv")
    assert front["name"].tolist() == ["a", "f", "b", "d"]
    assert front["gini"].is_monotonic_increasing
    assert front["gmv"].is_monotonic_increasing
    assert list(front.columns) == ["name", "gini", "gmv"]


def test_pareto_front_is_empty_without_comparable_points() -> None:
    assert pareto_front(pd.DataFrame({"x": [np.nan], "y": [1.0]}), x="x", y="y").empty
    with pytest.raises(ValueError, match="missing columns"):
        pareto_front(pd.DataFrame({"x": [1.0]}), x="x", y="y")


def test_lorenz_curve_exact_cases() -> None:
    grid = np.linspace(0, 1, 5)
    np.testing.assert_allclose(lorenz_curve(np.full(4, 3.0), grid), grid)
    np.testing.assert_allclose(lorenz_curve(np.zeros(4), grid), grid)
    np.testing.assert_allclose(lorenz_curve(np.array([0.0, 9.0, 0.0, 0.0]), grid), [0, 0, 0, 0, 1])
    fine = lorenz_curve(np.array([0.0, 9.0, 0.0, 0.0]), LORENZ_GRID)
    assert fine[LORENZ_GRID <= 0.75].max() == 0.0
    assert fine[90] == pytest.approx(0.6)  # linear from (0.75, 0) to (1, 1)
    assert fine[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(lorenz_curve(np.array([1.0, 3.0]), np.array([0, 0.5, 1])), [0, 0.25, 1])
    with pytest.raises(ValueError, match=">= 0"):
        lorenz_curve(np.array([1.0, -1.0]), grid)


def test_policy_colors_fix_the_reference_and_follow_first_appearance() -> None:
    colors = policy_colors(["fairco", "p0", "ecorank", "fairco"])
    assert colors["p0"] == REFERENCE_COLOR
    assert list(colors) == ["fairco", "p0", "ecorank"]
    assert len(set(colors.values())) == 3
    assert policy_colors(["fairco", "ecorank"]) == {k: v for k, v in colors.items() if k != "p0"}


def test_plot_all_writes_every_png(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    out = tmp_path / "plots"
    paths = plot_all(rounds=tables["rounds"], accounts=tables["accounts"], runs=tables["runs"],
                     sweep=tables["sweep"], out=out, burn_in=3)
    assert set(paths) == FILES
    assert {path.name for path in out.iterdir()} == FILES
    for name, path in paths.items():
        assert path == out / name
        assert_png(path)


@pytest.mark.parametrize("empty", [pd.DataFrame(), "no rows"])
def test_pareto_without_a_sweep_marks_only_the_policies(tables: dict[str, pd.DataFrame], tmp_path: Path,
                                                        empty: pd.DataFrame | str) -> None:
    sweep = tables["sweep"].iloc[0:0] if isinstance(empty, str) else empty
    assert_png(plot_pareto(tables["runs"], sweep, tmp_path / "pareto.png", gini="gini_operator"))


def test_series_tolerate_an_all_nan_metric(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    rounds = tables["rounds"].assign(complaints_per_purchase=np.nan)
    path = plot_series(rounds, tmp_path / "cpp.png", metric="complaints_per_purchase", title="per purchase", burn_in=0)
    assert_png(path)
    with pytest.raises(ValueError, match="missing columns \\['nope'\\]"):
        plot_series(rounds, tmp_path / "x.png", metric="nope", title="x", burn_in=0)


def test_gmv_without_the_reference_still_draws(tables: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    rounds = tables["rounds"]
    assert_png(plot_gmv(rounds[rounds["policy"] != "p0"], tmp_path / "gmv.png", burn_in=2))
