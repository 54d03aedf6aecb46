"""Infeasible constraint sets never raise: the smallest relaxation, what gave way, and why.

Hand-built requests with known answers (the exact scale factors), then seeded random infeasible ones
checked for feasibility after relaxation and for minimality (a slightly smaller factor is not enough).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fairness.allocator.fast import solve_fast
from fairness.allocator.problem import Allocation, AllocationProblem, Relaxation, build_problem
from fairness.allocator.reference import ReferenceAllocator
from fairness.allocator.relax import FEASIBILITY_TOL, capacities, make_feasible
from tests.fairness.allocator.cases import group_sums, kkt_violations, small_cases


def _problem(n: int, *, creators: list[int] | None = None, clusters: list[int] | None = None,
             original: list[bool] | None = None, tau: float = 0.1, **caps: Any) -> AllocationProblem:
    value = np.linspace(1.0, 0.0, n)  # distinct, decreasing
    creator = np.arange(n) if creators is None else np.asarray(creators)
    cluster = creator if clusters is None else np.asarray(clusters)
    orig = np.zeros(n, bool) if original is None else np.asarray(original)
    return build_problem(value, creator_ids=creator, cluster_ids=cluster, original=orig, tau=tau, **caps)


def _solve_both(problem: AllocationProblem, reference: ReferenceAllocator) -> Allocation:
    """The fast allocation, after checking it is feasible, KKT and equal to the reference's weights."""
    fast = solve_fast(problem)
    assert kkt_violations(fast, tol=1e-9) == []
    ref = reference.solve(problem)
    assert ref.relaxations == fast.relaxations
    np.testing.assert_allclose(ref.weights, fast.weights, atol=1e-6)
    return fast


def _only(allocation: Allocation, constraint: str) -> list[Relaxation]:
    return [r for r in allocation.relaxations if r.constraint == constraint]


def test_too_few_clusters_scales_cluster_caps_to_capacity_one(reference: ReferenceAllocator) -> None:
    # three one-creator clusters capped at 0.2 hold 0.6: every cluster cap is scaled by 1 / 0.6
    problem = _problem(3, cluster_cap=0.2)
    a = _solve_both(problem, reference)
    assert a.problem is not None
    np.testing.assert_allclose(a.problem.cluster_cap, 0.2 / 0.6, rtol=1e-14)
    (r,) = a.relaxations
    assert (r.request, r.constraint, r.requested) == (0, "cluster_cap", 1.0)
    assert r.applied == pytest.approx(1 / 0.6, rel=1e-14)
    assert "0.6 < 1" in r.reason
    assert "scaled by 1.667" in r.reason
    assert "raise allocation.cluster_cap" in r.reason
    assert r.degrades
    assert a.degraded.tolist() == [True]
    np.testing.assert_allclose(a.weights, 1 / 3, atol=1e-12)  # every cluster at its new cap


def test_cluster_scale_stops_at_what_the_creators_hold(reference: ReferenceAllocator) -> None:
    # clusters capped at 0.3; cluster 0's only creator holds 0.1, so capacity is 0.1 + 0.6 theta = 1:
    # theta = 1.5 exactly (cluster 0 is full at its creator's cap well before)
    problem = _problem(3, creator_cap=[0.1, 1.0, 1.0], cluster_cap=0.3)
    a = _solve_both(problem, reference)
    (r,) = a.relaxations
    assert r.constraint == "cluster_cap"
    assert r.applied == pytest.approx(1.5, rel=1e-14)
    assert a.problem is not None
    np.testing.assert_allclose(a.problem.cluster_cap, 0.45, rtol=1e-14)
    np.testing.assert_allclose(a.weights, [0.1, 0.45, 0.45], atol=1e-12)


def test_too_few_creators_lifts_clusters_then_scales_creators(reference: ReferenceAllocator) -> None:
    # four creators capped at 0.1 in two clusters capped at 0.5: clusters cannot help (they hold what their
    # creators hold), so cluster caps are lifted and creator caps scaled by 2.5
    problem = _problem(8, creators=[0, 0, 1, 1, 2, 2, 3, 3], clusters=[0, 0, 0, 0, 1, 1, 1, 1],
                       creator_cap=0.1, cluster_cap=0.5)
    a = _solve_both(problem, reference)
    cluster, creator = _only(a, "cluster_cap"), _only(a, "creator_cap")
    assert len(cluster) == 1
    assert np.isinf(cluster[0].applied)
    assert "lifted entirely" in cluster[0].reason
    assert len(creator) == 1
    assert creator[0].applied == pytest.approx(2.5, rel=1e-14)
    assert "retrieve candidates from more creators" in creator[0].reason
    assert a.problem is not None
    np.testing.assert_allclose(a.problem.creator_cap, 0.25, rtol=1e-14)
    np.testing.assert_allclose(a.problem.cluster_cap, 1.0)
    creator_sum, _, _, _ = group_sums(a)
    np.testing.assert_allclose(creator_sum, 0.25, atol=1e-12)
    assert a.degraded.tolist() == [True]


