"""Each solver's answer satisfies the KKT conditions of the (relaxed) problem, multipliers included.

Fast solver, at 1e-9: 4,000 small seeded requests one by one, the same 4,000 in one batched call,
150 synthetic requests of 100-1,000 candidates, 4 of 10,000, 300 hypothesis-drawn requests, and the
regression cases of the floor search. Reference, at 1e-6: 400 small and 20 synthetic requests.
The conditions (see `Allocation`): sum w = 1, 0 <= w <= cap, group sums <= caps, originals >= floor;
multipliers >= 0 (sum_price free); w = clip((v + mu [original] - nu - lambda_g - lambda_a) / tau, 0, cap);
a multiplier above the tolerance only where its constraint is tight.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairness.allocator.fast import solve_fast
from fairness.allocator.problem import build_problem
from fairness.allocator.reference import ReferenceAllocator
from fairness.allocator.synthetic import random_problem
from tests.fairness.allocator.cases import (
    batch_kwargs,
    binding_kinds,
    group_sums,
    kkt_violations,
    small_cases,
    synthetic_problems,
)

FAST_TOL = 1e-9
REFERENCE_TOL = 1e-6


def test_fast_small_requests_one_by_one() -> None:
    bad = []
    kinds: set[str] = set()
    for seed in (20, 21, 22, 23):
        for i, case in enumerate(small_cases(seed, 1000)):
            allocation = solve_fast(case.problem)
            kinds |= binding_kinds(allocation)
            if violations := kkt_violations(allocation, tol=FAST_TOL):
                bad.append(f"small_cases({seed}, 1000)[{i}]: {violations}")
    assert not bad, f"{len(bad)} of 4000 fail KKT: {bad[:5]}"
    assert kinds == {"item_cap", "creator_cap", "cluster_cap", "originals_floor"}


def test_fast_small_requests_batched() -> None:
    """The same checks on all 4,000 requests solved by one call (one multi-request problem)."""
    cases = [c for seed in (20, 21, 22, 23) for c in small_cases(seed, 1000)]
    allocation = solve_fast(build_problem(**batch_kwargs(cases)))
    assert allocation.problem is not None
    assert allocation.problem.n_requests == 4000
    assert kkt_violations(allocation, tol=FAST_TOL) == []


def test_fast_synthetic_requests() -> None:
    problems = synthetic_problems(30, 150)
    rng = np.random.default_rng(31)
    problems += [random_problem(10_000, rng, floor=floor) for floor in (0.0, 0.35, 0.6, 0.9)]
    bad = [(i, v) for i, p in enumerate(problems) if (v := kkt_violations(solve_fast(p), tol=FAST_TOL))]
    assert not bad, f"{len(bad)} of {len(problems)} fail KKT: {bad[:5]}"


@pytest.mark.parametrize(("n", "seed", "floor"), [(200, 5, 0.6), (300, 1, 0.6), (300, 3, 0.5), (200, 2, 0.6)])
def test_floor_search_through_many_saturating_pieces(n: int, seed: int, floor: float) -> None:
    """Regression: many originals each saturating a small cap (0.01; clusters of two at 0.015) make the
    originals' share bend down on hundreds of linear pieces; a Newton step from below then undershoots on
    every piece, and the search used to run out of its 100 steps and return the floor violated (0.59 of
    0.6 for the first case, 0.58 for the second, with no relaxation reported) or, after the bracket
    collapsed, a floor price with the floor slack (the third). The search now alternates with bisection
    after repeated undershoots. The last case's floor is lowered to what its originals hold (all at caps)."""
    rng = np.random.default_rng(seed)
    problem = build_problem(rng.normal(size=n), creator_ids=np.arange(n), cluster_ids=np.arange(n) // 2,
                            original=rng.random(n) < 0.3, tau=1e-3, item_cap=0.01, cluster_cap=0.015, floor=floor)
    allocation = solve_fast(problem)
    assert [r.constraint for r in allocation.relaxations] == ([] if seed != 2 else ["originals_floor"])
    assert kkt_violations(allocation, tol=FAST_TOL) == []
    assert allocation.problem is not None
    _, _, _, originals = group_sums(allocation)
    assert originals[0] == pytest.approx(allocation.problem.floor[0], abs=FAST_TOL)
    assert allocation.floor_price[0] > 0


