"""Ridge-regularized dual ascent for planner programs beyond what HiGHS and Clarabel reach.

Design note /work/shared/design/allocator.md, "Offline planner": HiGHS and Clarabel solve the program up
to ~1e5 variables (0.8-3.4 s there) but did not finish 1e6 in 400 s; beyond that, a DuaLip-style
ridge-regularized dual ascent (LinkedIn DuaLip, Basu et al., ICML 2020). With ridge gamma > 0 the
Lagrangian is maximized in closed form pair by pair,

    x*(y) = clip((value - A^T y) / gamma, 0, demand),

where y stacks the row prices of `fairness.planner.program` (supply nu, creator caps lambda, cluster caps
mu, floors phi, budgets rho) and A^T y is each pair's total price. The dual function

    g(y) = sum_p [(value_p - (A^T y)_p) x*_p - gamma/2 x*_p^2] + nu.supply + lambda.U + mu.cap - phi.L + rho.B

is convex and smooth, with gradient the row residuals at x*(y) (supply_s - sum_s x*, U_a - E_a, ...).
We minimize it (dual ascent on the Lagrangian's prices) over the box the slacks put on them
(nu >= -penalty; lambda, mu >= 0; 0 <= phi, rho <= penalty), split in two:

* local prices (creators, clusters): pairs of different clusters are disjoint, so for fixed supply and
  budget prices g separates into one small problem per cluster, solved exactly and all at once by a
  vectorized safeguarded Newton search on monotone piecewise-linear functions (`local_solve`);
* global prices (one per segment, one per budget: a handful): h(nu, rho) = min over the local prices of
  g is convex and smooth with gradient the supply and budget residuals, and is minimized by projected
  quasi-Newton steps (scipy's L-BFGS-B, box-constrained), warm-starting the local prices.

Why not plain projected accelerated gradient on all prices (measured at 1e4 pairs, ridge 0.01 x P,
against Clarabel): FISTA with adaptive restart and a diagonal majorant of A A^T / gamma took 1,580
iterations to a 1e-6 gap and still left floor prices 0.28 too high (a price whose pairs sit at their
demand bound has a tiny constant gradient, so gradient steps crawl back to its kink); FISTA on the global
prices with exact local prices took 944 evaluations; L-BFGS-B took 20 (0.45 s) with prices within 1e-5.

Stopping rule: the KKT residual, max over rows of |y - proj(y - D^-1 grad g(y))| D in shares (D a
diagonal majorant of A A^T / gamma: primal infeasibility of x*(y) on hard rows and complementary
slackness on all), at most `kkt_tol` / max(P, KKT_MIN_PAIRS), a fraction of an average pair's share; and
the duality gap of (x*(y), y), g(y) - f(x*(y)) = sum_i y_i (b - A x*)_i (soft rows at their penalty price
take their violation as slack), at most `gap_tol` x max(1, |g(y)|). The plan returned is x*(y) repaired to
honour every hard row exactly (`repair`); by weak duality g(y) >= optimum >= its objective, and that
certified gap is reported in the stats. It is not the stopping rule: a soft row the repaired plan misses
by 1e-9 costs the penalty (~3e3) per unit, so the certified gap stalls near 1e-6 while the prices are
already within 1e-5 of the optimum's.

Everything is vectorized over pairs with np.bincount and fancy indexing: an evaluation is O(P).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeResult, minimize  # type: ignore[import-untyped]
from tqdm import tqdm

from fairness.planner.inputs import F64, I64
from fairness.planner.program import ExposureProgram, Solution, objective_value

# Defaults of the stopping rule (module docstring). From 1e3 to 3e5 pairs they give objectives within 1e-5
# (relative) and every pair's total price within 2.1e-5 of Clarabel's on the same ridge program
# (tests/fairness/planner/test_dual_ascent.py holds them to 1e-5 and 1e-4; benchmarks/planner.py).
KKT_TOL = 1e-4           # KKT residual, as a fraction of an average pair's share (1 / P)
KKT_MIN_PAIRS = 10_000   # ... of at most 1 / KKT_MIN_PAIRS
GAP_TOL = 1e-6           # duality gap of (x*(y), y), relative
LOCAL_TOL = 1e-6         # local rows are settled to this fraction of the KKT tolerance (Newton is exact on
                         # a piecewise-linear function once on the right piece, so this costs little)
MAX_EVALUATIONS = 500    # dual evaluations (each: one local solve and one gradient), all restarts together
RESTARTS = 2
POLISH_PASSES = 3
NEWTON_STEPS = 60        # cap on the safeguarded Newton steps of one block minimization


@dataclass
class Prices:
    """The dual vector y by row family; full length (zero where a row is not in the program)."""

    supply: F64      # (S,) nu
    creator: F64     # (A,) lambda
    cap: F64         # (G,) mu
    floor: F64       # (G,) phi
    budget: F64      # (B,) rho

    def parts(self) -> tuple[F64, F64, F64, F64, F64]:
        return self.supply, self.creator, self.cap, self.floor, self.budget

    def flat(self) -> F64:
        return np.concatenate(self.parts())


class DualFunction:
    """The dual function of one program, its gradient, the price box and the exact block minimizations."""

    def __init__(self, program: ExposureProgram, *, row_tol: float) -> None:
        p = self.program = program
        self.row_tol = row_tol  # how exactly local_solve settles each row (shares)
        if p.ridge <= 0:
            raise ValueError(f"dual ascent needs ridge > 0 (received {p.ridge}); use HiGHS for the LP or set "
                             "planner.ridge > 0")
        self.names = list(p.budget_coef)
        self.coef = [p.budget_coef[name] for name in self.names]
        self.bound = np.array([p.budget_bound[name] for name in self.names])
        # Which rows are in the program (the others keep price 0), as masks over A and G.
        self.creator_on = np.zeros(p.n_creators, dtype=np.bool_)
        self.creator_on[p.active_creators] = True
        self.cap_on = np.zeros(p.n_clusters, dtype=np.bool_)
        self.cap_on[p.active_clusters] = True
        self.floor_on = np.zeros(p.n_clusters, dtype=np.bool_)
        self.floor_on[p.floored_clusters] = True
        # Pairs each family's sweep has to look at (those of rows in the program).
        self.creator_pairs = np.flatnonzero(self.creator_on[p.pair_creator])
        self.cluster_pairs = np.flatnonzero((self.cap_on | self.floor_on)[p.pair_cluster])
        # Column sums c_j of |A| and the diagonal majorant D_i = sum_j |A_ij| c_j / gamma; steps are 1/D.
        on_c = self.creator_on[p.pair_creator]
        on_g = self.cap_on[p.pair_cluster]
        on_f = self.floor_on[p.pair_cluster]
        column = 1.0 + on_c + on_g + on_f + sum((np.abs(c) for c in self.coef), np.zeros(p.n_pairs))  # (P,)

        def step(group: I64, weights: F64, n: int) -> F64:
            return p.ridge / np.maximum(np.bincount(group, weights=weights, minlength=n), 1e-300)

        self.step = Prices(
            supply=step(p.pair_segment, column, p.n_segments),
            creator=step(p.pair_creator, column * on_c, p.n_creators),
            cap=step(p.pair_cluster, column * on_g, p.n_clusters),
            floor=step(p.pair_cluster, column * on_f, p.n_clusters),
            budget=np.array([p.ridge / max(float(np.abs(c) @ column), 1e-300) for c in self.coef]),
        )

    def zero(self) -> Prices:
        p = self.program
        return Prices(np.zeros(p.n_segments), np.zeros(p.n_creators), np.zeros(p.n_clusters),
                      np.zeros(p.n_clusters), np.zeros(len(self.names)))

    def pair_price(self, y: Prices) -> F64:
        """(P,) A^T y: each pair's total price."""
        p = self.program
        price = y.supply[p.pair_segment] + y.creator[p.pair_creator] + (y.cap - y.floor)[p.pair_cluster]
        for rho, coef in zip(y.budget, self.coef, strict=True):
            price += rho * coef
        return price

    def value_and_gradient(self, y: Prices) -> tuple[float, Prices, F64]:
        """g(y), its gradient (the row residuals at x*(y)) and x*(y)."""
        p = self.program
        reduced = p.value - self.pair_price(y)                                          # (P,)
        x = np.clip(reduced / p.ridge, 0.0, p.demand)                                   # (P,)
        segment = np.bincount(p.pair_segment, weights=x, minlength=p.n_segments)        # (S,)
        creator = np.bincount(p.pair_creator, weights=x, minlength=p.n_creators)        # (A,)
        cluster = np.bincount(p.creator_cluster, weights=creator, minlength=p.n_clusters)  # (G,)
        used = np.array([float(c @ x) for c in self.coef])                              # (B,)
        value = (float(reduced @ x) - 0.5 * p.ridge * float(x @ x) + float(y.supply @ p.supply)
                 + float(y.creator @ p.creator_cap) + float(y.cap @ p.cluster_cap) - float(y.floor @ p.floor)
                 + float(y.budget @ self.bound))
        gradient = Prices(
            supply=p.supply - segment,
            creator=np.where(self.creator_on, p.creator_cap - creator, 0.0),
            cap=np.where(self.cap_on, p.cluster_cap - cluster, 0.0),
            floor=np.where(self.floor_on, cluster - p.floor, 0.0),
            budget=self.bound - used,
        )
        return value, gradient, x

    def project(self, y: Prices) -> Prices:
        """Onto the price box the slacks impose (module docstring)."""
        pen = self.program.penalty
        return Prices(
            supply=np.maximum(y.supply, -pen),
            creator=np.where(self.creator_on, np.maximum(y.creator, 0.0), 0.0),
            cap=np.where(self.cap_on, np.maximum(y.cap, 0.0), 0.0),
            floor=np.where(self.floor_on, np.clip(y.floor, 0.0, pen), 0.0),
            budget=np.clip(y.budget, 0.0, pen),
        )

    def gradient_step(self, z: Prices, gradient: Prices) -> Prices:
        return self.project(Prices(*(v - s * g for v, s, g in zip(z.parts(), self.step.parts(), gradient.parts(),
                                                                    strict=True))))

    def kkt_residual(self, y: Prices, gradient: Prices) -> float:
        """max_i |y_i - proj(y - D^-1 grad)_i| D_i, in shares: 0 exactly at the optimum."""
        moved = self.gradient_step(y, gradient)
        return float(np.max(np.abs(y.flat() - moved.flat()) / self.step.flat(), initial=0.0))

    # Exact block minimization --------------------------------------------------------------------

    def complementarity_gap(self, y: Prices, gradient: Prices) -> float:
        """g(y) - f(x*(y)) with the slacks the prices call for: sum_i y_i (b - A x*)_i over the rows, except
        soft rows whose price sits at the penalty and whose slack takes the violation (y_i r_i + penalty
        slack_i = 0 there). Small violations of the other rows are primal infeasibility, which the KKT
        residual measures, rather than slack bought at the penalty (which would turn a 1e-9 residual into
        a 1e-6 gap)."""
        pen = self.program.penalty
        at_penalty = np.concatenate([
            (y.supply <= -pen * (1 - 1e-12)) & (gradient.supply > 0),
            np.zeros(len(y.creator) + len(y.cap), dtype=np.bool_),
            (y.floor >= pen * (1 - 1e-12)) & (gradient.floor < 0),
            (y.budget >= pen * (1 - 1e-12)) & (gradient.budget < 0),
        ])
        return float(np.where(at_penalty, 0.0, y.flat() * gradient.flat()).sum())

    def global_solve(self, y: Prices) -> Prices:
        """One exact Gauss-Seidel pass over the global rows (all segments at once, then each budget), the
        local prices fixed: it takes the supply and budget residuals that L-BFGS-B leaves (it stalls
        once g stops decreasing in floating point, near 1e-10 shares) down to the Newton tolerance."""
        p, pen = self.program, self.program.penalty
        y = Prices(y.supply.copy(), y.creator, y.cap, y.floor, y.budget.copy())
        base = p.value - self.pair_price(y) + y.supply[p.pair_segment]
        y.supply = _block_root(base, None, p.demand, p.ridge, np.arange(p.n_pairs), p.pair_segment, p.n_segments,
                               upper_target=p.supply, lower_target=p.supply, low=np.full(p.n_segments, -pen),
                               high=np.full(p.n_segments, np.inf), start=y.supply, tol=self.row_tol)
        one_row = np.zeros(p.n_pairs, dtype=np.int64)
        for b, coef in enumerate(self.coef):
            base = p.value - self.pair_price(y) + y.budget[b] * coef
            y.budget[b] = _block_root(base, coef, p.demand, p.ridge, np.arange(p.n_pairs), one_row, 1,
                                      upper_target=self.bound[b:b + 1], lower_target=self.bound[b:b + 1],
                                      low=np.zeros(1), high=np.full(1, pen), start=y.budget[b:b + 1],
                                      tol=self.row_tol)[0]
        return y

    def local_solve(self, y: Prices) -> Prices:
        """Minimize g exactly over the local prices (creators, clusters) for y's supply and budget prices.

        Pairs of different clusters are disjoint, so this is one small problem per cluster, all solved
        at once: first each cluster's net price q = mu - phi, with its creators' totals clamped at their
        caps (what their own prices would do), then each creator's price for that q.
        """
        p, pen = self.program, self.program.penalty
        creator_cap = np.where(self.creator_on, p.creator_cap, np.inf)
        y = Prices(y.supply, y.creator.copy(), y.cap.copy(), y.floor.copy(), y.budget)
        base = p.value - self.pair_price(y) + y.creator[p.pair_creator] + (y.cap - y.floor)[p.pair_cluster]
        if len(self.cluster_pairs):
            q = _block_root(base, None, p.demand, p.ridge, self.cluster_pairs, p.pair_cluster, p.n_clusters,
                            upper_target=p.cluster_cap, lower_target=p.floor,
                            low=np.where(self.floor_on, -pen, 0.0), high=np.where(self.cap_on, np.inf, 0.0),
                            start=y.cap - y.floor, tol=self.row_tol,
                            clamp=(p.pair_creator, creator_cap, p.creator_cluster))
            y.cap, y.floor = np.maximum(q, 0.0), np.maximum(-q, 0.0)
        if len(self.creator_pairs):
            base = base - (y.cap - y.floor)[p.pair_cluster]
            y.creator = _block_root(base, None, p.demand, p.ridge, self.creator_pairs, p.pair_creator, p.n_creators,
                                    upper_target=p.creator_cap, lower_target=p.creator_cap,
                                    low=np.zeros(p.n_creators), high=np.where(self.creator_on, np.inf, 0.0),
                                    start=y.creator, tol=self.row_tol)
        return y