def test_too_few_candidates_scales_item_caps(reference: ReferenceAllocator) -> None:
    problem = _problem(4, item_cap=[0.2, 0.1, 0.1, 0.0])  # hold 0.4; the zero cap stays zero
    a = _solve_both(problem, reference)
    (r,) = _only(a, "item_cap")
    assert r.applied == pytest.approx(2.5, rel=1e-14)
    assert "send more candidates" in r.reason
    assert a.problem is not None
    np.testing.assert_allclose(a.problem.cap, [0.5, 0.25, 0.25, 0.0], rtol=1e-14)
    np.testing.assert_allclose(a.weights, [0.5, 0.25, 0.25, 0.0], atol=1e-12)
    assert a.degraded.tolist() == [True]


@pytest.mark.parametrize("zero", ["item_cap", "creator_cap", "cluster_cap", "all"])
def test_all_caps_zero_still_serves_all_traffic(zero: str, reference: ReferenceAllocator) -> None:
    """Every cap of one level at zero (a request of banned items / creators / clusters) answers with the
    whole traffic placed, by utility alone, and is flagged degraded; no solver raises."""
    caps: dict[str, Any] = {"item_cap": 0.0, "creator_cap": 0.0, "cluster_cap": 0.0} if zero == "all" else {zero: 0.0}
    problem = _problem(3, creators=[0, 0, 1], clusters=[0, 0, 0], **caps)
    a = _solve_both(problem, reference)
    assert a.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert a.degraded.tolist() == [True]
    lifted = [r for r in a.relaxations if np.isinf(r.applied)]
    assert lifted
    assert all("lifted entirely" in r.reason for r in lifted)


def test_some_zero_cluster_caps_stay_zero_when_scaling_suffices(reference: ReferenceAllocator) -> None:
    # a banned cluster (cap 0) next to two capped at 0.25: the others are scaled by 2, the banned one stays 0
    problem = _problem(3, cluster_cap=[0.0, 0.25, 0.25])
    a = _solve_both(problem, reference)
    (r,) = a.relaxations
    assert r.applied == pytest.approx(2.0, rel=1e-14)
    np.testing.assert_allclose(a.weights, [0.0, 0.5, 0.5], atol=1e-12)


def test_banned_cluster_next_to_a_capped_creator_is_lifted(reference: ReferenceAllocator) -> None:
    # the only open cluster's creator holds 0.3: scaling cluster caps cannot reach 1, so they are lifted
    # entirely, and that has to open the banned cluster too (regression: it used to stay at 0, leaving
    # weights that summed to 0.3 in the fast solver and an infeasible program in the reference)
    problem = _problem(3, creators=[0, 1, 1], clusters=[0, 1, 1], creator_cap=[1.0, 0.3, 0.3],
                       cluster_cap=[0.0, 1.0, 1.0])
    a = _solve_both(problem, reference)
    assert a.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert a.problem is not None
    np.testing.assert_allclose(a.problem.cluster_cap, 1.0)
    assert [r.constraint for r in a.relaxations] == ["cluster_cap"]


def test_floor_without_eligible_originals_is_lowered_not_degraded(reference: ReferenceAllocator) -> None:
    problem = _problem(3, floor=0.5)  # no originals at all
    a = _solve_both(problem, reference)
    (r,) = a.relaxations
    assert (r.constraint, r.requested, r.applied) == ("originals_floor", 0.5, 0.0)
    assert "lower allocation.originals_floor" in r.reason
    assert "send more eligible originals" in r.reason
    assert not r.degrades
    assert a.degraded.tolist() == [False]
    assert a.problem is not None
    assert a.problem.floor.tolist() == [0.0]


def test_floor_lowered_to_what_the_originals_can_hold(reference: ReferenceAllocator) -> None:
    # originals (the two lowest-valued candidates) capped at 0.1 + 0.2 cannot hold a floor of 0.5
    problem = _problem(4, original=[False, False, True, True], item_cap=[1.0, 1.0, 0.1, 0.2], floor=0.5)
    a = _solve_both(problem, reference)
    (r,) = a.relaxations
    assert r.constraint == "originals_floor"
    assert r.applied == pytest.approx(0.3, abs=1e-15)
    assert "at most 0.3" in r.reason
    np.testing.assert_allclose(a.weights[2:], [0.1, 0.2], atol=1e-12)
    assert a.degraded.tolist() == [False]


def test_cap_and_floor_relaxed_together_is_degraded(reference: ReferenceAllocator) -> None:
    problem = _problem(3, original=[True, False, False], item_cap=0.2, floor=0.9)
    a = _solve_both(problem, reference)
    (item,) = _only(a, "item_cap")
    (floor,) = _only(a, "originals_floor")
    assert item.applied == pytest.approx(1 / 0.6, rel=1e-14)
    assert floor.applied == pytest.approx(1 / 3, rel=1e-14)  # the original's cap after scaling
    assert a.degraded.tolist() == [True]


