"""The per-market planner on Ray: one Ray task per market, merged into one TrafficPlan.

`fairness.planner.partition` splits the inputs and merges the plans (plain Python, tested without Ray);
this module only decides where each market's `plan_traffic` runs. Each task gets its own market's inputs
(the policy goes to the object store once, `ray.put`) and returns its plan; the driver merges them. Largest markets
first, so that the longest solve starts at once and the small ones fill the other CPUs behind it.

    ecorank plan --synthetic-markets 16 --pairs-per-market 100000 --ray --out plans   # docs/tuning.md
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import ray

from fairness.planner import PlanInputs, TrafficPlan, plan_traffic
from fairness.planner.partition import MarketPart, merge_market_plans, split_by_market
from fairness.policy import FairnessPolicy


@ray.remote(num_cpus=1)
def _plan_market(inputs: PlanInputs, policy: FairnessPolicy, version: int, now: float | None) -> TrafficPlan:
    return plan_traffic(inputs, policy, version=version, now=now)


def plan_markets_on_ray(inputs: PlanInputs, policy: FairnessPolicy, *, version: int = 1, now: float | None = None,
                        parts: Sequence[MarketPart] | None = None) -> TrafficPlan:
    """Plan every market as its own Ray task (Ray must be started: `experiments.tune.ray_adapter.start`)."""
    started = time.perf_counter()
    parts = list(parts) if parts is not None else split_by_market(inputs)
    policy_ref = ray.put(policy)
    order = sorted(range(len(parts)), key=lambda i: -parts[i].n_pairs)
    futures = {i: _plan_market.remote(parts[i].inputs, policy_ref, version, now) for i in order}
    plans = ray.get([futures[i] for i in range(len(parts))])
    return merge_market_plans(parts, plans, policy, version=version, now=now,
                              wall_seconds=time.perf_counter() - started)
