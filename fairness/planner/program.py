"""The amortized exposure program of the offline planner, built once from inputs + policy, solved by cvxpy.

Design note /work/shared/design/allocator.md, "Offline planner (amortized over horizon H)", in shares of
the horizon's impressions (T = 1). One decision x_p >= 0 per (creator, segment) pair p; E_a is creator
a's total, E_g cluster g's total:

    maximize   sum_p value_p x_p - (ridge/2) ||x||^2 - penalty * (sum of slacks)
    subject to sum_{p in s} x_p + short_s  = supply_s         "supply"        (dual nu_s, free)
               0 <= x_p <= demand_p                            (variable bounds)
               E_a <= U_a (1: creators have no cap of their own)  "creator_cap"   (lambda_a >= 0)
               E_g <= U_g = min(cluster_cap, kappa M_g^beta / sum_h M_h^beta)  "cluster_cap"   (mu_g >= 0)
               E_g + under_g >= L_g                            "cluster_floor" (phi_g >= 0)
               sum_p risk_p x_p <= R + over_risk               "budget_risk"   (rho >= 0)
               sum_p complaint_p x_p <= C + over_complaint     "budget_complaint"
               short, under, over >= 0

Caps and floors are per CLUSTER (design note, "Why clusters, not accounts"). The anti-Matthew cap is a
concave share of the cluster's merit M_g, the MAX merit of its creators, so an operator gains no cap by
splitting into more accounts (per-account caps would: 2 (m/2)^beta > m^beta). The originals part is
originals_floor x M_g^beta / sum M^beta with M_g the MAX merit of the cluster's eligible originals
(duplicates do not add), the newcomer part min(newcomer_floor, newcomer_share / #clusters made only of
newcomers); their sum is clipped to FLOOR_HEADROOM x what the cluster can hold (its cluster cap, its
creators' caps and demand, the supply; and at least FLOOR_MIN_GAP / P below it), and the clip is recorded
(floor_requested vs floor).
Rows that cannot bind (a cap above all the demand under it) are left out of the solve; their price is 0.
The demand bound is passed as variable bounds (HiGHS column bounds), not as a named row: its multiplier
is not a price anybody serves (the KKT tests recover it from the reduced values).

Slacks make every instance feasible; each unit of slack costs `penalty` (PENALTY_FACTOR x the value
scale), so a floor, supply or budget gives way only where nothing else can hold it, or where its exact
price would exceed the penalty (a budget whose marginal value is that high is treated as infeasible).

Dual sign conventions (cvxpy, Maximize; checked by finite differences and KKT in
tests/fairness/planner/test_program.py):
  * "a <= b": dual >= 0 and equals d(optimum)/db: the value of one more unit of room (a price);
  * "a >= b": dual >= 0 and equals -d(optimum)/db: the cost of raising the floor;
  * "expr == b": dual equals d(optimum)/db (free sign): the value of one more unit of supply.
Stationarity for every pair p, with the prices below, reads
    value_p - ridge x_p - nu_s(p) - lambda_a(p) - (mu - phi)_g(p) - rho . (risk_p, complaint_p)
    = (<= 0 if x_p = 0, >= 0 if x_p = demand_p, 0 in between),
so online the creator price lambda_a and the cluster price mu_g - phi_g are SUBTRACTED from utility
(a negative cluster price, a binding floor, is a boost), and each slack's dual is capped by the penalty
(nu_s >= -penalty, phi_g <= penalty, rho <= penalty), with equality where the slack is used.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import cvxpy as cp
import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from fairness.planner.inputs import F64, I64, PlanInputs
from fairness.policy import BudgetsSection, PlannerSection

# Slack penalty per unit, as a multiple of max(1, max |value|): using one unit of slack must cost more
# than any utility it could buy, so slacks are used only where a constraint cannot be met. The duals of
# soft rows are then bounded by the penalty (a relaxed row's price equals it).
PENALTY_FACTOR = 1_000.0
# A floor that a cap (or the demand) wins over is set to this fraction of what the cluster can hold, not
# to all of it: a floor equal to the capacity can only be met with every pair of the cluster at its
# bound, and its price is then any number in [0, penalty] (measured: 496 of 2,612 floors at 1e4 pairs,
# where Clarabel returned ~3,150 and dual ascent ~0). Just below the capacity the price is unique: the
# boost that brings the cluster to 99% of what it can hold.
FLOOR_HEADROOM = 0.99
# ... and at least FLOOR_MIN_GAP below it in the solvers' units (x' = P x, see solve_cvxpy), ten times their
# feasibility tolerances: a cluster that can hold only 4e-7 of the impressions kept a floor 4e-9 below that,
# inside HiGHS' tolerance, which then priced the slack floor at the penalty (1,000 utility units). A floor
# that small is 0.
FLOOR_MIN_GAP = 1e-6
BUDGETS = ("risk", "complaint")


def concave_shares(weights: F64) -> F64:
    """w / sum(w), uniform when every weight is 0 (all-zero merit: nobody is preferred)."""
    total = float(weights.sum())
    if total <= 0.0:
        return np.full(len(weights), 1.0 / max(len(weights), 1))
    return weights / total


def incidence(rows: I64, n_rows: int) -> sp.csr_matrix:
    """(n_rows, len(rows)) 0/1 matrix with a 1 at (rows[j], j): sums a per-pair vector into groups."""
    n = len(rows)
    return sp.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(n_rows, n))


@dataclass(frozen=True)
class ExposureProgram:
    """The program's data, vectorized: per pair (P,), per segment (S,), per creator (A,), per cluster (G,).

    Built once by `build_program`; the cvxpy and dual-ascent solvers read the same object, so they solve
    exactly the same problem.
    """

    value: F64                  # (P,)
    demand: F64                 # (P,) upper bound of x
    pair_segment: I64           # (P,)
    pair_creator: I64           # (P,)
    pair_cluster: I64           # (P,) index into cluster_ids
    supply: F64                 # (S,)
    creator_cluster: I64        # (A,) index into cluster_ids
    creator_cap: F64            # (A,) U_a
    cluster_ids: I64            # (G,) sorted operator-cluster ids
    cluster_cap: F64            # (G,)
    floor: F64                  # (G,) L_g after clipping (0: no floor)
    floor_requested: F64        # (G,) L_orig + L_new before clipping
    floor_capacity: F64         # (G,) what the cluster can hold under its caps, demand and the supply
    budget_coef: dict[str, F64]  # name -> (P,) risk or complaint per impression, only budgets that are set
    budget_bound: dict[str, float]
    ridge: float
    penalty: float
    # Rows that can bind (the others have dual 0 and are left out of the solve): indices into A, G.
    active_creators: I64 = field(repr=False)
    active_clusters: I64 = field(repr=False)
    floored_clusters: I64 = field(repr=False)

    @property
    def n_pairs(self) -> int:
        return len(self.value)

    @property
    def n_segments(self) -> int:
        return len(self.supply)

    @property
    def n_creators(self) -> int:
        return len(self.creator_cap)

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_ids)

    def with_ridge(self, ridge: float) -> ExposureProgram:
        """The same program with another ridge (dual ascent needs ridge > 0 to solve an LP approximately)."""
        return replace(self, ridge=ridge)


def build_program(inputs: PlanInputs, planner: PlannerSection, budgets: BudgetsSection) -> ExposureProgram:
    """Caps, floors and budgets of the design note from validated inputs and the policy (vectorized)."""
    inputs.validate()
    n_segments, n_creators = len(inputs.segments), inputs.n_creators
    cluster_ids, creator_cluster = np.unique(inputs.cluster, return_inverse=True)
    creator_cluster = creator_cluster.astype(np.int64)
    n_clusters = len(cluster_ids)
    pair_cluster = creator_cluster[inputs.pair_creator]  # (P,)

    # Cluster merit is the MAX over the cluster's creators, not the sum: duplicated or split accounts of
    # one operator must not add merit (design note, "Why clusters, not accounts").
    cluster_merit = np.zeros(n_clusters)
    np.maximum.at(cluster_merit, creator_cluster, inputs.merit)
    # Anti-Matthew cap, per CLUSTER: a concave (beta < 1) share of cluster merit with kappa headroom (all-zero
    # merit: uniform), never above the policy's cluster cap. Caps per account would reward splitting: an
    # account of merit m split in two has 2 (m/2)^beta > m^beta of cap. Creators get no cap of their own
    # (their rows never bind; the creators table shows their cluster's cap).
    cluster_cap = np.minimum(planner.cluster_cap, planner.kappa * concave_shares(cluster_merit ** planner.beta))
    creator_cap = np.ones(n_creators)  # (A,)

    # What each creator / cluster can usefully take: demand, and no more than a segment's supply.
    usable = np.minimum(inputs.demand, inputs.supply[inputs.pair_segment])  # (P,)
    creator_demand = np.bincount(inputs.pair_creator, weights=usable, minlength=n_creators)  # (A,)
    cluster_segment_demand = np.bincount(pair_cluster * n_segments + inputs.pair_segment, weights=inputs.demand,
                                         minlength=n_clusters * n_segments).reshape(n_clusters, n_segments)
    by_demand = np.minimum(cluster_segment_demand, inputs.supply[None, :]).sum(axis=1)  # (G,)

    # Originals floor: clusters with >= 1 eligible original; their merit is the MAX over those creators,
    # shared concavely like the caps.
    has_original = np.bincount(creator_cluster, weights=inputs.original, minlength=n_clusters) > 0  # (G,)
    original_merit = np.zeros(n_clusters)
    np.maximum.at(original_merit, creator_cluster[inputs.original], inputs.merit[inputs.original])
    floor_orig = np.zeros(n_clusters)
    if has_original.any():
        shares = concave_shares(original_merit[has_original] ** planner.beta)
        floor_orig[has_original] = planner.originals_floor * shares
    # Newcomer floor: clusters made only of newcomers share newcomer_share, at most newcomer_floor each. It
    # is an exploration quota, so it also lifts the cluster's cap: a newcomer's merit bound is often 0.
    veterans = np.bincount(creator_cluster, weights=~inputs.newcomer, minlength=n_clusters)  # (G,)
    newcomer_cluster = veterans == 0
    floor_new = np.zeros(n_clusters)
    if newcomer_cluster.any():
        floor_new[newcomer_cluster] = min(planner.newcomer_floor, planner.newcomer_share / newcomer_cluster.sum())
    cluster_cap = np.maximum(cluster_cap, floor_new)  # newcomer_floor <= cluster_cap (policy validation)
    capacity = np.minimum(by_demand, cluster_cap)  # (G,)
    floor_requested = floor_orig + floor_new
    headroom = np.maximum((1.0 - FLOOR_HEADROOM) * capacity, FLOOR_MIN_GAP / max(1, inputs.n_pairs))
    floor = np.clip(np.minimum(floor_requested, capacity - headroom), 0.0, None)

    budget_coef: dict[str, F64] = {}
    budget_bound: dict[str, float] = {}
    for name in BUDGETS:
        bound = getattr(budgets, name)
        if bound is not None:
            budget_coef[name] = getattr(inputs, name)
            budget_bound[name] = float(bound)

    value_scale = float(np.abs(inputs.value).max()) if inputs.n_pairs else 0.0
    return ExposureProgram(
        value=inputs.value, demand=inputs.demand, pair_segment=inputs.pair_segment, pair_creator=inputs.pair_creator,
        pair_cluster=pair_cluster, supply=inputs.supply, creator_cluster=creator_cluster, creator_cap=creator_cap,
        cluster_ids=cluster_ids.astype(np.int64), cluster_cap=cluster_cap, floor=floor,
        floor_requested=floor_requested, floor_capacity=capacity, budget_coef=budget_coef,
        # planner.ridge is per average pair: the ridge's pull on a share x_p ~ 1/P is gamma x_p, so gamma = ridge P
        # keeps its strength the same at every size
        budget_bound=budget_bound, ridge=float(planner.ridge) * max(1, inputs.n_pairs),
        penalty=PENALTY_FACTOR * max(1.0, value_scale),
        # A cap row can bind only where the demand could exceed it; the others keep dual 0.
        active_creators=np.flatnonzero(creator_cap < creator_demand).astype(np.int64),
        active_clusters=np.flatnonzero(cluster_cap < by_demand).astype(np.int64),
        floored_clusters=np.flatnonzero(floor > 0).astype(np.int64),
    )


@dataclass(frozen=True)
class Solution:
    """Primal and dual solution of an `ExposureProgram`, in the sign conventions of the module docstring."""

    x: F64                      # (P,)
    supply_dual: F64            # (S,) nu
    creator_dual: F64           # (A,) lambda >= 0 (0 for rows left out)
    cluster_cap_dual: F64       # (G,) mu >= 0
    floor_dual: F64             # (G,) phi >= 0 (0 where no floor)
    budget_dual: dict[str, float]
    supply_slack: F64           # (S,) shortfall of each segment's supply
    floor_slack: F64            # (G,) how far each floor is missed
    budget_slack: dict[str, float]
    objective: float            # the program's objective, penalties included
    status: str                 # "optimal" or "inaccurate"
    solver: str
    seconds: float
    stats: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def cluster_price(self) -> F64:
        """mu_g - phi_g: the cap's price minus the floor's (negative where a floor binds: a boost)."""
        return self.cluster_cap_dual - self.floor_dual

    def pair_price(self, program: ExposureProgram) -> F64:
        """(P,) everything subtracted from a pair's value at the optimum, supply price included."""
        price = (self.supply_dual[program.pair_segment] + self.creator_dual[program.pair_creator]
                 + self.cluster_price[program.pair_cluster])
        for name, coef in program.budget_coef.items():
            price = price + self.budget_dual[name] * coef
        return price