def _block_root(base: F64, coef: F64 | None, demand: F64, ridge: float, pairs: I64, group: I64, n_rows: int, *,
                upper_target: F64, lower_target: F64, low: F64, high: F64, start: F64, tol: float,
                clamp: tuple[I64, F64, I64] | None = None) -> F64:
    """Per row r, the minimizer over y_r in [low_r, high_r] of the 1-D dual piece

        sum_{p in r} max_x [(base_p - coef_p y) x - ridge/2 x^2]  +  target_r(y) y,

    target = upper_target where y > 0, lower_target where y < 0 (upper >= lower: a cap above a floor).
    Its derivative target(y) - E_r(y), E_r(y) = sum_p coef_p clip((base_p - coef_p y)/ridge, 0, demand_p),
    is nondecreasing, so the minimizer is 0 where target(0-) <= E_r(0) <= target(0+), else the root of
    E_r(y) = target on the side it lies on (to within `tol` in E), clipped to the box. E_r is piecewise
    linear: safeguarded Newton steps (bisection when Newton leaves the bracket) end in a few steps, all
    rows at once, each step over the pairs of the rows still searching.

    `clamp` = (sub-row of each pair, cap of each sub-row, row of each sub-row) nests capped sub-rows in
    the rows: E_r(y) = sum over sub-rows k of r of min(cap_k, sum_{p in k} x_p(y)). That is the cluster
    total when each creator's own price is re-optimized for the cluster price y (its cap binds or its
    price is 0), so one search settles a cluster together with its creators.
    """
    base, demand, group = base[pairs], demand[pairs], group[pairs]
    weight = np.ones(len(pairs)) if coef is None else coef[pairs]
    sub = clamp[0][pairs] if clamp is not None else group

    def exposure(y: F64) -> tuple[F64, F64]:
        """E_r(y) and the slope magnitude -dE_r/dy (sum of coef^2 / ridge over pairs strictly inside)."""
        raw = (base - weight * y[group]) / ridge
        x = np.clip(raw, 0.0, demand)
        free = ((raw > 0.0) & (raw < demand)) * (weight * weight / ridge)
        if clamp is None:
            return (np.bincount(group, weights=weight * x, minlength=n_rows).astype(np.float64, copy=False),
                    np.bincount(group, free, n_rows).astype(np.float64, copy=False))
        _, sub_cap, sub_row = clamp
        total = np.bincount(sub, weights=x, minlength=len(sub_cap))       # (K,) sub-row totals
        open_ = total < sub_cap                                            # sub-rows below their cap
        clamped = np.bincount(sub_row, weights=np.minimum(total, sub_cap), minlength=n_rows)
        slope = np.bincount(sub_row, weights=open_ * np.bincount(sub, free, len(sub_cap)), minlength=n_rows)
        return clamped.astype(np.float64, copy=False), slope.astype(np.float64, copy=False)

    at_zero, _ = exposure(np.zeros(n_rows))
    # Where the root lies: above 0 (target = upper), below 0 (target = lower), or at 0 (kink / bound).
    positive = (at_zero > upper_target + tol) & (high > 0)
    negative = (at_zero < lower_target - tol) & (low < 0) & ~positive
    target = np.where(positive, upper_target, lower_target)
    # Brackets, one for all rows: above max_p base_p / coef_p every x is 0, below min_p (base_p - ridge
    # d_p) / coef_p every x is at its demand.
    scale = np.where(weight > 0, weight, np.inf)
    top = float(np.max(base / scale, initial=0.0))
    bottom = float(np.min((base - ridge * demand) / scale, initial=0.0))
    lo = np.where(positive, 0.0, np.maximum(low, min(bottom, 0.0)))
    hi = np.where(positive, np.minimum(high, max(top, 0.0)), 0.0)
    # Roots beyond the box: the row ends at the box edge (a slack at its penalty price).
    at_lo, _ = exposure(lo)
    at_hi, _ = exposure(hi)
    short = negative & (at_lo < target - tol)
    over = positive & (at_hi > target + tol)
    searching = (positive | negative) & ~short & ~over
    y = np.clip(np.where(searching, start, 0.0), lo, hi)
    compressed_at = len(pairs)
    for _ in range(NEWTON_STEPS):
        if not searching.any():
            break
        kept = searching[group]
        if kept.sum() < 0.5 * compressed_at:
            # Drop the pairs of settled rows (clusters nest their creators, so sub-rows stay whole).
            base, demand, group, weight, sub = base[kept], demand[kept], group[kept], weight[kept], sub[kept]
            compressed_at = len(base)
        value, slope = exposure(y)
        excess = value - target                       # > 0: y too low (E decreases in y)
        lo = np.where(searching & (excess > 0), y, lo)
        hi = np.where(searching & (excess <= 0), y, hi)
        searching &= (np.abs(excess) > tol) & (hi - lo > 1e-15 * np.maximum(1.0, np.abs(y)))
        newton = y + excess / np.where(slope > 0, slope, np.nan)
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        y = np.where(searching, np.where(inside, newton, 0.5 * (lo + hi)), y)
    # Rows without a root away from 0 stay at 0 (the kink: neither cap nor floor binds).
    y = np.where(short, low, np.where(over, high, y))
    return np.clip(np.where(positive | negative, y, 0.0), low, high)


