"""The fairness engine: blend -> prices -> per-request allocation -> explanation, in one place.

This is the transport-agnostic core that the simulator policy, the gRPC server and batch scoring all
call (style point 4). It takes head predictions from any source (a trained multi-task bundle, or the
simulator's observable estimates), so it has no model inside:

    utility   u = blend(heads, weights)                       (fairness/blend.py)
    value     v = u - creator price - cluster price            (plan duals, moved by the controllers)
    weights   w = argmax v.w - tau/2 |w|^2 under the caps and the originals floor   (fairness/allocator)

Prices come, in order, from the price controllers (warm-started from the plan), else the plan, else
zero ("hard caps only"). An expired plan is still used, and said so in `notes`, until a new one is set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fairness.allocator.fast import solve_fast
from fairness.allocator.problem import Allocation, build_problem
from fairness.blend import BlendWeights, HeadPredictions, blend_terms
from fairness.controller import PriceController
from fairness.planner import TrafficPlan
from fairness.policy import FairnessPolicy

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]


@dataclass(frozen=True)
class CandidateBatch:
    """The candidates of one or more requests, columnar, all (N,)."""

    creator: I64  # creator (account) id
    cluster: I64  # operator cluster id (a creator alone: an id of its own)
    original: Bool  # the request says the item is original (fingerprint check passed)
    heads: HeadPredictions
    request: I64 | None = None  # request index 0..R-1 of each candidate; None: a single request

    def __post_init__(self) -> None:
        n = len(self.heads)
        for name in ("creator", "cluster", "original"):
            array = getattr(self, name)
            if np.shape(array) != (n,):
                raise ValueError(f"{name} has shape {np.shape(array)}; expected ({n},) like the head predictions")
        if self.request is not None and np.shape(self.request) != (n,):
            raise ValueError(f"request has shape {np.shape(self.request)}; expected ({n},)")


@dataclass(frozen=True)
class Explanation:
    """Why each candidate got its weight, columnar (N,): the gRPC response and creator reports show it."""

    weight: F64
    base_utility: F64
    terms: dict[str, F64]  # each head's signed contribution to base_utility
    creator_price: F64  # subtracted from utility (negative = boost)
    cluster_price: F64
    adjusted_utility: F64
    floor_boost: F64  # the originals floor's dual, added for eligible originals
    item_cap_dual: F64  # > 0 where the candidate's own cap binds
    creator_cap_dual: F64  # > 0 where its creator's per-request cap binds
    cluster_cap_dual: F64  # > 0 where its cluster's per-request cap binds
    eligible_original: Bool

    def binding(self, index: int) -> list[str]:
        """Names of the constraints binding for candidate `index`."""
        names = []
        for name, dual in (("item_cap", self.item_cap_dual), ("creator_cap", self.creator_cap_dual),
                           ("cluster_cap", self.cluster_cap_dual), ("originals_floor", self.floor_boost)):
            if dual[index] > 1e-12:
                names.append(name)
        return names

    def to_records(self) -> list[dict[str, object]]:
        rows = []
        for i in range(len(self.weight)):
            rows.append({
                "weight": float(self.weight[i]), "base_utility": float(self.base_utility[i]),
                **{f"{head}_term": float(values[i]) for head, values in self.terms.items()},
                "creator_price": float(self.creator_price[i]), "cluster_price": float(self.cluster_price[i]),
                "adjusted_utility": float(self.adjusted_utility[i]), "floor_boost": float(self.floor_boost[i]),
                "item_cap_dual": float(self.item_cap_dual[i]), "creator_cap_dual": float(self.creator_cap_dual[i]),
                "cluster_cap_dual": float(self.cluster_cap_dual[i]), "binding": self.binding(i),
            })
        return rows


@dataclass(frozen=True)
class EngineResult:
    weights: F64  # (N,) traffic weights; each request's sum to 1
    utility: F64  # (N,) blended utility before prices
    value: F64  # (N,) adjusted utility
    explanation: Explanation
    allocation: Allocation
    blend_weights: BlendWeights
    plan_version: int | None
    degraded: Bool  # (R,) a cap gave way
    notes: tuple[str, ...] = field(default=())  # relaxations and plan status, human-readable


class FairnessEngine:
    """Blend, price and allocate; `observe` feeds realized exposure back to the price controllers."""

    def __init__(self, policy: FairnessPolicy, *, plan: TrafficPlan | None = None) -> None:
        self.policy = policy
        self.plan: TrafficPlan | None = None
        self.creator_controller: PriceController | None = None
        self.cluster_controller: PriceController | None = None
        if plan is not None:
            self.set_plan(plan)

    def set_plan(self, plan: TrafficPlan) -> None:
        """Adopt a plan: the controllers take its targets and start from its dual prices (warm start) plus
        the corrections the previous controllers had learned (PriceController.carry_over)."""
        self.plan = plan
        settings = self.policy.controller
        creators, clusters = plan.creators, plan.clusters
        creator_controller = PriceController(
            keys=creators["creator"].to_numpy(np.int64), targets=creators["target"].to_numpy(np.float64),
            initial_prices=creators["price"].to_numpy(np.float64), settings=settings)
        cluster_controller = PriceController(
            keys=clusters["cluster"].to_numpy(np.int64), targets=clusters["target"].to_numpy(np.float64),
            initial_prices=clusters["price"].to_numpy(np.float64), settings=settings)
        if self.creator_controller is not None and self.cluster_controller is not None:
            creator_controller.carry_over(self.creator_controller)
            cluster_controller.carry_over(self.cluster_controller)
        self.creator_controller, self.cluster_controller = creator_controller, cluster_controller

    def observe(self, *, creator: ArrayLike, cluster: ArrayLike, exposure: ArrayLike) -> None:
        """Realized exposure per creator (with its cluster) over one period; moves the controllers' prices."""
        creator = np.asarray(creator, dtype=np.int64)
        cluster = np.asarray(cluster, dtype=np.int64)
        exposure = np.asarray(exposure, dtype=np.float64)
        if self.creator_controller is not None:
            self.creator_controller.update(creator, exposure)
        if self.cluster_controller is not None:
            keys, index = np.unique(cluster, return_inverse=True)
            self.cluster_controller.update(keys, np.bincount(index.reshape(-1), weights=exposure, minlength=len(keys)))

    def prices(self, creator: I64, cluster: I64) -> tuple[F64, F64]:
        """(creator price, cluster price) per candidate: controllers, else zero."""
        if self.creator_controller is None or self.cluster_controller is None:
            return np.zeros(len(creator)), np.zeros(len(cluster))
        return self.creator_controller.price_of(creator), self.cluster_controller.price_of(cluster)

    def blend_weights(self, overrides: Mapping[str, float] | None = None) -> BlendWeights:
        budget_prices = self.plan.budget_prices if self.plan is not None else None
        weights = BlendWeights.from_policy(self.policy, budget_prices=budget_prices)
        return weights.with_overrides(overrides, self.policy) if overrides else weights

    def allocate(self, batch: CandidateBatch, *, overrides: Mapping[str, float] | None = None,
                 now: float | None = None) -> EngineResult:
        """Traffic weights for every request in the batch, with explanations."""
        policy = self.policy
        weights = self.blend_weights(overrides)
        terms = blend_terms(batch.heads, weights, gmv_scale=policy.blend.gmv_scale)
        utility = terms["gmv"] + terms["prosperity"] + terms["risk"] + terms["complaint"]
        creator_price, cluster_price = self.prices(batch.creator, batch.cluster)
        value = utility - creator_price - cluster_price
        e = policy.eligibility
        eligible = batch.original & (batch.heads.prosperity >= e.min_prosperity) & (batch.heads.risk <= e.max_risk)
        a = policy.allocation
        problem = build_problem(value, creator_ids=batch.creator, cluster_ids=batch.cluster, original=eligible,
                                tau=a.tau, item_cap=a.item_cap, creator_cap=a.creator_cap, cluster_cap=a.cluster_cap,
                                floor=a.originals_floor, request=batch.request)
        allocation = solve_fast(problem)
        solved = allocation.problem
        assert solved is not None
        request = solved.request
        explanation = Explanation(
            weight=allocation.weights, base_utility=utility, terms=terms, creator_price=creator_price,
            cluster_price=cluster_price, adjusted_utility=value,
            floor_boost=np.where(eligible, allocation.floor_price[request], 0.0),
            item_cap_dual=allocation.cap_price, creator_cap_dual=allocation.creator_price[solved.creator],
            cluster_cap_dual=allocation.cluster_price[solved.cluster], eligible_original=eligible)
        notes = [f"request {r.request}: {r.constraint} relaxed: {r.reason}" for r in allocation.relaxations]
        if self.plan is not None and self.plan.expired(now if now is not None else time.time()):
            notes.append(f"traffic plan v{self.plan.version} is past its TTL; its prices are used until a new plan "
                         "is set")
        return EngineResult(weights=allocation.weights, utility=utility, value=value, explanation=explanation,
                            allocation=allocation, blend_weights=weights,
                            plan_version=self.plan.version if self.plan is not None else None,
                            degraded=allocation.degraded, notes=tuple(notes))
