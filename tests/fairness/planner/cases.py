"""Shared fixtures for the planner tests: small policies, small random inputs, a KKT checker and the
sybil transforms (duplicate an account, split one)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from fairness.planner.inputs import F64, PlanInputs
from fairness.planner.program import ExposureProgram, Solution
from fairness.policy import FairnessPolicy, load_policy

# The default policy sizes caps for thousands of creators (cluster_cap 0.05); a handful of creators
# needs room, or every small problem would be all slack.
SMALL = ["planner.cluster_cap=0.6", "planner.kappa=2.0", "planner.originals_floor=0.3",
         "planner.newcomer_share=0.1", "planner.newcomer_floor=0.05", "budgets.risk=0.1", "budgets.complaint=0.05"]


def small_policy(*overrides: str) -> FairnessPolicy:
    return load_policy(overrides=[*SMALL, *overrides])


def random_inputs(rng: np.random.Generator, n_creators: int = 6, n_segments: int = 2, *, cluster_labels: int = 4,
                  demand_cover: float = 2.0) -> PlanInputs:
    """A small random problem: creators in random clusters, each in a random non-empty set of segments."""
    present = rng.random((n_creators, n_segments)) < 0.7
    present[~present.any(axis=1), 0] = True
    pair_creator, pair_segment = (a.astype(np.int64) for a in np.nonzero(present))
    n = len(pair_creator)
    supply = rng.dirichlet(np.ones(n_segments))
    raw = rng.random(n) + 0.1
    per_segment = np.bincount(pair_segment, weights=raw, minlength=n_segments)
    return PlanInputs(
        creator=np.arange(100, 100 + n_creators, dtype=np.int64),
        cluster=rng.integers(0, cluster_labels, n_creators).astype(np.int64),
        merit=rng.random(n_creators) * 2.0, original=rng.random(n_creators) < 0.5,
        newcomer=rng.random(n_creators) < 0.3, segments=tuple(f"s{i}" for i in range(n_segments)),
        supply=supply, pair_segment=pair_segment, pair_creator=pair_creator, value=rng.random(n) * 2.0,
        demand=demand_cover * supply[pair_segment] * raw / per_segment[pair_segment],
        risk=rng.random(n) * 0.3, complaint=rng.random(n) * 0.1,
    ).validate()


@st.composite
def drawn_inputs(draw: st.DrawFn, max_creators: int = 5) -> PlanInputs:
    """Hypothesis-drawn small inputs, drawn field by field so that a failure shrinks to a small example."""
    n_creators = draw(st.integers(1, max_creators))
    n_segments = draw(st.integers(1, 2))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    present = np.array([[draw(st.booleans()) for _ in range(n_segments)] for _ in range(n_creators)])
    present[~present.any(axis=1), 0] = True
    pair_creator, pair_segment = (a.astype(np.int64) for a in np.nonzero(present))
    n = len(pair_creator)
    weights = np.array([draw(st.floats(0.1, 1.0)) for _ in range(n_segments)])
    supply = weights / weights.sum()
    return PlanInputs(
        creator=np.arange(n_creators, dtype=np.int64),
        cluster=np.array([draw(st.integers(0, n_creators - 1)) for _ in range(n_creators)], dtype=np.int64),
        merit=np.array([draw(st.floats(0.0, 3.0)) for _ in range(n_creators)]),
        original=np.array([draw(st.booleans()) for _ in range(n_creators)]),
        newcomer=np.array([draw(st.booleans()) for _ in range(n_creators)]),
        segments=tuple(f"s{i}" for i in range(n_segments)), supply=supply,
        pair_segment=pair_segment, pair_creator=pair_creator,
        value=np.array([draw(st.floats(0.0, 2.0)) for _ in range(n)]),
        demand=np.array([draw(unit) for _ in range(n)]),
        risk=np.array([draw(st.floats(0.0, 0.3)) for _ in range(n)]),
        complaint=np.array([draw(st.floats(0.0, 0.1)) for _ in range(n)]),
    ).validate()


def duplicate_account(inputs: PlanInputs, row: int, share: float) -> PlanInputs:
    """The operator of creator `row` adds a copy of the account (same cluster, merit, flags, segments,
    values, risks); the account's demand is shared, `share` to the copy (re-uploading does not grow the
    audience)."""
    pairs = np.flatnonzero(inputs.pair_creator == row)
    new_row, new_id = inputs.n_creators, int(inputs.creator.max()) + 1
    demand = inputs.demand.copy()
    demand[pairs] *= 1.0 - share
    return replace(
        inputs,
        creator=np.append(inputs.creator, new_id), cluster=np.append(inputs.cluster, inputs.cluster[row]),
        merit=np.append(inputs.merit, inputs.merit[row]), original=np.append(inputs.original, inputs.original[row]),
        newcomer=np.append(inputs.newcomer, inputs.newcomer[row]),
        pair_segment=np.append(inputs.pair_segment, inputs.pair_segment[pairs]),
        pair_creator=np.append(inputs.pair_creator, np.full(len(pairs), new_row, dtype=np.int64)),
        value=np.append(inputs.value, inputs.value[pairs]), demand=np.append(demand, inputs.demand[pairs] * share),
        risk=np.append(inputs.risk, inputs.risk[pairs]), complaint=np.append(inputs.complaint, inputs.complaint[pairs]),
    ).validate()


def split_account(inputs: PlanInputs, row: int, share: float) -> PlanInputs:
    """Creator `row` is split in two accounts of the same operator: merit and demand are shared, `share`
    to the new account."""
    split = duplicate_account(inputs, row, share)
    merit = split.merit.copy()
    merit[row] *= 1.0 - share
    merit[-1] *= share
    return replace(split, merit=merit).validate()


def operator_total(program: ExposureProgram, x: F64, cluster_id: int) -> float:
    """Planned exposure of one operator cluster."""
    return float(x[program.cluster_ids[program.pair_cluster] == cluster_id].sum())


def operator_floor(program: ExposureProgram, cluster_id: int) -> float:
    """Guaranteed exposure (sum of floors) of one operator cluster."""
    return float(program.floor[program.cluster_ids == cluster_id].sum())


def kkt_violations(program: ExposureProgram, solution: Solution, *, tol: float = 1e-6) -> dict[str, float]:
    """Largest violation of each KKT condition (empty dict: all within tol), in the sign conventions of
    fairness.planner.program: primal feasibility, dual feasibility, stationarity with the returned prices
    and complementary slackness, slacks included."""
    p, s, x = program, solution, solution.x
    pen = p.penalty
    segment = np.bincount(p.pair_segment, weights=x, minlength=p.n_segments)
    creator = np.bincount(p.pair_creator, weights=x, minlength=p.n_creators)
    cluster = np.bincount(p.pair_cluster, weights=x, minlength=p.n_clusters)
    reduced = p.value - p.ridge * x - s.pair_price(p)     # = (multiplier of x <= demand) - (of x >= 0)
    checks: dict[str, Any] = {
        # primal feasibility
        "x >= 0": -x, "x <= demand": x - p.demand,
        "supply": np.abs(segment + s.supply_slack - p.supply), "supply slack >= 0": -s.supply_slack,
        "creator cap": creator - p.creator_cap, "cluster cap": cluster - p.cluster_cap,
        "floor": p.floor - cluster - s.floor_slack, "floor slack >= 0": -s.floor_slack,
        # dual feasibility (the slacks bound the soft rows' prices by the penalty)
        "creator price >= 0": -s.creator_dual, "cap price >= 0": -s.cluster_cap_dual,
        "floor price in [0, penalty]": np.maximum(-s.floor_dual, s.floor_dual - pen),
        "supply price >= -penalty": -pen - s.supply_dual,
        # stationarity, with the bounds' multipliers max(0, -reduced) for x >= 0 and max(0, reduced) for
        # x <= demand, and their complementary slackness
        "stationarity at x >= 0": np.maximum(0.0, -reduced) * x,
        "stationarity at x <= demand": np.maximum(0.0, reduced) * (p.demand - x),
        # complementary slackness of the rows and of the slacks (a used slack has the penalty price)
        "creator cap complementarity": np.abs(s.creator_dual * (p.creator_cap - creator)),
        "cluster cap complementarity": np.abs(s.cluster_cap_dual * (p.cluster_cap - cluster)),
        "floor complementarity": np.abs(s.floor_dual * (cluster + s.floor_slack - p.floor)),
        "floor slack complementarity": (pen - s.floor_dual) * s.floor_slack,
        "supply slack complementarity": (s.supply_dual + pen) * s.supply_slack,
    }
    for name, coef in p.budget_coef.items():
        used, rho, slack = float(coef @ x), s.budget_dual[name], s.budget_slack[name]
        checks[f"{name} budget"] = used - p.budget_bound[name] - slack
        checks[f"{name} price in [0, penalty]"] = max(-rho, rho - pen)
        checks[f"{name} complementarity"] = abs(rho * (p.budget_bound[name] + slack - used))
        checks[f"{name} slack complementarity"] = (pen - rho) * slack
    worst = {name: float(np.max(value, initial=-np.inf)) for name, value in checks.items()}
    return {name: value for name, value in worst.items() if value > tol}