def objective_value(program: ExposureProgram, x: F64) -> tuple[float, F64, F64, dict[str, float]]:
    """The program's objective at x with the smallest slacks x needs; returns (objective, supply slack,
    floor slack, budget slack). Caps are not slack rows: their violation is reported separately."""
    supply_slack = np.maximum(0.0, program.supply - np.bincount(program.pair_segment, weights=x,
                                                                 minlength=program.n_segments))
    cluster_total = np.bincount(program.pair_cluster, weights=x, minlength=program.n_clusters)
    floor_slack = np.maximum(0.0, program.floor - cluster_total)
    budget_slack = {name: max(0.0, float(coef @ x) - program.budget_bound[name])
                    for name, coef in program.budget_coef.items()}
    slack = float(supply_slack.sum() + floor_slack.sum() + sum(budget_slack.values()))
    objective = float(program.value @ x) - 0.5 * program.ridge * float(x @ x) - program.penalty * slack
    return objective, supply_slack, floor_slack, budget_slack


def violations(program: ExposureProgram, x: F64) -> dict[str, float]:
    """Largest violation of each hard row at x (shares): supply overshoot, bounds, creator and cluster caps."""
    segment_total = np.bincount(program.pair_segment, weights=x, minlength=program.n_segments)
    creator_total = np.bincount(program.pair_creator, weights=x, minlength=program.n_creators)
    cluster_total = np.bincount(program.pair_cluster, weights=x, minlength=program.n_clusters)
    worst = {
        "supply": float(np.max(segment_total - program.supply, initial=0.0)),
        "bounds": float(max(np.max(-x, initial=0.0), np.max(x - program.demand, initial=0.0))),
        "creator_cap": float(np.max(creator_total - program.creator_cap, initial=0.0)),
        "cluster_cap": float(np.max(cluster_total - program.cluster_cap, initial=0.0)),
    }
    return {name: max(0.0, value) for name, value in worst.items()}