def repair(program: ExposureProgram, x: F64, *, rounds: int = 2) -> F64:
    """A plan that honours every hard row exactly, within a rounding error of x.

    First x is scaled down where it overshoots a creator cap, then a cluster cap, then a segment's
    supply (scaling down only lowers totals, so each step keeps the rows fixed before it). A segment left
    short is then topped up from pairs with room under their demand and their creator's and cluster's
    caps, in proportion to that room: the supply slack costs the penalty per unit, so an unrepaired
    shortfall of 1e-8 would cost 3e-5 of objective at the default penalty.
    """
    p = program
    creator = np.bincount(p.pair_creator, weights=x, minlength=p.n_creators)
    x = x * np.minimum(1.0, p.creator_cap / np.maximum(creator, 1e-300))[p.pair_creator]
    cluster = np.bincount(p.pair_cluster, weights=x, minlength=p.n_clusters)
    x = x * np.minimum(1.0, p.cluster_cap / np.maximum(cluster, 1e-300))[p.pair_cluster]
    segment = np.bincount(p.pair_segment, weights=x, minlength=p.n_segments)
    x = x * np.minimum(1.0, p.supply / np.maximum(segment, 1e-300))[p.pair_segment]
    for _ in range(rounds):
        short = np.maximum(0.0, p.supply - np.bincount(p.pair_segment, weights=x, minlength=p.n_segments))  # (S,)
        if not short.any():
            break
        creator_room = np.maximum(0.0, p.creator_cap - np.bincount(p.pair_creator, weights=x, minlength=p.n_creators))
        cluster_room = np.maximum(0.0, p.cluster_cap - np.bincount(p.pair_cluster, weights=x, minlength=p.n_clusters))
        room = (p.demand - x) * (creator_room[p.pair_creator] > 0) * (cluster_room[p.pair_cluster] > 0)  # (P,)
        total_room = np.bincount(p.pair_segment, weights=room, minlength=p.n_segments)
        fill = room * np.minimum(1.0, short / np.maximum(total_room, 1e-300))[p.pair_segment]
        by_creator = np.bincount(p.pair_creator, weights=fill, minlength=p.n_creators)
        fill = fill * np.minimum(1.0, creator_room / np.maximum(by_creator, 1e-300))[p.pair_creator]
        by_cluster = np.bincount(p.pair_cluster, weights=fill, minlength=p.n_clusters)
        fill = fill * np.minimum(1.0, cluster_room / np.maximum(by_cluster, 1e-300))[p.pair_cluster]
        x = np.minimum(x + fill, p.demand)
    return x


