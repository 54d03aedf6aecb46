"""Reference solver: the per-request allocation problem in cvxpy, built once per size bucket (DPP).

The fast solver (fast.py) is what serving uses; this one exists to check it and as the readable
statement of the problem. The program is parametrized (every number is a `cp.Parameter`) and compiled
once per size bucket, candidates padded up to the bucket with zero caps, then re-solved with new
parameter values and warm-started (style point 10).

Group sums without a per-request membership matrix: candidates are sorted by (cluster, creator) so
every group is a contiguous run, and a running sum that resets at group starts,
    y_i = w_i + keep_i * y_{i-1}    (keep_i = 0 at the first candidate of a group, else 1),
reaches the group total at the group's last candidate. Since w >= 0 the running sum is largest
there, so `y_i <= C_group(i)` for all i is the group cap. Each product `keep * y` is
parameter x variable, which DPP allows, and the compiled size stays linear in the bucket.
The multiplier of a group cap is the sum of the duals of its rows (read by name).
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from fairness.allocator.problem import F64, I64, Allocation, AllocationProblem, sum_by
from fairness.allocator.relax import make_feasible

MIN_BUCKET = 16


def bucket_size(n: int) -> int:
    """Candidates are padded to the next power of two (at least MIN_BUCKET): few compiled programs."""
    return max(MIN_BUCKET, 1 << max(0, int(n - 1).bit_length()))


@dataclass(frozen=True)
class _OneSolution:
    weights: F64
    cap_price: F64
    creators: I64
    creator_price: F64
    clusters: I64
    cluster_price: F64
    sum_price: float
    floor_price: float


@dataclass
class _Program:
    problem: cp.Problem
    weights: cp.Variable
    params: dict[str, cp.Parameter]
    constraints: dict[str, cp.Constraint]


def _build(size: int) -> _Program:
    w = cp.Variable(size, name="w")
    creator_sum = cp.Variable(size, name="creator_running_sum")
    cluster_sum = cp.Variable(size, name="cluster_running_sum")
    params = {
        "value": cp.Parameter(size, name="value"),
        "half_tau": cp.Parameter(nonneg=True, name="half_tau"),
        "cap": cp.Parameter(size, nonneg=True, name="cap"),
        "creator_keep": cp.Parameter(size - 1, nonneg=True, name="creator_keep"),
        "cluster_keep": cp.Parameter(size - 1, nonneg=True, name="cluster_keep"),
        "creator_cap": cp.Parameter(size, nonneg=True, name="creator_cap"),
        "cluster_cap": cp.Parameter(size, nonneg=True, name="cluster_cap"),
        "original": cp.Parameter(size, nonneg=True, name="original"),
        "floor": cp.Parameter(nonneg=True, name="floor"),
    }
    p = params
    constraints: dict[str, cp.Constraint] = {
        "sum": cp.sum(w) == 1,
        "nonneg": w >= 0,
        "item_cap": w <= p["cap"],
        "creator_first": creator_sum[0] == w[0],
        "creator_running": creator_sum[1:] == w[1:] + cp.multiply(p["creator_keep"], creator_sum[:-1]),
        "creator_cap": creator_sum <= p["creator_cap"],
        "cluster_first": cluster_sum[0] == w[0],
        "cluster_running": cluster_sum[1:] == w[1:] + cp.multiply(p["cluster_keep"], cluster_sum[:-1]),
        "cluster_cap": cluster_sum <= p["cluster_cap"],
        "originals_floor": p["original"] @ w >= p["floor"],
    }
    objective = cp.Maximize(p["value"] @ w - p["half_tau"] * cp.sum_squares(w))
    return _Program(cp.Problem(objective, list(constraints.values())), w, params, constraints)


class ReferenceAllocator:
    """cvxpy reference solver; `solve(problem)` solves each request, one compiled program per bucket."""

    def __init__(self, *, solver: str = cp.CLARABEL, tolerance: float = 1e-12) -> None:
        self.solver = solver
        self.tolerance = tolerance
        self._programs: dict[int, _Program] = {}

    def program(self, size: int) -> _Program:
        bucket = bucket_size(size)
        if bucket not in self._programs:
            self._programs[bucket] = _build(bucket)
        return self._programs[bucket]

    def solve(self, problem: AllocationProblem) -> Allocation:
        p, relaxations = make_feasible(problem)
        n = len(p.value)
        weights = np.zeros(n)
        cap_price = np.zeros(n)
        creator_price = np.zeros(len(p.creator_cap))
        cluster_price = np.zeros(len(p.cluster_cap))
        sum_price = np.zeros(p.n_requests)
        floor_price = np.zeros(p.n_requests)
        request = p.request
        for r in range(p.n_requests):
            rows = np.flatnonzero(request == r)
            out = self._solve_one(p, r, rows)
            weights[rows], cap_price[rows] = out.weights, out.cap_price
            creator_price[out.creators] = out.creator_price
            cluster_price[out.clusters] = out.cluster_price
            sum_price[r], floor_price[r] = out.sum_price, out.floor_price
        return Allocation(weights=weights, sum_price=sum_price, floor_price=floor_price, creator_price=creator_price,
                          cluster_price=cluster_price, cap_price=cap_price, relaxations=relaxations, problem=p)

    def _solve_one(self, p: AllocationProblem, r: int, rows: I64) -> _OneSolution:
        creator = p.creator[rows]
        cluster = p.creator_cluster[creator]
        order = np.lexsort((creator, cluster))  # contiguous clusters, creators contiguous inside them
        creator, cluster = creator[order], cluster[order]
        n = len(rows)
        program = self.program(n)
        size = program.weights.shape[0]
        pad = size - n

        def padded(values: F64, fill: float) -> F64:
            return np.concatenate((values, np.full(pad, fill)))

        new_creator = np.concatenate(([True], creator[1:] != creator[:-1]))
        new_cluster = np.concatenate(([True], cluster[1:] != cluster[:-1]))
        prm = program.params
        prm["value"].value = padded(p.value[rows][order], 0.0)
        prm["half_tau"].value = 0.5 * float(p.tau[r])
        prm["cap"].value = padded(p.cap[rows][order], 0.0)
        prm["creator_keep"].value = padded((~new_creator).astype(float), 0.0)[1:]
        prm["cluster_keep"].value = padded((~new_cluster).astype(float), 0.0)[1:]
        prm["creator_cap"].value = padded(p.creator_cap[creator], 1.0)
        prm["cluster_cap"].value = padded(p.cluster_cap[cluster], 1.0)
        prm["original"].value = padded(p.original[rows][order].astype(float), 0.0)
        prm["floor"].value = float(p.floor[r])
        tol = self.tolerance
        options = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol} if self.solver == cp.CLARABEL else {}
        program.problem.solve(solver=self.solver, warm_start=True, enforce_dpp=True, **options)
        if program.problem.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"reference solve of request {r} ended with status {program.problem.status}")
        c = program.constraints
        inverse = np.empty(n, np.int64)
        inverse[order] = np.arange(n)
        weights = np.asarray(program.weights.value)[:n][inverse]
        cap_price = np.asarray(c["item_cap"].dual_value)[:n][inverse]
        # a group's multiplier is the sum of its rows' duals (see the module docstring)
        creator_rows = np.cumsum(new_creator) - 1
        cluster_rows = np.cumsum(new_cluster) - 1
        creator_price = sum_by(creator_rows, np.asarray(c["creator_cap"].dual_value)[:n], int(new_creator.sum()))
        cluster_price = sum_by(cluster_rows, np.asarray(c["cluster_cap"].dual_value)[:n], int(new_cluster.sum()))
        return _OneSolution(
            weights=weights, cap_price=cap_price, creators=creator[new_creator], creator_price=creator_price,
            clusters=cluster[new_cluster], cluster_price=cluster_price,
            sum_price=float(np.asarray(c["sum"].dual_value)),
            floor_price=float(np.asarray(c["originals_floor"].dual_value)))
