"""Make an allocation problem feasible with the smallest relaxation, and say what gave way.

A request is feasible when its caps can hold all of its traffic (capacity >= 1) and its eligible
originals can hold the floor. Caps nest (candidate inside creator inside cluster), so the most traffic
a request can place is r = sum_g min(C_g, sum_{a in g} min(C_a, sum_{i in a} cap_i)), and the most its
originals can take, r_O, is the same sum over originals only.

When r < 1 the caps give way, outermost first: all cluster caps of the request are scaled by the
smallest common factor theta >= 1 that makes r = 1 (lifted entirely if that is not enough), then the
creator caps the same way, then the per-candidate caps. When r_O < f the floor is lowered to r_O. The
serving layer never raises for these: it answers with the relaxed allocation and the reasons.
"""

from __future__ import annotations

import numpy as np

from fairness.allocator.problem import F64, I64, AllocationProblem, Relaxation, sum_by

FEASIBILITY_TOL = 1e-12


def capacities(problem: AllocationProblem, *, originals_only: bool = False) -> tuple[F64, F64, F64]:
    """(creator, cluster, request) capacities: the most traffic each can hold under the nested caps."""
    p = problem
    cap = np.where(p.original, p.cap, 0.0) if originals_only else p.cap
    creator = np.minimum(p.creator_cap, sum_by(p.creator, cap, len(p.creator_cap)))
    cluster = np.minimum(p.cluster_cap, sum_by(p.creator_cluster, creator, len(p.cluster_cap)))
    request = sum_by(p.cluster_request, cluster, p.n_requests)
    return creator, cluster, request


def min_scale(scale_of: F64, held: F64, group: I64, n_groups: int, need: F64) -> F64:
    """Per group, the smallest theta >= 1 with sum_j min(theta * scale_of_j, held_j) >= need (inf if impossible).

    Exact: the left side is piecewise linear in theta with breakpoints held_j / scale_of_j.
    """
    out = np.ones(n_groups)
    # members with scale_of = 0 can never grow, so they add nothing however large theta gets
    reach = sum_by(group, np.where(scale_of > 0, held, 0.0), n_groups)
    have = sum_by(group, np.minimum(scale_of, held), n_groups)
    short = have < need - FEASIBILITY_TOL
    out[short & (reach < need - FEASIBILITY_TOL)] = np.inf
    solvable = short & (reach >= need - FEASIBILITY_TOL)
    if not solvable.any():
        return out
    sel = solvable[group] & (scale_of > 0)
    a, b, g = scale_of[sel], held[sel], group[sel]
    ratio = b / a  # theta at which member j stops growing
    order = np.lexsort((ratio, g))
    a, b, g, ratio = a[order], b[order], g[order], ratio[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, len(g)])
    start_of = np.repeat(starts, sizes)
    position = np.repeat(np.arange(len(starts)), sizes)  # each member's group, as an index into starts
    groups = g[starts]
    # The root lies on the piece that ends at the first breakpoint `first` where the total reaches `need`.
    # Binary search for it per group, evaluating the total at a breakpoint from the members themselves
    # (sum_j min(theta a_j, b_j)): running sums would subtract a large prefix from a large total, and lose the
    # tiny scales that decide the piece (caps of 1e-45 after one of 0.05 left the capacity at 0.95).
    low, high = np.zeros(len(starts), np.int64), sizes - 1  # the last breakpoint reaches `reach` >= need
    while (open_ := low < high).any():
        middle = (low + high) // 2
        theta_mid = ratio[starts + middle][position]
        reached = sum_by(g, np.minimum(theta_mid * a, b), n_groups)[groups] >= need[groups] - FEASIBILITY_TOL
        high = np.where(open_ & reached, middle, high)
        low = np.where(open_ & ~reached, middle + 1, low)
    # the root on the piece [ratio_first-1, ratio_first]: members before `first` are full, the rest grow
    growing = np.arange(len(g)) - start_of >= low[position]
    full_b = sum_by(g, np.where(growing, 0.0, b), n_groups)[groups]
    growing_a = sum_by(g, np.where(growing, a, 0.0), n_groups)[groups]
    theta = (need[groups] - full_b) / growing_a
    out[groups] = np.maximum(theta, 1.0)
    return out