def solve_dual_ascent(
    program: ExposureProgram,
    *,
    kkt_tol: float = KKT_TOL,
    gap_tol: float = GAP_TOL,
    max_evaluations: int = MAX_EVALUATIONS,
    progress: bool = False,
) -> Solution:
    """Minimize the dual over the global prices with the local ones exactly minimized (module docstring).

    Returns the repaired (feasible) plan and the prices; status "optimal" when the stopping rule was met,
    "inaccurate" when `max_evaluations` ran out first (stats say how far it got).
    """
    started = time.perf_counter()
    p = program
    # In shares of all impressions: kkt_tol of an average pair's share, and never looser than at 1e4 pairs
    # (on a handful of pairs 1/P is large, and a soft row missed by 1e-7 costs 1e-4 at the penalty).
    kkt_limit = kkt_tol / max(KKT_MIN_PAIRS, p.n_pairs)
    dual = DualFunction(p, row_tol=LOCAL_TOL * kkt_limit)
    n_segments, n_budgets = p.n_segments, len(dual.names)
    lower = np.concatenate([np.full(n_segments, -p.penalty), np.zeros(n_budgets)])
    upper = np.concatenate([np.full(n_segments, np.inf), np.full(n_budgets, p.penalty)])

    @dataclass
    class State:
        y: Prices
        point: F64
        value: float = np.inf
        gradient: Prices | None = None
        x: F64 | None = None
        evaluations: int = 0
        kkt: float = np.inf
        gap: float = np.inf

    state = State(y=dual.project(dual.zero()), point=np.zeros(n_segments + n_budgets))
    bar = tqdm(total=max_evaluations, disable=not progress, desc="dual ascent", unit="eval", leave=False)

    def h(point: F64) -> tuple[float, F64]:
        """The dual minimized over the local prices, and its gradient (the supply and budget residuals)."""
        y = dual.local_solve(Prices(point[:n_segments].copy(), state.y.creator, state.y.cap, state.y.floor,
                                    point[n_segments:].copy()))
        value, gradient, x = dual.value_and_gradient(y)
        state.y, state.point, state.value, state.gradient, state.x = y, point.copy(), value, gradient, x
        state.evaluations += 1
        bar.update(1)
        return value, np.concatenate([gradient.supply, gradient.budget])

    def converged() -> bool:
        assert state.gradient is not None
        state.kkt = dual.kkt_residual(state.y, state.gradient) / kkt_limit * kkt_tol
        state.gap = abs(dual.complementarity_gap(state.y, state.gradient)) / max(1.0, abs(state.value))
        bar.set_postfix(gap=f"{state.gap:.1e}", kkt=f"{state.kkt:.1e}")
        return state.kkt <= kkt_tol and state.gap <= gap_tol

    def callback(intermediate_result: OptimizeResult) -> None:
        if not np.array_equal(intermediate_result.x, state.point):
            h(np.asarray(intermediate_result.x, dtype=np.float64))
        if converged():
            raise StopIteration

    try:
        point = state.point
        # L-BFGS-B stops on its own when g no longer decreases in floating point (the gradient can then
        # still be above our tolerance); restart it once or twice from there, while evaluations remain.
        for _ in range(RESTARTS + 1):
            if state.evaluations >= max_evaluations:
                break
            minimize(h, point, jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper, strict=True)),
                     callback=callback, options={"maxfun": max_evaluations - state.evaluations,
                                                 "maxiter": max_evaluations, "ftol": 1e-15, "gtol": 0.0,
                                                 "maxcor": 20})
            if state.gradient is None:
                h(point)
            if converged() or np.array_equal(point, state.point):
                break
            point = state.point
        # Polish: exact passes over the global rows, each followed by the local rows, kept while they
        # lower the larger of the two stopping ratios.
        def score() -> float:
            converged()
            return max(state.kkt / kkt_tol, state.gap / gap_tol)

        current = score()
        for _ in range(POLISH_PASSES):
            before = (state.value, state.y, state.gradient, state.x, state.kkt, state.gap)
            y = dual.global_solve(state.y)
            h(np.concatenate([y.supply, y.budget]))
            polished = score()
            if polished >= current:
                (state.value, state.y, state.gradient, state.x, state.kkt, state.gap) = before
                break
            current = polished
    finally:
        bar.close()

    assert state.x is not None
    x = repair(p, state.x)
    objective, supply_slack, floor_slack, budget_slack = objective_value(p, x)
    # Certified: the repaired plan is feasible, so optimum lies in [objective, dual value].
    certified_gap = (state.value - objective) / max(1.0, abs(objective))
    y = state.y
    return Solution(
        x=x, supply_dual=y.supply, creator_dual=y.creator, cluster_cap_dual=y.cap, floor_dual=y.floor,
        budget_dual={name: float(rho) for name, rho in zip(dual.names, y.budget, strict=True)},
        supply_slack=supply_slack, floor_slack=floor_slack, budget_slack=budget_slack,
        objective=objective, status="optimal" if state.kkt <= kkt_tol and state.gap <= gap_tol else "inaccurate",
        solver="dual_ascent", seconds=time.perf_counter() - started,
        stats={"evaluations": state.evaluations, "dual_value": state.value, "relative_gap": state.gap,
               "certified_gap": certified_gap, "kkt_residual": state.kkt, "ridge": p.ridge},
    )
