"""Goal checks and report numbers on hand-made evaluations, where the right answer is known."""

from __future__ import annotations

import math

import pandas as pd

from experiments.loop.evaluate import Evaluation
from experiments.loop.report import check_goals, dominates, headline_table, overtaking_round


def rounds_of(gmv: dict[str, list[float]], scenario: str = "S2", seeds: int = 2) -> pd.DataFrame:
    rows = [{"scenario": scenario, "policy": policy, "seed": seed, "round": t, "gmv": value}
            for policy, series in gmv.items() for seed in range(seeds) for t, value in enumerate(series)]
    return pd.DataFrame(rows)


def test_overtaking_is_the_round_from_which_cumulative_gmv_stays_ahead() -> None:
    # cumulative p0: 10, 20, 30, 40, 50; ecorank: 5, 12, 21, 41, 61 -> ahead from round 3 on
    frame = rounds_of({"p0": [10, 10, 10, 10, 10], "ecorank": [5, 7, 9, 20, 20]})
    assert overtaking_round(frame, "S2") == 3
    # ahead at round 3 only, behind again at the end: no overtaking
    frame = rounds_of({"p0": [10, 10, 10, 10, 10], "ecorank": [5, 7, 9, 20, 0]})
    assert overtaking_round(frame, "S2") is None
    assert overtaking_round(frame, "S1") is None  # scenario not run


def test_dominance_needs_no_worse_on_both_and_better_on_one() -> None:
    a = {"gmv_rel": 1.0, "gini_account": 0.4}
    assert dominates(a, {"gmv_rel": 0.9, "gini_account": 0.4})
    assert dominates(a, {"gmv_rel": 1.0, "gini_account": 0.5})
    assert not dominates(a, dict(a))
    assert not dominates(a, {"gmv_rel": 1.1, "gini_account": 0.5})


def evaluation(gini_ecorank: float, gmv_rel: float) -> Evaluation:
    """S1 only: p0 at Gini 0.5, ecorank at `gini_ecorank` with GMV `gmv_rel` of P0, fairco and pmmf fixed."""
    summary_rows = []
    runs_rows = []
    values = {"p0": (0.5, 1.0, 0.3), "ecorank": (gini_ecorank, gmv_rel, 0.4), "fairco": (0.45, 0.95, 0.3),
              "pmmf": (0.42, 0.90, 0.3)}
    for policy, (gini, gmv, survival) in values.items():
        for metric, value, base in (("gini_account", gini, 0.5), ("gmv_rel", gmv, 1.0),
                                    ("newcomer_survival", survival, 0.3)):
            reference = policy == "p0"
            summary_rows.append({"scenario": "S1", "policy": policy, "metric": metric, "mean": value,
                                 "delta": 0.0 if reference else value - base,
                                 "ci_low": math.nan if reference else value - base - 0.01,
                                 "ci_high": math.nan if reference else value - base + 0.01})
        runs_rows += [{"scenario": "S1", "policy": policy, "seed": s, "gini_account": gini, "gmv_rel": gmv}
                      for s in range(2)]
    empty = pd.DataFrame({"scenario": [], "policy": [], "seed": [], "round": [], "gmv": []})
    return Evaluation(rounds=empty, accounts=pd.DataFrame(), runs=pd.DataFrame(runs_rows),
                      summary=pd.DataFrame(summary_rows), sweep=pd.DataFrame())


def test_s1_goals_are_decided_by_the_measured_numbers() -> None:
    met = {g.statement: g.met for g in check_goals(evaluation(gini_ecorank=0.38, gmv_rel=0.98))}
    assert met["exposure Gini (accounts) at least 20% below P0's"] is True  # 24% below
    assert met["GMV at least 97% of P0's"] is True
    assert met["newcomer survival up"] is True
    assert met["ecorank Pareto-dominates fairco on (GMV, Gini)"] is True
    assert met["ecorank Pareto-dominates pmmf on (GMV, Gini)"] is True
    met = {g.statement: g.met for g in check_goals(evaluation(gini_ecorank=0.44, gmv_rel=0.96))}
    assert met["exposure Gini (accounts) at least 20% below P0's"] is False  # 12% below
    assert met["GMV at least 97% of P0's"] is False
    assert met["ecorank Pareto-dominates pmmf on (GMV, Gini)"] is False  # pmmf is fairer
    assert met["ecorank Pareto-dominates fairco on (GMV, Gini)"] is True


def test_the_headline_shows_ecorank_with_its_ci_against_p0() -> None:
    table = headline_table(evaluation(gini_ecorank=0.38, gmv_rel=0.98))
    row = next(line for line in table.splitlines() if line.startswith("| S1"))
    assert "0.38 (-0.12 [-0.13, -0.11])" in row
    assert row.count("|") == 11


def test_a_swept_strength_dominating_a_baseline_is_found_on_the_same_seeds() -> None:
    base = evaluation(gini_ecorank=0.44, gmv_rel=0.96)
    sweep = pd.DataFrame([{"scenario": "S1", "family": "ecorank", "knob": "planner.kappa", "value": kappa, "seed": s,
                           "gmv_rel": gmv, "gini_account": gini}
                          for kappa, gmv, gini in ((4.0, 0.99, 0.48), (1.0, 0.93, 0.40)) for s in range(2)])
    swept = Evaluation(rounds=base.rounds, accounts=base.accounts, runs=base.runs, summary=base.summary, sweep=sweep)
    verdicts = {g.statement: (g.met, g.measured) for g in check_goals(swept)}
    # pmmf sits at (0.90, 0.42): kappa 1 (0.93, 0.40) dominates it; fairco (0.95, 0.45) is dominated by neither
    met, measured = verdicts["some swept ecorank strength Pareto-dominates pmmf (same seeds)"]
    assert met is True
    assert "planner.kappa=1 (0.930, 0.400)" in measured
    met, measured = verdicts["some swept ecorank strength Pareto-dominates fairco (same seeds)"]
    assert met is False
    assert "none of planner.kappa=1, planner.kappa=4" in measured