def test_relaxed_caps_hold_all_traffic_despite_tiny_caps() -> None:
    """Regression (found by test_fast_kkt_on_drawn_problems): a creator cap of 1e-9 next to one of 0.25
    made the creator-cap scale factor lose 8 digits to cancellation (a difference of running sums), so
    the relaxed caps held 1 - 2.7e-8 and the weights summed to that."""
    problem = build_problem(np.zeros(3), creator_ids=np.array([0, 2, 0]), cluster_ids=np.zeros(3, np.int64),
                            original=np.zeros(3, bool), tau=1e-3, item_cap=np.array([0.0, 0.0, 1.0]),
                            creator_cap=np.array([1e-9, 0.25, 1e-9]), cluster_cap=0.0)
    allocation = solve_fast(problem)
    assert kkt_violations(allocation, tol=FAST_TOL) == []
    assert allocation.weights.tolist() == [0.0, 0.0, 1.0]


def test_multipliers_are_zero_where_nothing_binds() -> None:
    problem = build_problem(np.array([0.3, 0.2, 0.1]), creator_ids=np.arange(3), cluster_ids=np.arange(3),
                            original=np.array([True, False, False]), tau=1.0, floor=0.1)
    a = solve_fast(problem)
    np.testing.assert_allclose(a.weights, np.array([0.3, 0.2, 0.1]) + 0.4 / 3, atol=1e-15)
    assert a.floor_price.tolist() == [0.0]
    assert a.creator_price.tolist() == [0.0] * 3
    assert a.cluster_price.tolist() == [0.0] * 3
    assert a.cap_price.tolist() == [0.0] * 3
    assert a.sum_price[0] == pytest.approx(-0.4 / 3, abs=1e-15)


@st.composite
def drawn_problems(draw: st.DrawFn) -> dict[str, object]:
    """build_problem arguments with hypothesis-chosen values and caps, including repeats and exact zeros."""
    n = draw(st.integers(1, 12))
    level = st.floats(-5.0, 5.0, allow_subnormal=False)
    value = draw(st.lists(st.one_of(level, st.sampled_from([0.0, 1.0])), min_size=n, max_size=n))
    cap = st.one_of(st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 1.0]), st.floats(0.0, 1.0, allow_subnormal=False))
    creators = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    creator_cluster = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    return {
        "value": np.array(value), "creator_ids": np.array(creators),
        "cluster_ids": np.array([creator_cluster[c] for c in creators]),
        "original": np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        "tau": draw(st.sampled_from([1e-3, 0.01, 0.1, 1.0, 10.0])),
        "item_cap": np.array(draw(st.lists(cap, min_size=n, max_size=n))),
        "creator_cap": np.array([draw(cap) for _ in range(4)])[creators],
        "cluster_cap": np.array([draw(cap) for _ in range(3)])[[creator_cluster[c] for c in creators]],
        "floor": draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0, allow_subnormal=False))),
    }


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(kwargs=drawn_problems())
def test_fast_kkt_on_drawn_problems(kwargs: dict[str, object]) -> None:
    allocation = solve_fast(build_problem(**kwargs))  # type: ignore[arg-type]
    assert kkt_violations(allocation, tol=FAST_TOL) == []


def test_reference_kkt(reference: ReferenceAllocator) -> None:
    """The reference's own multipliers (read from its named constraints) pass the same checks at 1e-6."""
    problems = [c.problem for c in small_cases(40, 400)] + synthetic_problems(41, 20, high=400)
    bad = [(i, v) for i, p in enumerate(problems) if (v := kkt_violations(reference.solve(p), tol=REFERENCE_TOL))]
    assert not bad, f"{len(bad)} of {len(problems)} fail KKT: {bad[:5]}"
