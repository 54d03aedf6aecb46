"""The per-request allocation problem and its solution, shared by the fast and the reference solver.

For each request r with candidates i (see docs/fairness.md for the derivation):

    maximize   sum_i v_i w_i - (tau_r / 2) sum_i w_i^2
    subject to sum_i w_i = 1,   0 <= w_i <= cap_i,
               sum_{i in creator a} w_i <= C_a,   sum_{i in cluster g} w_i <= C_g   (creators nest in clusters)
               sum_{i original} w_i >= f_r

Many requests are solved at once: their candidates are concatenated and the nesting
candidate -> creator -> cluster -> request is stored as index arrays, so the nesting holds by
construction. `build_problem` makes one from per-candidate ids and checks everything on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]


class AllocationInputError(ValueError):
    """Allocation inputs are malformed; the message says what was received, what was expected and the fix."""


@dataclass(frozen=True)
class AllocationProblem:
    """R independent requests, N candidates, A creators and G clusters in total (all indices 0-based)."""

    value: F64  # (N,) adjusted utility v = blended utility - prices
    cap: F64  # (N,) per-candidate cap
    creator: I64  # (N,) creator index of each candidate
    creator_cap: F64  # (A,)
    creator_cluster: I64  # (A,) cluster index of each creator
    cluster_cap: F64  # (G,)
    cluster_request: I64  # (G,) request index of each cluster
    original: Bool  # (N,) eligible for the originals floor
    floor: F64  # (R,) originals floor per request
    tau: F64  # (R,) smoothing per request

    @property
    def n_requests(self) -> int:
        return len(self.floor)

    @property
    def cluster(self) -> I64:
        """(N,) cluster index of each candidate."""
        return self.creator_cluster[self.creator]

    @property
    def request(self) -> I64:
        """(N,) request index of each candidate."""
        return self.cluster_request[self.creator_cluster[self.creator]]

    def replace(self, **changes: object) -> AllocationProblem:
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(changes)
        return AllocationProblem(**fields)


@dataclass(frozen=True)
class Relaxation:
    """One constraint that gave way in one request, and by how much."""

    request: int
    constraint: str  # "cluster_cap" | "creator_cap" | "item_cap" | "originals_floor"
    requested: float  # the scale factor or floor asked for
    applied: float  # the value actually used
    reason: str

    @property
    def degrades(self) -> bool:
        """Caps giving way is a degraded answer; a floor the present originals cannot hold is routine."""
        return self.constraint != "originals_floor"


@dataclass(frozen=True)
class Allocation:
    """Traffic weights and the KKT multipliers that explain them.

    Every candidate's weight is w_i = clip((v_i + floor_price_r [i original] - threshold_i) / tau_r, 0, cap_i)
    with threshold_i = sum_price_r + cluster_price_g + creator_price_a: the multipliers are the dual
    prices of the constraints (>= 0; 0 where a constraint does not bind).
    """

    weights: F64  # (N,)
    sum_price: F64  # (R,) multiplier of sum w = 1 (may have any sign)
    floor_price: F64  # (R,) multiplier of the originals floor, >= 0 (a boost for eligible originals)
    creator_price: F64  # (A,) multiplier of the creator caps, >= 0
    cluster_price: F64  # (G,) multiplier of the cluster caps, >= 0
    cap_price: F64  # (N,) multiplier of the per-candidate caps, >= 0
    relaxations: tuple[Relaxation, ...] = field(default=())
    problem: AllocationProblem | None = None  # the (possibly relaxed) problem actually solved

    @property
    def degraded(self) -> Bool:
        """(R,) True where a cap had to give way for the request to be feasible."""
        assert self.problem is not None
        out = np.zeros(self.problem.n_requests, bool)
        for relaxation in self.relaxations:
            if relaxation.degrades:
                out[relaxation.request] = True
        return out


def _per_item(name: str, value: ArrayLike, n: int, *, low: float, high: float) -> F64:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n, float(array))
    if array.shape != (n,):
        raise AllocationInputError(f"{name} has shape {array.shape}; expected a scalar or shape ({n},), one per "
                                   "candidate")
    bad = ~np.isfinite(array) | (array < low) | (array > high)
    if bad.any():
        where = int(np.flatnonzero(bad)[0])
        raise AllocationInputError(f"{name}[{where}] = {float(array[where])!r}; expected a finite number in "
                                   f"[{low:g}, {high:g}] ({int(bad.sum())} bad entries); fix {name}")
    return array


def _per_request(name: str, value: ArrayLike, n_requests: int, *, low: float, high: float, open_low: bool = False
                 ) -> F64:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        array = np.full(n_requests, float(array))
    if array.shape != (n_requests,):
        raise AllocationInputError(f"{name} has shape {array.shape}; expected a scalar or shape ({n_requests},), "
                                   "one per request")
    bad = ~np.isfinite(array) | (array < low) | (array > high) | ((array == low) if open_low else False)
    if np.any(bad):
        where = int(np.flatnonzero(bad)[0])
        interval = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise AllocationInputError(f"{name}[{where}] = {float(array[where])!r}; expected a finite number in {interval}")
    return array


def _ids(name: str, value: ArrayLike, n: int) -> I64:
    array = np.asarray(value)
    if array.shape != (n,):
        raise AllocationInputError(f"{name} has shape {array.shape}; expected ({n},), one id per candidate")
    if not np.issubdtype(array.dtype, np.integer):
        raise AllocationInputError(f"{name} has dtype {array.dtype}; expected integer ids")
    return array.astype(np.int64, copy=False)


def build_problem(
    value: ArrayLike,
    *,
    creator_ids: ArrayLike,
    cluster_ids: ArrayLike,
    original: ArrayLike,
    tau: ArrayLike,
    item_cap: ArrayLike = 1.0,
    creator_cap: ArrayLike = 1.0,
    cluster_cap: ArrayLike = 1.0,
    floor: ArrayLike = 0.0,
    request: ArrayLike | None = None,
) -> AllocationProblem:
    """Make an AllocationProblem from per-candidate arrays (N,), checking every input.

    `creator_cap` / `cluster_cap` may be scalars or per-candidate arrays (the cap of the candidate's
    creator / cluster; where a creator's candidates disagree the smallest wins). `request` (N,) assigns
    candidates to requests 0..R-1 (default: one request); `tau` and `floor` are scalars or (R,).
    Ids are arbitrary integers; a creator must belong to one cluster within a request.
    """
    v = np.asarray(value, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise AllocationInputError(f"value has shape {v.shape}; expected a non-empty 1-D array, one utility per "
                                   "candidate")
    n = len(v)
    if not np.isfinite(v).all():
        where = int(np.flatnonzero(~np.isfinite(v))[0])
        raise AllocationInputError(f"value[{where}] = {float(v[where])!r}; expected finite utilities. Check the head "
                                   "predictions and prices that produced it")
    req = np.zeros(n, np.int64) if request is None else _ids("request", request, n)
    if req.min() < 0:
        raise AllocationInputError(f"request ids must be >= 0; received min {int(req.min())}")
    n_requests = int(req.max()) + 1
    if np.bincount(req, minlength=n_requests).min() == 0:
        raise AllocationInputError("every request 0..R-1 needs at least one candidate; renumber requests densely")
    creators = _ids("creator_ids", creator_ids, n)
    clusters = _ids("cluster_ids", cluster_ids, n)
    orig = np.asarray(original)
    if orig.shape != (n,) or orig.dtype != np.bool_:
        raise AllocationInputError(f"original has shape {orig.shape} and dtype {orig.dtype}; expected bool ({n},)")
    cap = _per_item("item_cap", item_cap, n, low=0.0, high=1.0)
    creator_cap_item = _per_item("creator_cap", creator_cap, n, low=0.0, high=1.0)
    cluster_cap_item = _per_item("cluster_cap", cluster_cap, n, low=0.0, high=1.0)
    floors = _per_request("floor", floor, n_requests, low=0.0, high=1.0)
    taus = _per_request("tau", tau, n_requests, low=0.0, high=np.inf, open_low=True)

    # creators are (request, creator id) pairs, clusters (request, cluster id) pairs
    creator, creator_request = _pair_index(req, creators)
    cluster, cluster_request = _pair_index(req, clusters)
    n_creators = len(creator_request)
    creator_cluster = np.full(n_creators, -1, np.int64)
    creator_cluster[creator] = cluster
    mismatch = creator_cluster[creator] != cluster
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        other = int(clusters[(creator == creator[i]) & (clusters != clusters[i])][0])
        raise AllocationInputError(
            f"creator {int(creators[i])} appears in clusters {other} and {int(clusters[i])} in request {int(req[i])}; "
            "creators must nest inside clusters: give each creator one cluster id")
    creator_cap_arr = np.ones(n_creators)
    np.minimum.at(creator_cap_arr, creator, creator_cap_item)
    cluster_cap_arr = np.ones(len(cluster_request))
    np.minimum.at(cluster_cap_arr, cluster, cluster_cap_item)
    return AllocationProblem(
        value=v, cap=cap, creator=creator, creator_cap=creator_cap_arr, creator_cluster=creator_cluster,
        cluster_cap=cluster_cap_arr, cluster_request=cluster_request, original=orig,
        floor=floors, tau=taus,
    )


def _pair_index(request: I64, ids: I64) -> tuple[I64, I64]:
    """Dense index of each (request, id) pair, and the request of each pair; no overflow for any int64 ids."""
    unique_ids, rank = np.unique(ids, return_inverse=True)
    key = request * len(unique_ids) + rank.reshape(-1)
    pairs, index = np.unique(key, return_inverse=True)
    return index.reshape(-1).astype(np.int64), (pairs // len(unique_ids)).astype(np.int64)


def sum_by(index: I64, weights: ArrayLike, size: int) -> F64:
    """Per-group sums of `weights` over groups 0..size-1 (np.bincount, typed as float)."""
    out: F64 = np.bincount(index, weights=np.asarray(weights, dtype=np.float64), minlength=size).astype(np.float64)
    return out