def test_relaxations_name_their_request_in_a_batch() -> None:
    # request 0 feasible, 1 short of clusters, 2 short of originals, 3 both
    n = 3
    value = np.tile(np.linspace(1.0, 0.0, n), 4)
    request = np.repeat(np.arange(4), n)
    ids = np.tile(np.arange(n), 4)
    original = np.zeros(4 * n, bool)
    original[[0, 1]] = True  # request 0 has originals
    cluster_cap = np.repeat([1.0, 0.2, 1.0, 0.2], n)
    problem = build_problem(value, creator_ids=ids, cluster_ids=ids, original=original, tau=0.1,
                            cluster_cap=cluster_cap, floor=[0.5, 0.0, 0.5, 0.5], request=request)
    a = solve_fast(problem)
    assert kkt_violations(a, tol=1e-9) == []
    assert sorted((r.request, r.constraint) for r in a.relaxations) == [
        (1, "cluster_cap"), (2, "originals_floor"), (3, "cluster_cap"), (3, "originals_floor")]
    assert a.degraded.tolist() == [False, True, False, True]


def test_feasible_problems_are_left_alone() -> None:
    problem = _problem(5, item_cap=0.3, creator_cap=0.4, cluster_cap=0.5, original=[True] * 5, floor=1.0)
    relaxed, relaxations = make_feasible(problem)
    assert relaxations == ()
    assert relaxed is problem


def _capacity(problem: AllocationProblem) -> float:
    return float(capacities(problem)[2][0])


def test_random_infeasible_requests_relax_minimally() -> None:
    """Over seeded random requests: never raises, always feasible after relaxing, and each finite scale
    factor is the smallest one: the problem with that factor holds exactly 1, with a factor 1e-9 smaller
    it holds less (outermost caps first, so each step is checked on the problem it started from)."""
    checked = {"cluster_cap": 0, "creator_cap": 0, "item_cap": 0, "originals_floor": 0}
    for case in small_cases(11, 1500):
        p = case.problem
        relaxed, relaxations = make_feasible(p)
        assert _capacity(relaxed) >= 1.0 - FEASIBILITY_TOL
        originals = float(capacities(relaxed, originals_only=True)[2][0])
        assert originals >= relaxed.floor[0] - FEASIBILITY_TOL
        assert relaxed.floor[0] <= p.floor[0]
        start = p
        for r in relaxations:
            checked[r.constraint] += 1
            if r.constraint == "originals_floor":
                assert r.applied == pytest.approx(float(capacities(start, originals_only=True)[2][0]), abs=1e-15)
                continue
            field = {"cluster_cap": "cluster_cap", "creator_cap": "creator_cap", "item_cap": "cap"}[r.constraint]
            base = getattr(start, field)
            assert _capacity(start) < 1.0 - FEASIBILITY_TOL
            if np.isfinite(r.applied):
                def scaled(factor: float, base: np.ndarray = base, start: AllocationProblem = start,
                           field: str = field) -> AllocationProblem:
                    return start.replace(**{field: np.minimum(base * factor, 1.0)})

                assert _capacity(scaled(r.applied)) == pytest.approx(1.0, abs=1e-12)
                assert _capacity(scaled(r.applied * (1 - 1e-9))) < 1.0
                start = scaled(r.applied)
            else:
                assert "lifted entirely" in r.reason
                start = start.replace(**{field: np.ones_like(base)})
    assert min(checked.values()) >= 50, checked


def test_tiny_caps_next_to_large_ones_still_hold_all_traffic() -> None:
    """Regression (found by hypothesis): creator caps of 1.4e-45 beside one of 0.05 in one request. The scale
    factor's piece was chosen from differences of running sums, which lost the tiny caps entirely, so the
    relaxed caps held 0.95 and the weights summed to that. The factor is now exact: the two tiny creators
    grow together until the request holds 1, each to (1 - 0.55) / 2 = 0.225."""
    problem = build_problem(np.zeros(11), creator_ids=np.r_[np.zeros(9, np.int64), 1, 2],
                            cluster_ids=np.zeros(11, np.int64), original=np.zeros(11, bool), tau=1e-3,
                            item_cap=np.r_[np.zeros(7), 0.05, 0.5, 0.25, 0.25],
                            creator_cap=np.r_[np.full(9, 0.05), 1.4e-45, 1.4e-45], cluster_cap=0.0)
    allocation = solve_fast(problem)
    assert kkt_violations(allocation, tol=1e-9) == []
    assert allocation.problem is not None
    np.testing.assert_allclose(allocation.problem.creator_cap, [1.0, 0.225, 0.225], rtol=1e-12)  # scaled, at most 1
    assert [r.constraint for r in allocation.relaxations] == ["cluster_cap", "creator_cap"]
