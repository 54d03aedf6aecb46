"""Working-set screening: solve a large request on its few contenders, then prove the rest get nothing.

With tau small next to the spread of the utilities, only a handful of a request's candidates receive
traffic: at 1,000 candidates under the default policy, a few dozen. Every other candidate sits at 0 with
its value below its threshold, and neither appears in any group sum nor moves any multiplier. So the
exact answer of the whole request is the answer on a working set S (the M best values, the M best
eligible originals, which the floor may lift, and every candidate whose cap is zero, which pins its
group's threshold), extended with zeros, PROVIDED every candidate left out satisfies its KKT condition
there:

    v_i + mu [i original] <= nu + lambda_cluster(i) + lambda_creator(i)      (a group absent from S: 0)

Then the extended weights and S's multipliers satisfy every KKT condition of the full problem (group
sums and the originals' share are unchanged, the excluded candidates' weights are 0 and optimal), and the
strictly convex problem has one solution, so it is that one. A request whose check fails, or whose
working set cannot hold its traffic or its floor, doubles M and is solved again; at worst it is solved
whole. Requests of at most 2 M candidates are never screened.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fairness.allocator.problem import F64, I64, Allocation, AllocationProblem, Bool
from fairness.allocator.relax import FEASIBILITY_TOL, capacities

WORKING_SET = 64  # M: starting size of a request's working set (best values; as many best originals again)
_ZERO_CAP = 1e-15  # at or below this a cap holds nothing; such candidates always stay in the working set
_KKT_SLACK = 1e-12  # an excluded candidate may sit this much (x tau) above its threshold: weight error <= 1e-12


def solve_screened(problem: AllocationProblem, solve: Callable[[AllocationProblem], Allocation]) -> Allocation:
    """`solve(problem)` (a solver of feasible problems) run on working sets; the same answer, exactly.

    `problem` must be feasible (relax.make_feasible). Returns the Allocation of the full problem.
    """
    p = problem
    n_per_request = np.bincount(p.request, minlength=p.n_requests)
    size = np.full(p.n_requests, WORKING_SET, np.int64)
    if (n_per_request <= 2 * size).all():
        return solve(p)
    request = p.request
    dead = ((p.cap <= _ZERO_CAP) | (p.creator_cap[p.creator] <= _ZERO_CAP)
            | (p.cluster_cap[p.creator_cluster[p.creator]] <= _ZERO_CAP))
    has_floor = p.original & (p.floor[request] > 0)
    whole = n_per_request <= 2 * size
    while True:
        keep = (whole[request] | dead | _best(p.value, request, n_per_request, size)
                | _best(np.where(has_floor, p.value, -np.inf), request, n_per_request, size))
        sub, creator_index, cluster_index = _items(p, keep)
        short = _cannot_hold(sub)
        if short.any():  # the working set cannot place all traffic or the floor: widen it and try again
            whole |= short & (2 * size >= n_per_request)
            size = np.where(short, 2 * size, size)
            continue
        allocation = solve(sub)
        full = _extend(p, keep, creator_index, cluster_index, allocation)
        violated = _excluded_violations(p, keep, full)
        if not violated.any():
            return full
        whole |= violated & (2 * size >= n_per_request)
        size = np.where(violated, 2 * size, size)


def _best(value: F64, request: I64, n_per_request: I64, size: I64) -> Bool:
    """(N,) the size[r] best finite values of each request r (ties at the cut may add a few more)."""
    if len(n_per_request) == 1:  # one request (serving): a partition, not a sort
        k = int(min(size[0], n_per_request[0]))
        cut = np.partition(value, len(value) - k)[len(value) - k]
        out: Bool = (value >= cut) & np.isfinite(value)
        return out
    # many: one sort by (request, value descending); -inf last within its request
    finite = np.isfinite(value)
    low = value[finite].min() if finite.any() else 0.0
    span = (value[finite].max() - low) if finite.any() else 1.0
    scaled = np.where(finite, 0.5 * (value - low) / (span if span > 0 else 1.0), -0.25)  # in [-0.25, 0.5]
    order = np.argsort(request + 0.5 - scaled, kind="stable")  # request r's keys lie in [r, r + 0.75]
    starts = np.concatenate(([0], np.cumsum(n_per_request)[:-1]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - np.repeat(starts, n_per_request)
    out = (rank < size[request]) & finite
    return out


def _items(p: AllocationProblem, keep: Bool) -> tuple[AllocationProblem, I64, I64]:
    """The problem on the kept candidates (every request stays), and the new index of each creator and
    cluster (-1 where none of its candidates is kept)."""
    keep_creator = np.bincount(p.creator[keep], minlength=len(p.creator_cap)) > 0
    creator_index = np.where(keep_creator, np.cumsum(keep_creator) - 1, -1)
    keep_cluster = np.bincount(p.creator_cluster[keep_creator], minlength=len(p.cluster_cap)) > 0
    cluster_index = np.where(keep_cluster, np.cumsum(keep_cluster) - 1, -1)
    sub = AllocationProblem(
        value=p.value[keep], cap=p.cap[keep], creator=creator_index[p.creator[keep]],
        creator_cap=p.creator_cap[keep_creator], creator_cluster=cluster_index[p.creator_cluster[keep_creator]],
        cluster_cap=p.cluster_cap[keep_cluster], cluster_request=p.cluster_request[keep_cluster],
        original=p.original[keep], floor=p.floor, tau=p.tau)
    return sub, creator_index, cluster_index


def _cannot_hold(sub: AllocationProblem) -> Bool:
    """(R,) requests whose working set cannot place all traffic, or their originals the floor."""
    _, _, room = capacities(sub)
    _, _, originals_room = capacities(sub, originals_only=True)
    short: Bool = (room < 1.0 - FEASIBILITY_TOL) | (originals_room < sub.floor - FEASIBILITY_TOL)
    return short


def _extend(p: AllocationProblem, keep: Bool, creator_index: I64, cluster_index: I64, a: Allocation) -> Allocation:
    """The working set's allocation as one of the full problem: zeros and zero multipliers elsewhere."""
    weights = np.zeros(len(p.value))
    weights[keep] = a.weights
    cap_price = np.zeros(len(p.value))
    cap_price[keep] = a.cap_price
    creator_price = np.where(creator_index >= 0, a.creator_price[np.maximum(creator_index, 0)], 0.0)
    cluster_price = np.where(cluster_index >= 0, a.cluster_price[np.maximum(cluster_index, 0)], 0.0)
    return Allocation(weights=weights, sum_price=a.sum_price, floor_price=a.floor_price, creator_price=creator_price,
                      cluster_price=cluster_price, cap_price=cap_price, relaxations=a.relaxations, problem=p)


def _excluded_violations(p: AllocationProblem, keep: Bool, a: Allocation) -> Bool:
    """(R,) requests with a left-out candidate whose value (floor boost included) clears its threshold."""
    request = p.request
    out = ~keep
    value = p.value[out] + np.where(p.original[out], a.floor_price[request[out]], 0.0)
    creator = p.creator[out]
    threshold = (a.sum_price[request[out]] + a.cluster_price[p.creator_cluster[creator]]
                 + a.creator_price[creator])
    bad = value - threshold > _KKT_SLACK * p.tau[request[out]]
    violated: Bool = np.bincount(request[out][bad], minlength=p.n_requests) > 0
    return violated
