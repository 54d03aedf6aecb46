"""Working-set screening (fairness/allocator/screen.py) gives the answer of the whole problem, exactly.

Each test solves the same feasible problem twice, on working sets (`solve_screened`) and whole
(`solve_feasible`), and compares weights and multipliers; a recording wrapper around the real solver
shows which sizes were actually solved, so the tests also prove that screening happened (or widened
to the whole request where it had to).
"""

from __future__ import annotations

import numpy as np
import pytest

from fairness.allocator.fast import solve_fast, solve_feasible
from fairness.allocator.problem import Allocation, AllocationProblem, build_problem
from fairness.allocator.relax import make_feasible
from fairness.allocator.screen import WORKING_SET, solve_screened
from fairness.allocator.synthetic import random_problem
from tests.fairness.allocator.cases import kkt_violations

TOL = 1e-9


def _both(problem: AllocationProblem) -> tuple[Allocation, Allocation, list[int]]:
    """(screened, whole, sizes the screened solve ran on)."""
    p, _ = make_feasible(problem)
    sizes: list[int] = []

    def recording(sub: AllocationProblem) -> Allocation:
        sizes.append(len(sub.value))
        return solve_feasible(sub)

    return solve_screened(p, recording), solve_feasible(p), sizes


def _assert_same(screened: Allocation, whole: Allocation) -> None:
    """The weights are unique (strictly convex problem); multipliers need not be (e.g. every candidate with
    traffic at its cap leaves the threshold free on an interval), so theirs are checked by KKT instead."""
    np.testing.assert_allclose(screened.weights, whole.weights, atol=TOL, rtol=0)
    assert kkt_violations(screened, tol=TOL) == []


@pytest.mark.parametrize("floor", [0.0, 0.35, 0.6, 0.9])
@pytest.mark.parametrize("n", [300, 2_000, 10_000])
def test_large_requests_solve_on_a_working_set_with_the_whole_answer(n: int, floor: float) -> None:
    screened, whole, sizes = _both(random_problem(n, np.random.default_rng(n + int(100 * floor)), floor=floor))
    _assert_same(screened, whole)
    assert sizes[0] < n  # the first try ran on a working set, not the request


def test_spread_traffic_widens_the_working_set_to_the_whole_request() -> None:
    """tau large next to the utilities: every candidate gets traffic, so no working set can be right."""
    problem = random_problem(1_000, np.random.default_rng(7), tau=5_000.0, item_cap=1.0, creator_cap=1.0,
                             cluster_cap=1.0, floor=0.0)
    screened, whole, sizes = _both(problem)
    _assert_same(screened, whole)
    assert (whole.weights > 0).all()
    assert sizes[0] < 1_000  # tried a working set first ...
    assert sizes[-1] == 1_000  # ... then widened (doubling) to all of it


def test_floor_beyond_the_best_originals_widens_the_working_set() -> None:
    """Originals each capped at 0.001 must hold a floor of 0.5: at least 500 of them, beyond M best ones."""
    rng = np.random.default_rng(3)
    n = 2_000
    original = rng.random(n) < 0.5
    problem = build_problem(rng.normal(size=n), creator_ids=np.arange(n), cluster_ids=np.arange(n),
                            original=original, tau=0.05, item_cap=np.where(original, 0.001, 0.25), floor=0.5)
    screened, whole, sizes = _both(problem)
    _assert_same(screened, whole)
    assert np.sum(np.where(problem.original, screened.weights, 0.0)) >= 0.5 - 1e-9
    assert len(sizes) == 1  # widened before solving (the capacity check), then solved once
    assert WORKING_SET * 2 < sizes[0] <= n


def test_zero_caps_keep_their_thresholds() -> None:
    """A banned creator (cap 0) with the best value stays in the working set: its threshold (the value it would
    need to get traffic) is its best member's value, as in the whole solve."""
    rng = np.random.default_rng(11)
    n = 1_500
    value = rng.normal(size=n)
    creator = np.arange(n) // 3
    banned = creator == creator[int(np.argmax(value))]
    problem = build_problem(value, creator_ids=creator, cluster_ids=creator, original=rng.random(n) < 0.3, tau=0.05,
                            item_cap=0.1, creator_cap=np.where(banned, 0.0, 0.2), floor=0.3)
    screened, whole, _ = _both(problem)
    _assert_same(screened, whole)
    assert screened.weights[banned].sum() == 0.0
    a = int(screened.problem.creator[banned][0]) if screened.problem is not None else -1

    def threshold(x: Allocation) -> float:
        assert x.problem is not None
        return float(x.sum_price[0] + x.cluster_price[x.problem.creator_cluster[a]] + x.creator_price[a])

    assert threshold(screened) == pytest.approx(value[banned].max(), abs=TOL)
    assert threshold(whole) == pytest.approx(value[banned].max(), abs=TOL)


def test_batched_requests_of_mixed_sizes_equal_each_alone() -> None:
    rng = np.random.default_rng(5)
    problems = [random_problem(n, rng, floor=f) for n, f in ((40, 0.35), (1_200, 0.35), (500, 0.0), (3_000, 0.6))]
    offsets = 10_000 * np.arange(len(problems))  # ids of different requests never collide

    def joined(name: str) -> np.ndarray:
        shift = name in ("creator", "cluster")
        return np.concatenate([getattr(p, name) + o if shift else getattr(p, name)
                               for p, o in zip(problems, offsets, strict=True)])

    batch = build_problem(joined("value"), creator_ids=joined("creator"), cluster_ids=joined("cluster"),
                          original=joined("original"), tau=0.05, item_cap=joined("cap"), creator_cap=0.06,
                          cluster_cap=0.12, floor=[p.floor[0] for p in problems],
                          request=np.repeat(np.arange(len(problems)), [len(p.value) for p in problems]))
    together = solve_fast(batch)
    alone = np.concatenate([solve_fast(p).weights for p in problems])
    np.testing.assert_allclose(together.weights, alone, atol=TOL, rtol=0)
    assert kkt_violations(together, tol=TOL) == []