def make_feasible(problem: AllocationProblem) -> tuple[AllocationProblem, tuple[Relaxation, ...]]:
    """The problem with the smallest relaxation that makes every request feasible, and what gave way."""
    p = problem
    relaxations: list[Relaxation] = []
    ones = np.ones(p.n_requests)
    _, _, room = capacities(p)
    if (room < 1.0 - FEASIBILITY_TOL).any():
        # cluster caps: scale every cluster cap of a short request by its smallest sufficient factor
        creator_room, _, _ = capacities(p)
        inside = sum_by(p.creator_cluster, creator_room, len(p.cluster_cap))
        theta = min_scale(p.cluster_cap, inside, p.cluster_request, p.n_requests, ones)
        relaxations += _report(theta, p, "cluster_cap", p.cluster_cap, p.cluster_request, room, "the clusters present",
                               "raise allocation.cluster_cap or retrieve candidates from more operator clusters")
        # "lifted entirely" means cap 1, zero caps included (scaling a 0 by a huge factor left it at 0)
        p = p.replace(cluster_cap=np.where(np.isinf(theta)[p.cluster_request], 1.0, np.minimum(
            p.cluster_cap * np.where(np.isinf(theta), 1.0, theta)[p.cluster_request], 1.0)))
        _, _, room = capacities(p)
    if (room < 1.0 - FEASIBILITY_TOL).any():
        item_room = sum_by(p.creator, p.cap, len(p.creator_cap))
        creator_request = p.cluster_request[p.creator_cluster]
        theta = min_scale(p.creator_cap, item_room, creator_request, p.n_requests, ones)
        relaxations += _report(theta, p, "creator_cap", p.creator_cap, creator_request, room, "the creators present",
                               "raise allocation.creator_cap or retrieve candidates from more creators")
        p = p.replace(creator_cap=np.where(np.isinf(theta)[creator_request], 1.0, np.minimum(
            p.creator_cap * np.where(np.isinf(theta), 1.0, theta)[creator_request], 1.0)))
        _, _, room = capacities(p)
    if (room < 1.0 - FEASIBILITY_TOL).any():
        request = p.request
        theta = min_scale(p.cap, np.ones_like(p.cap), request, p.n_requests, ones)
        relaxations += _report(theta, p, "item_cap", p.cap, request, room, "the candidates present",
                               "raise allocation.item_cap or send more candidates")
        banned = np.isinf(theta)[request]  # every candidate capped at 0: serve by utility alone
        p = p.replace(cap=np.where(banned, 1.0, np.minimum(p.cap * np.where(np.isinf(theta), 1.0, theta)[request],
                                                           1.0)))
    _, _, originals_room = capacities(p, originals_only=True)
    short = originals_room < p.floor - FEASIBILITY_TOL
    for r in np.flatnonzero(short):
        relaxations.append(Relaxation(
            request=int(r), constraint="originals_floor", requested=float(p.floor[r]), applied=float(originals_room[r]),
            reason=(f"the eligible originals present can hold at most {originals_room[r]:.4g} of the traffic under "
                    f"the caps, below the floor {p.floor[r]:.4g}; the floor was lowered to what they can hold "
                    "(send more eligible originals, or lower allocation.originals_floor)")))
    if short.any():
        p = p.replace(floor=np.where(short, originals_room, p.floor))
    return p, tuple(relaxations)


def _report(theta: F64, problem: AllocationProblem, constraint: str, caps: F64, owner: I64, room: F64, what: str,
            fix: str) -> list[Relaxation]:
    """One record per request whose caps at this level actually changed."""
    out = []
    below_one = sum_by(owner, caps < 1.0, problem.n_requests) > 0  # caps already at 1 cannot give way
    for r in np.flatnonzero((theta > 1.0) & below_one):
        lifted = bool(np.isinf(theta[r]))
        factor = "lifted entirely" if lifted else f"scaled by {theta[r]:.4g}"
        out.append(Relaxation(
            request=int(r), constraint=constraint, requested=1.0, applied=float(theta[r]),
            reason=f"{what} can hold only {room[r]:.4g} < 1 of the traffic under their caps; {constraint}s {factor} "
                   f"({fix})"))
    return out
