"""Seeded random allocation problems shaped like real traffic, for tests and benchmarks.

Creators have a heavy-tailed number of candidates, most operator clusters hold one creator and a few
hold many (matrix accounts, never originals), about a third of the creators are originals (a few
mix originals and re-uploads), and the caps and floor are set so that every kind of constraint
binds somewhere.
"""

from __future__ import annotations

import numpy as np

from fairness.allocator.problem import AllocationProblem, build_problem


def random_problem(
    n: int,
    rng: np.random.Generator,
    *,
    tau: float = 0.05,
    item_cap: float = 0.05,
    creator_cap: float = 0.06,
    cluster_cap: float = 0.12,
    floor: float = 0.35,
    original_share: float = 0.3,
    mixed_share: float = 0.05,
    farms: int | None = None,
) -> AllocationProblem:
    """One request with n candidates; value ~ N(0, 1) plus a creator effect."""
    sizes = np.minimum(rng.zipf(2.0, size=n), 20)  # candidates per creator, heavy-tailed
    creator = np.repeat(np.arange(n), sizes)[:n]
    n_creators = int(creator.max()) + 1
    cluster = np.arange(n_creators)
    n_farms = max(1, n_creators // 50) if farms is None else farms
    for farm in range(n_farms):  # a farm: one operator cluster holding several creators
        members = rng.choice(n_creators, size=min(n_creators, int(rng.integers(3, 12))), replace=False)
        cluster[members] = n_creators + farm
    value = rng.normal(size=n) + 0.5 * rng.normal(size=n_creators)[creator]
    # originality is mostly a property of the creator (original creators vs re-uploaders); a few
    # creators mix both, which couples the floor with their caps
    creator_original = (rng.random(n_creators) < original_share) & (cluster < n_creators)  # farms copy
    mixed = rng.random(n_creators) < mixed_share
    original = np.where(mixed[creator], rng.random(n) < 0.5, creator_original[creator])
    return build_problem(value, creator_ids=creator, cluster_ids=cluster[creator], original=original, tau=tau,
                         item_cap=item_cap, creator_cap=creator_cap, cluster_cap=cluster_cap, floor=floor)
