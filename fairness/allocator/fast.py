"""Fast exact solver of the per-request allocation problem (KKT with nested thresholds), vectorized.

Derivation (docs/fairness.md has it in full). Without group caps the solution of
max v.w - tau/2 |w|^2 on {sum w = 1, 0 <= w <= cap} is w_i = clip((v_i - nu) / tau, 0, cap_i) with nu the
root of sum_i w_i(nu) = 1: a monotone, piecewise-linear equation solved exactly by sorting breakpoints.

Caps on creators nested in clusters add one multiplier per group, and the threshold of a candidate
becomes nu + lambda_cluster + lambda_creator. Because the groups nest, they can be eliminated bottom-up:
a creator whose caps exceed C_a has a standalone threshold t_a (its candidates alone summing to C_a),
and under ANY outer threshold t its candidates receive clip((v_i - max(t, t_a)) / tau, 0, cap_i), which
is clip((v_i - t) / tau, 0, cap'_i) with the tightened cap cap'_i = clip((v_i - t_a) / tau, 0, cap_i).
Clusters then do the same with cap', and the request's nu is found last. Each level is one vectorized,
sort-based root find over all groups of all requests at once.

The originals floor adds a multiplier mu >= 0 that raises the value of eligible originals. Where no
group whose cap can bind mixes originals with others, the tightened caps do not move with mu and two
root finds (originals fill the floor, the others the rest) give mu exactly. Otherwise the originals'
share is monotone and piecewise linear in mu, and mu is found by a safeguarded Newton / Illinois search
started from that two-sided solution (exact whenever the mixed groups' caps do not bind at the root).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from fairness.allocator.problem import F64, I64, Allocation, AllocationProblem, Bool, sum_by
from fairness.allocator.relax import make_feasible
from fairness.allocator.screen import solve_screened

_FLOOR_TOL = 1e-12  # |originals share - floor| at which the floor root is accepted (batched sums
# carry rounding of ~1e-12 at 1,000 requests) ...
_FLOOR_TOL_PER_CANDIDATE = 2e-15  # ... plus this per candidate of the request: a share summed over 10,000
# weights sat 9e-12 below the floor on a whole flat piece of mu, and the search crawled 38 steps along it
_MAX_FLOOR_STEPS = 100
_FEW_GROUPS = 4  # up to this many groups, root finds run one group at a time


def group_thresholds(value: F64, cap: F64, group: I64, target: F64, tau: F64) -> F64:
    """Per group g, the smallest t with sum_{i in g} clip((value_i - t) / tau_g, 0, cap_i) = target_g.

    -inf where the group's caps sum to at most the target (the group constraint cannot bind). `tau` is
    per group. Exact up to rounding: the sum is piecewise linear in t with breakpoints value_i - tau cap_i
    (the candidate leaves its cap) and value_i (it reaches 0), so after one sort the root is interpolated
    on the right linear piece.
    """
    n_groups = len(target)
    total = sum_by(group, cap, n_groups)
    out = np.full(n_groups, -np.inf)
    binding = total > target + 1e-15 * np.maximum(1.0, total)
    if not binding.any():
        return out
    if n_groups == 1:
        out[0] = _one_threshold(value, cap, float(target[0]), float(tau[0]), float(total[0]))
        return out
    if n_groups <= _FEW_GROUPS:  # e.g. one request's two floor sides: plain sorts beat the keyed sort
        for one in np.flatnonzero(binding):
            inside = group == one
            out[one] = _one_threshold(value[inside], cap[inside], float(target[one]), float(tau[one]),
                                      float(total[one]))
        return out
    positive = cap > 0
    members = np.bincount(group[positive], minlength=n_groups)
    # a binding group with one positive-cap candidate has the closed form t = v - tau * target
    single = binding & (members == 1)
    if single.any():
        pick = single[group] & positive
        out[group[pick]] = value[pick] - tau[group[pick]] * target[group[pick]]
        binding &= ~single
        if not binding.any():
            return out
    sel = binding[group] & positive
    v, c, g = value[sel], cap[sel], group[sel]
    m = len(v)
    position = np.concatenate((v - tau[g] * c, v))  # (2m,) breakpoints: leaves its cap, reaches 0
    owner = np.concatenate((g, g))
    # sort by (group, position) with one argsort of group + position scaled into [0, 0.5): np.lexsort is
    # about 10x slower here; the key only misorders breakpoints closer than ~1e-16 * n_groups of the range,
    # which moves the interpolated root by rounding-sized amounts. Stable (timsort), because candidates
    # usually arrive grouped and the key is then two ascending runs: 8.7 us against quicksort's 39 us for
    # 1,686 keys (how tied breakpoints are ordered changes no level: the pieces between them are empty)
    low, span = position.min(), position.max() - position.min()
    order = np.argsort(owner + 0.5 * (position - low) / (span if span > 0 else 1.0), kind="stable")
    position, owner = position[order], owner[order]
    # candidates strictly inside their range just above each breakpoint; integer, so exactly 0 at the end
    # of every group and the running count needs no reset between groups
    free = np.cumsum(np.where(order < m, 1, -1))
    fallen = np.concatenate(([0.0], np.cumsum(free[:-1] * np.diff(position) / tau[owner[:-1]])))
    starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    ends = np.concatenate((starts[1:], [2 * m])) - 1
    level = total[owner] - (fallen - np.repeat(fallen[starts], ends - starts + 1))  # (2m,) the sum at each
    hit = level <= target[owner]
    hit[ends] = True  # at the group's last breakpoint the sum is 0 <= target (rounding aside)
    first = np.minimum.reduceat(np.where(hit, np.arange(2 * m), 2 * m), starts)
    k = np.maximum(first, starts + 1) - 1  # the linear piece [position_k, position_k+1] holding the root
    groups = owner[starts]
    out[groups] = position[k] + (level[k] - target[groups]) * tau[groups] / np.maximum(free[k], 1)
    return out


def _one_threshold(value: F64, cap: F64, target: float, tau: float, total: float) -> float:
    """group_thresholds for a single binding group (one request's root): the same sweep, fewer steps."""
    positive = cap > 0
    value, cap = value[positive], cap[positive]
    n = len(value)
    position = np.concatenate((value - tau * cap, value))
    order = np.argsort(position, kind="stable")  # timsort: 25 us against quicksort's 55 us for 2,000 breakpoints
    position = position[order]
    free = np.cumsum(np.where(order < n, 1, -1))
    level = total - np.concatenate(([0.0], np.cumsum(free[:-1] * np.diff(position)))) / tau
    hit = level <= target
    hit[-1] = True  # at the last breakpoint the sum is 0 <= target (rounding aside)
    k = max(int(np.argmax(hit)), 1) - 1
    return float(position[k] + (level[k] - target) * tau / max(int(free[k]), 1))


class _Layout:
    """Index arrays of a problem, computed once and shared by every solve of it."""

    def __init__(self, p: AllocationProblem) -> None:
        self.cluster = p.cluster
        self.request = p.request
        self.creator_request = p.cluster_request[p.creator_cluster]
        self.tau_item = p.tau[self.request]
        self.tau_creator = p.tau[self.creator_request]
        self.tau_cluster = p.tau[p.cluster_request]
        self.ones = np.ones(p.n_requests)
        counts = np.bincount(p.request, minlength=p.n_requests).astype(np.float64)
        self.floor_tol: F64 = _FLOOR_TOL + _FLOOR_TOL_PER_CANDIDATE * counts


class _Laminar:
    """The nested-cap solve for one value vector; keeps the thresholds for the multipliers."""

    def __init__(self, p: AllocationProblem, layout: _Layout, value: F64) -> None:
        tau_item = layout.tau_item
        self.creator_t = group_thresholds(value, p.cap, p.creator, p.creator_cap, layout.tau_creator)
        cap1 = np.minimum(p.cap, np.maximum(value - self.creator_t[p.creator], 0.0) / tau_item)
        self.cluster_t = group_thresholds(value, cap1, layout.cluster, p.cluster_cap, layout.tau_cluster)
        cap2 = np.minimum(cap1, np.maximum(value - self.cluster_t[layout.cluster], 0.0) / tau_item)
        nu = group_thresholds(value, cap2, layout.request, layout.ones, p.tau)
        if np.isinf(nu).any():
            # capacity exactly 1: every candidate sits at its tightened cap; take the largest valid threshold
            exact = np.full(p.n_requests, np.inf)
            np.minimum.at(exact, layout.request, np.where(cap2 > 0, value - tau_item * cap2, np.inf))
            nu = np.where(np.isinf(nu), np.where(np.isinf(exact), 0.0, exact), nu)
        self.nu = nu
        self.cap2 = cap2  # caps tightened by every binding creator and cluster
        self.weights = np.clip((value - nu[layout.request]) / tau_item, 0.0, cap2)
        # multipliers: a candidate's threshold is nu + lambda_cluster + lambda_creator
        self.cluster_level = np.maximum(self.cluster_t, nu[p.cluster_request])
        self.creator_level = np.maximum(self.creator_t, self.cluster_level[p.creator_cluster])

    def shifted(self, p: AllocationProblem, layout: _Layout, mu: F64, nu: F64) -> _Laminar:
        """The solve at originals' value + mu with root threshold nu, for requests without mixed groups.

        Without mixed groups the tightened caps do not move with mu: an all-original group's standalone
        threshold moves up by mu with its values, any other group's stays; the root threshold nu comes
        from the two-sided floor solve (_separable_floor_price), so nothing is solved again here.
        """
        out = object.__new__(_Laminar)
        value = p.value + np.where(p.original, mu[layout.request], 0.0)
        positive = p.cap > 0
        n_creators, n_clusters = len(p.creator_cap), len(p.cluster_cap)
        creator_all_original = sum_by(p.creator, positive & ~p.original, n_creators) == 0
        cluster_all_original = sum_by(p.creator_cluster, ~creator_all_original, n_clusters) == 0
        out.creator_t = self.creator_t + np.where(creator_all_original, mu[layout.creator_request], 0.0)
        out.cluster_t = self.cluster_t + np.where(cluster_all_original, mu[p.cluster_request], 0.0)
        out.cap2 = self.cap2
        out.nu = nu
        out.weights = np.clip((value - nu[layout.request]) / layout.tau_item, 0.0, self.cap2)
        out.cluster_level = np.maximum(out.cluster_t, nu[p.cluster_request])
        out.creator_level = np.maximum(out.creator_t, out.cluster_level[p.creator_cluster])
        return out

    def originals_slope(self, p: AllocationProblem, layout: _Layout, value: F64) -> tuple[F64, F64]:
        """d(originals share)/d(mu) to the right of the current mu, and each candidate's threshold rate.

        Raising the originals' value by d mu moves each candidate inside its range by (d mu [original] -
        d threshold) / tau; a binding group keeps its sum, so its threshold moves by d mu times the share
        of originals among its inside candidates; a non-binding group follows its parent. Originals sitting
        exactly at their entry point (weight 0, value = threshold) count as inside: they enter next.
        Returns (slope (R,), rate (N,)) with rate = d threshold / d mu per candidate.
        """
        threshold = self.creator_level[p.creator]
        entering = p.original & (self.weights <= 0) & (value - threshold >= -1e-12 * np.maximum(1.0, np.abs(value)))
        inside = ((self.weights > 0) | entering) & (self.weights < p.cap) & (p.cap > 0)
        inside_original = inside & p.original
        n_creators, n_clusters = len(p.creator_cap), len(p.cluster_cap)
        creator_inside = sum_by(p.creator, inside, n_creators)
        creator_orig = sum_by(p.creator, inside_original, n_creators)
        creator_binds = self.creator_t > self.cluster_level[p.creator_cluster]
        cluster_binds = self.cluster_t > self.nu[p.cluster_request]
        free_creator = ~creator_binds
        cluster_inside = sum_by(p.creator_cluster, np.where(free_creator, creator_inside, 0.0), n_clusters)
        cluster_orig = sum_by(p.creator_cluster, np.where(free_creator, creator_orig, 0.0), n_clusters)
        free_cluster = ~cluster_binds
        request_inside = sum_by(p.cluster_request, np.where(free_cluster, cluster_inside, 0.0), p.n_requests)
        request_orig = sum_by(p.cluster_request, np.where(free_cluster, cluster_orig, 0.0), p.n_requests)
        request_rate = request_orig / np.maximum(request_inside, 1.0)
        cluster_rate = np.where(cluster_binds, cluster_orig / np.maximum(cluster_inside, 1.0),
                                request_rate[p.cluster_request])
        creator_rate = np.where(creator_binds, creator_orig / np.maximum(creator_inside, 1.0),
                                cluster_rate[p.creator_cluster])
        rate = creator_rate[p.creator]
        per_item = np.where(inside_original, 1.0 - rate, 0.0) / layout.tau_item
        slope: F64 = sum_by(layout.request, per_item, p.n_requests)
        return slope, rate

    def next_event(self, p: AllocationProblem, layout: _Layout, value: F64, mu: F64, rate: F64) -> F64:
        """(R,) the nearest mu beyond the current one where an original enters or a non-original leaves.

        Along the current linear piece thresholds move at `rate`, so an original at 0 enters when
        value + d mu - (threshold + rate d mu) = 0 and an inside non-original reaches 0 when its
        threshold rises to its value. Between events the share is linear or bends down (saturations), so
        a Newton step capped at the next event never overshoots the root on account of these events.
        """
        threshold = self.creator_level[p.creator]
        room = threshold - value  # > 0 for candidates held at 0
        enter = p.original & (self.weights <= 0) & (p.cap > 0) & (rate < 1.0) & (room > 0)
        leave = ~p.original & (self.weights > 0) & (rate > 0)
        distance = np.full(len(value), np.inf)
        distance[enter] = room[enter] / (1.0 - rate[enter])
        distance[leave] = (value[leave] - threshold[leave]) / rate[leave]
        nearest = np.full(p.n_requests, np.inf)
        np.minimum.at(nearest, layout.request, distance)
        event: F64 = mu + nearest
        return event


def solve_fast(problem: AllocationProblem) -> Allocation:
    """Solve every request of the problem exactly; infeasible requests are relaxed first (see relax.py).

    Large requests are solved on working sets of their best candidates, with a KKT check that the others
    get nothing (screen.py): the same answer, at a fraction of the cost when few candidates get traffic.
    """
    p, relaxations = make_feasible(problem)
    allocation = solve_screened(p, solve_feasible)
    return replace(allocation, relaxations=relaxations, problem=p)


def solve_feasible(p: AllocationProblem) -> Allocation:
    """The exact solve of a feasible problem (every request's caps hold its traffic and originals its floor)."""
    layout = _Layout(p)
    mu = np.zeros(p.n_requests)
    solved = _Laminar(p, layout, p.value)
    share = _originals_share(p, layout, solved)
    short = share < p.floor - layout.floor_tol
    if short.any():
        separable = short & ~_mixed_groups(p, layout, solved)
        if separable.any():
            mu, nu = _separable_floor_price(p, layout, solved)
            mu = np.where(separable, mu, 0.0)
            solved = solved.shifted(p, layout, mu, np.where(separable, nu, solved.nu))
        searched = short & ~separable
        if searched.any():
            # search on the requests that need it only, then solve the batch once at the prices found
            if searched.all():  # one request, or all of them: no subproblem, and the search's last solve is kept
                mu, solved = _searched_floor_price(p, layout, solved)
            else:
                sub = _subproblem(p, searched)
                sub_layout = _Layout(sub)
                mu[searched], _ = _searched_floor_price(sub, sub_layout, _Laminar(sub, sub_layout, sub.value))
                solved = _Laminar(p, layout, p.value + np.where(p.original, mu[layout.request], 0.0))
    value = p.value + np.where(p.original, mu[layout.request], 0.0)
    cluster_price = solved.cluster_level - solved.nu[p.cluster_request]
    creator_price = solved.creator_level - solved.cluster_level[p.creator_cluster]
    threshold = solved.creator_level[p.creator]
    at_cap = solved.weights >= p.cap - 1e-15
    cap_price = np.where(at_cap, np.maximum(value - threshold - layout.tau_item * p.cap, 0.0), 0.0)
    return Allocation(weights=solved.weights, sum_price=solved.nu, floor_price=mu, creator_price=creator_price,
                      cluster_price=cluster_price, cap_price=cap_price, problem=p)


def _subproblem(p: AllocationProblem, keep: Bool) -> AllocationProblem:
    """The requests in `keep` alone, renumbered densely."""
    request_index = np.cumsum(keep) - 1
    keep_cluster = keep[p.cluster_request]
    cluster_index = np.cumsum(keep_cluster) - 1
    keep_creator = keep_cluster[p.creator_cluster]
    creator_index = np.cumsum(keep_creator) - 1
    keep_item = keep_creator[p.creator]
    return AllocationProblem(
        value=p.value[keep_item], cap=p.cap[keep_item], creator=creator_index[p.creator[keep_item]],
        creator_cap=p.creator_cap[keep_creator], creator_cluster=cluster_index[p.creator_cluster[keep_creator]],
        cluster_cap=p.cluster_cap[keep_cluster], cluster_request=request_index[p.cluster_request[keep_cluster]],
        original=p.original[keep_item], floor=p.floor[keep], tau=p.tau[keep])


def _mixed_groups(p: AllocationProblem, layout: _Layout, solved: _Laminar) -> Bool:
    """(R,) requests with a creator or cluster whose cap can bind and that holds originals and others.

    A group that can never bind (its candidates' caps sum to at most its cap) has threshold -inf and
    does not couple its originals with its other candidates; neither does a group of one kind, whose
    tightened caps are the same for every mu (its standalone threshold shifts with its values).
    """
    positive = p.cap > 0
    n_creators, n_clusters = len(p.creator_cap), len(p.cluster_cap)
    creator_orig = sum_by(p.creator, positive & p.original, n_creators)
    creator_other = sum_by(p.creator, positive & ~p.original, n_creators)
    creator_mixed = np.isfinite(solved.creator_t) & (creator_orig > 0) & (creator_other > 0)
    cluster_orig = sum_by(p.creator_cluster, creator_orig, n_clusters)
    cluster_other = sum_by(p.creator_cluster, creator_other, n_clusters)
    cluster_mixed = np.isfinite(solved.cluster_t) & (cluster_orig > 0) & (cluster_other > 0)
    creator_request = layout.creator_request
    return (sum_by(creator_request, creator_mixed, p.n_requests) + sum_by(p.cluster_request, cluster_mixed,
                                                                         p.n_requests)) > 0


def _separable_floor_price(p: AllocationProblem, layout: _Layout, solved: _Laminar) -> tuple[F64, F64]:
    """(mu, nu) where the floor binds and no group mixes originals with others: two independent root finds.

    The tightened caps do not move with mu then (see _mixed_groups), so originals fill exactly the floor
    under their own threshold theta_O and the others fill 1 - floor under theta_N = nu;
    mu = theta_N - theta_O.
    """
    side = layout.request * 2 + p.original  # (N,) group: (request, 0 others | 1 originals)
    target = np.stack((1.0 - p.floor, p.floor), axis=1).reshape(-1)
    tau = np.repeat(p.tau, 2)
    theta = group_thresholds(p.value, solved.cap2, side, target, tau)
    if np.isinf(theta).any():
        # a side whose capacity equals its target exactly: every member at its cap, largest valid threshold
        exact = np.full(len(theta), np.inf)
        np.minimum.at(exact, side, np.where(solved.cap2 > 0, p.value - layout.tau_item * solved.cap2, np.inf))
        theta = np.where(np.isinf(theta), np.where(np.isinf(exact), 0.0, exact), theta)
    by_side = theta.reshape(-1, 2)
    mu: F64 = np.maximum(by_side[:, 0] - by_side[:, 1], 0.0)
    nu: F64 = by_side[:, 0]
    return mu, nu


def _originals_share(p: AllocationProblem, layout: _Layout, solved: _Laminar) -> F64:
    return sum_by(layout.request, np.where(p.original, solved.weights, 0.0), p.n_requests)


def _searched_floor_price(p: AllocationProblem, layout: _Layout, at_zero: _Laminar) -> tuple[F64, _Laminar]:
    """The floor multiplier of requests whose floor binds and that have mixed groups (every request of p), and
    the solve there; `at_zero` is the solve at mu = 0.

    The search starts from the two-sided solution that holds the mixed groups' tightened caps where they
    are at mu = 0 (_separable_floor_price): exact when those caps do not bind at the root, and otherwise
    close to it (in the benchmark's problems it often lands within 1e-12), so the bracket it gives is
    narrow. Where it overshoots, the search brackets [0, guess]; where it falls short, [guess, inf).
    """
    guess, _ = _separable_floor_price(p, layout, at_zero)
    at_guess = _Laminar(p, layout, p.value + np.where(p.original, guess[layout.request], 0.0))
    gap = _originals_share(p, layout, at_guess) - p.floor
    hit = np.abs(gap) <= layout.floor_tol
    if hit.all():
        return guess, at_guess
    above = gap > 0
    lo = np.where(above, 0.0, guess)
    hi = np.where(above, guess, np.inf)
    # the solve at lo: at_guess where the guess fell short (or hit), at_zero where it overshot
    solved_lo = at_guess if not above.any() else _Laminar(p, layout, p.value + np.where(p.original, lo[layout.request],
                                                                                            0.0))
    search = _Search.start(p, layout, lo, solved_lo, hi, np.where(above, gap, np.inf))
    mu, solved = _floor_prices(p, layout, ~hit, search, mu0=guess)
    if solved is None:
        solved = _Laminar(p, layout, p.value + np.where(p.original, mu[layout.request], 0.0))
    return mu, solved


@dataclass
class _Search:
    """Per-request state of the floor-price search: the bracket [lo, hi] and what the next step needs."""

    lo: F64
    hi: F64
    gap_lo: F64  # share - floor at lo, and at hi: secant working values (Illinois-scaled)
    gap_hi: F64
    slope_lo: F64  # right-slope of the share at lo ...
    event_lo: F64  # ... and the next mu beyond lo where an original enters or another leaves
    moved: np.ndarray  # int8: which bracket end moved last, -1 lo, +1 hi
    stalled: I64  # consecutive steps that landed below the floor

    @staticmethod
    def start(p: AllocationProblem, layout: _Layout, lo: F64, solved_lo: _Laminar, hi: F64, gap_hi: F64) -> _Search:
        value_lo = p.value + np.where(p.original, lo[layout.request], 0.0)
        slope_lo, rate = solved_lo.originals_slope(p, layout, value_lo)
        return _Search(lo=lo.copy(), hi=hi.copy(), gap_lo=_originals_share(p, layout, solved_lo) - p.floor,
                       gap_hi=gap_hi.copy(), slope_lo=slope_lo,
                       event_lo=solved_lo.next_event(p, layout, value_lo, lo, rate),
                       moved=np.zeros(p.n_requests, np.int8), stalled=np.zeros(p.n_requests, np.int64))

    def take(self, keep: Bool) -> _Search:
        return _Search(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})


