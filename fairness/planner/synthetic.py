"""Seeded synthetic planner inputs, shared by the tests and `benchmarks/planner.py`.

The shape follows the design note's offline planner (/work/shared/design/allocator.md): creators in
two segments (Content and Shelf), most of them alone in their own operator cluster and a few operators
running several accounts (the sybil case the cluster caps and floors are for), merit as a lower
confidence bound, and pair demand that covers each segment's supply a few times over, so that the
supply rows are feasible and the caps, not the demand, shape the plan.
"""

from __future__ import annotations

import numpy as np

from fairness.planner.inputs import PlanInputs, merit_lower_bound


def synthetic_inputs(
    n_pairs: int,
    rng: np.random.Generator,
    *,
    segments: tuple[str, ...] = ("content", "shelf"),
    supply: tuple[float, ...] = (0.7, 0.3),
    operator_share: float = 0.1,
    max_accounts: int = 8,
    original_rate: float = 0.4,
    newcomer_rate: float = 0.1,
    demand_cover: float = 3.0,
    lcb_z: float = 1.0,
) -> PlanInputs:
    """About `n_pairs` (creator, segment) pairs: each creator is in every segment with probability 0.8
    (and in at least one).

    `operator_share` of creators belong to multi-account operators of 2..`max_accounts` accounts;
    `demand_cover` is the segment's total demand divided by its supply. Pass the RNG in (style point 9):
    the same seed gives the same inputs.
    """
    n_segments = len(segments)
    if len(supply) != n_segments:
        raise ValueError(f"supply has {len(supply)} entries for {n_segments} segments; give one per segment")
    n_creators = max(1, round(n_pairs / (0.8 * n_segments + 0.2 ** n_segments)))
    creator = np.arange(1_000, 1_000 + n_creators, dtype=np.int64)

    # Operator clusters: a prefix of creators is grouped into multi-account operators; the rest are alone.
    cluster = creator.copy()
    grouped = int(operator_share * n_creators)
    start = 0
    while start < grouped:
        size = int(rng.integers(2, max_accounts + 1))
        cluster[start: start + size] = cluster[start]
        start += size
    cluster = rng.permutation(cluster)

    newcomer = rng.random(n_creators) < newcomer_rate
    impressions = np.where(newcomer, rng.integers(5, 200, n_creators), rng.integers(200, 20_000, n_creators))
    mean = rng.lognormal(0.0, 0.6, n_creators)
    merit = merit_lower_bound(mean, mean * 2.0 / np.sqrt(impressions), lcb_z)
    original = rng.random(n_creators) < original_rate

    present = rng.random((n_creators, n_segments)) < 0.8
    present[~present.any(axis=1), 0] = True
    pair_creator, pair_segment = np.nonzero(present)  # (P,), (P,)
    pair_creator, pair_segment = pair_creator.astype(np.int64), pair_segment.astype(np.int64)
    n = len(pair_creator)

    quality = np.log1p(mean)[pair_creator]
    value = np.maximum(0.0, quality * rng.lognormal(0.0, 0.3, n) + rng.normal(0.0, 0.05, n))
    popularity = rng.lognormal(0.0, 1.0, n) * (0.5 + mean[pair_creator])
    supply_array = np.asarray(supply, dtype=np.float64)
    supply_array = supply_array / supply_array.sum()
    per_segment = np.bincount(pair_segment, weights=popularity, minlength=n_segments)  # (S,)
    demand = demand_cover * supply_array[pair_segment] * popularity / per_segment[pair_segment]
    risk = np.clip(rng.beta(1.0, 30.0, n) + 0.05 * (~original[pair_creator]), 0.0, 1.0)
    complaint = rng.beta(1.0, 60.0, n)

    return PlanInputs(
        creator=creator, cluster=cluster.astype(np.int64), merit=merit, original=original, newcomer=newcomer,
        segments=tuple(segments), supply=supply_array, pair_segment=pair_segment, pair_creator=pair_creator,
        value=value, demand=demand, risk=risk, complaint=complaint,
    ).validate()