def solve_cvxpy(program: ExposureProgram, solver: str, *, options: Mapping[str, float | int | bool] | None = None,
                ) -> Solution:
    """Solve with cvxpy and HiGHS ('highs', LP or QP) or Clarabel ('clarabel'); read duals by row name.

    x is one Variable of length P with bounds [0, demand]; the incidence matrices (pair -> segment,
    creator, cluster) are scipy.sparse constants, so the formulation stays O(P) (the design note's warning:
    `cp.multiply(Parameter((U, N)), x)` exploded to 74.5 GiB at 1e5 variables).
    """
    started = time.perf_counter()
    p = program
    if p.n_pairs == 0:
        return _nothing_to_place(p, solver, started)
    # Solve in units of 1/scale of the impressions (x' = scale x), with the objective multiplied by scale:
    # the duals are unchanged (d(scale f)/d(scale b) = df/db) while x', the caps and the demand are O(1), so
    # the solvers' absolute tolerances (1e-7..1e-8) are small against every quantity, not only the totals.
    scale = float(max(1, p.n_pairs))
    x = cp.Variable(p.n_pairs, name="x", bounds=[np.zeros(p.n_pairs), scale * p.demand])
    segment_matrix = incidence(p.pair_segment, p.n_segments)                    # (S, P)
    short = cp.Variable(p.n_segments, name="supply_slack", nonneg=True)
    rows: dict[str, cp.Constraint] = {"supply": segment_matrix @ x + short == scale * p.supply}
    penalized = [cp.sum(short)]
    if len(p.active_creators):
        creator_matrix = incidence(p.pair_creator, p.n_creators)[p.active_creators]  # (A', P)
        rows["creator_cap"] = creator_matrix @ x <= scale * p.creator_cap[p.active_creators]
    if len(p.active_clusters) or len(p.floored_clusters):
        cluster_matrix = incidence(p.pair_cluster, p.n_clusters)                 # (G, P)
        if len(p.active_clusters):
            rows["cluster_cap"] = cluster_matrix[p.active_clusters] @ x <= scale * p.cluster_cap[p.active_clusters]
        if len(p.floored_clusters):
            under = cp.Variable(len(p.floored_clusters), name="floor_slack", nonneg=True)
            rows["cluster_floor"] = (cluster_matrix[p.floored_clusters] @ x + under
                                     >= scale * p.floor[p.floored_clusters])
            penalized.append(cp.sum(under))
    over: dict[str, cp.Variable] = {}
    for name, coef in p.budget_coef.items():
        over[name] = cp.Variable(name=f"budget_{name}_slack", nonneg=True)
        rows[f"budget_{name}"] = coef @ x <= scale * p.budget_bound[name] + over[name]
        penalized.append(over[name])
    objective = p.value @ x - p.penalty * cp.sum(cp.hstack(penalized))
    if p.ridge > 0:
        objective = objective - (0.5 * p.ridge / scale) * cp.sum_squares(x)
    problem = cp.Problem(cp.Maximize(objective), list(rows.values()))

    solver_options: dict[str, float | int | bool] = dict(options or {})
    if solver == "highs":
        name = cp.HIGHS
        solver_options.setdefault("output_flag", False)
    elif solver == "clarabel":
        name = cp.CLARABEL
    else:
        raise ValueError(f"solve_cvxpy: unknown solver {solver!r}; expected 'highs' or 'clarabel'")
    problem.solve(solver=name, **solver_options)
    seconds = time.perf_counter() - started
    if problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        raise SolverFailure(f"{solver} returned status {problem.status!r} after {seconds:.2f} s")

    def dual(row: str, size: int, where: I64) -> F64:
        out = np.zeros(size)
        if row in rows:
            out[where] = np.asarray(rows[row].dual_value, dtype=np.float64).reshape(-1)
        return out

    # Clip the solver's tolerance-level noise back into the bounds; slacks follow from x exactly.
    x_value = np.clip(np.asarray(x.value, dtype=np.float64) / scale, 0.0, p.demand)
    objective_at_x, supply_slack, floor_slack, budget_slack = objective_value(p, x_value)
    stats = problem.solver_stats
    return Solution(
        x=x_value,
        supply_dual=np.asarray(rows["supply"].dual_value, dtype=np.float64).reshape(-1),
        creator_dual=np.maximum(0.0, dual("creator_cap", p.n_creators, p.active_creators)),
        cluster_cap_dual=np.maximum(0.0, dual("cluster_cap", p.n_clusters, p.active_clusters)),
        floor_dual=np.maximum(0.0, dual("cluster_floor", p.n_clusters, p.floored_clusters)),
        budget_dual={name: max(0.0, float(np.asarray(rows[f"budget_{name}"].dual_value).reshape(-1)[0]))
                     for name in p.budget_coef},
        supply_slack=supply_slack, floor_slack=floor_slack, budget_slack=budget_slack,
        objective=objective_at_x,
        status="optimal" if problem.status == cp.OPTIMAL else "inaccurate",
        solver=solver, seconds=seconds,
        stats={"solver_seconds": float(stats.solve_time or 0.0),
               "iterations": int(stats.num_iters or 0),
               "compile_seconds": float(problem.compilation_time or 0.0)},
    )


def _nothing_to_place(program: ExposureProgram, solver: str, started: float) -> Solution:
    """No pairs (cvxpy cannot build a length-0 variable): every segment's supply is short, at the penalty."""
    p = program
    objective, supply_slack, floor_slack, budget_slack = objective_value(p, np.zeros(0))
    return Solution(
        x=np.zeros(0), supply_dual=np.where(p.supply > 0, -p.penalty, 0.0), creator_dual=np.zeros(p.n_creators),
        cluster_cap_dual=np.zeros(p.n_clusters), floor_dual=np.where(p.floor > 0, p.penalty, 0.0),
        budget_dual=dict.fromkeys(p.budget_coef, 0.0), supply_slack=supply_slack, floor_slack=floor_slack,
        budget_slack=budget_slack, objective=objective, status="optimal", solver=solver,
        seconds=time.perf_counter() - started)


class SolverFailure(RuntimeError):
    """A solver did not return an optimal (or optimal-inaccurate) solution."""