_COMPACT_MIN = 16  # a search over at least this many requests moves its unfinished half into a subproblem


def _floor_prices(p: AllocationProblem, layout: _Layout, short: Bool, search: _Search,
                  mu0: F64) -> tuple[F64, _Laminar | None]:
    """The floor multiplier mu of the `short` requests (others keep mu0), and the solve there (None when the
    caller must solve again: the search finished in a subproblem).

    `search` brackets the root of every `short` request (share below the floor at lo, above at hi or inf).
    The originals' share is nondecreasing and piecewise linear in mu. The search tries, in order: a
    Newton step from lo with the exact right-slope of its linear piece (exact when the root lies on that
    piece); from a flat piece, a jump to the next point where an original enters; the Illinois secant;
    bisection (or doubling before a bracket exists). Typical requests need a handful of solves; once half
    of a batch's requests have finished, the rest continue in a subproblem of their own, so a few slow
    requests do not make every step re-solve the whole batch (benchmarks/allocator.py).
    """
    request = layout.request
    n = p.n_requests
    st = search
    done = ~short
    mu = mu0.copy()  # requests not searched keep theirs
    solved: _Laminar | None = None
    gap = np.where(done, 0.0, st.gap_lo)
    for _ in range(_MAX_FLOOR_STEPS):
        bounded = np.isfinite(st.hi)
        newton = st.lo - st.gap_lo / np.where(st.slope_lo > 0, st.slope_lo, np.nan)
        trial = np.where(bounded, 0.5 * (st.lo + st.hi), 2.0 * st.lo + p.tau)
        for candidate in (np.where(st.slope_lo > 0, np.nan, st.event_lo), newton):  # last wins
            inside = np.isfinite(candidate) & (candidate > st.lo) & (candidate < st.hi)
            trial = np.where(inside, candidate, trial)
        # safeguard: where the share bends down (saturations) Newton from lo undershoots on every piece and
        # would need one step per piece; after two undershoots in a row every other step bisects (doubles
        # before a bracket exists), so the bracket shrinks geometrically and lo reaches the root's piece
        fallback = (st.stalled >= 2) & (st.stalled % 2 == 0)
        trial = np.where(fallback, np.where(bounded, 0.5 * (st.lo + st.hi), 2.0 * st.lo + p.tau), trial)
        mu = np.where(done, mu, trial)
        value = p.value + np.where(p.original, mu[request], 0.0)
        solved = _Laminar(p, layout, value)
        gap = _originals_share(p, layout, solved) - p.floor
        hit = ~done & (np.abs(gap) <= layout.floor_tol)
        below, above = ~done & ~hit & (gap < 0), ~done & ~hit & (gap > 0)
        if below.any():
            slope, rate = solved.originals_slope(p, layout, value)
            st.slope_lo = np.where(below, slope, st.slope_lo)
            st.event_lo = np.where(below, solved.next_event(p, layout, value, mu, rate), st.event_lo)
        st.gap_hi = np.where(below & (st.moved == -1), 0.5 * st.gap_hi, st.gap_hi)
        st.gap_lo = np.where(above & (st.moved == 1), 0.5 * st.gap_lo, st.gap_lo)
        st.lo, st.gap_lo = np.where(below, mu, st.lo), np.where(below, gap, st.gap_lo)
        st.hi, st.gap_hi = np.where(above, mu, st.hi), np.where(above, gap, st.gap_hi)
        st.moved = np.where(below, -1, np.where(above, 1, st.moved)).astype(np.int8)
        st.stalled = np.where(below, st.stalled + 1, 0)
        done |= hit | (np.isfinite(st.hi) & (st.hi - st.lo <= 1e-15 * np.maximum(1.0, st.hi)))
        if done.all():
            break
        active = ~done
        if n >= _COMPACT_MIN and 2 * int(active.sum()) <= n:
            mu = np.where(done, _settle(mu, gap, st.hi, layout.floor_tol), mu)
            sub = _subproblem(p, active)
            mu[active], _ = _floor_prices(sub, _Layout(sub), np.ones(sub.n_requests, bool), st.take(active),
                                          mu[active])
            return np.where(short, mu, mu0), None
    settled = _settle(mu, gap, st.hi, layout.floor_tol)
    if np.array_equal(settled, mu):
        return np.where(short, mu, mu0), solved
    return np.where(short, settled, mu0), None


def _settle(mu: F64, gap: F64, hi: F64, tol: F64) -> F64:
    """mu where the share meets the floor; where the bracket collapsed first, its feasible end hi."""
    settled = np.where(np.abs(gap) <= tol, mu, hi)
    return np.where(np.isfinite(settled), settled, mu)
