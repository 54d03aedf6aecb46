"""What a scale-out job needs from the Ray cluster: CPU slots for its workers, and one more for Ray Data.

Training workers and scoring actors each hold their CPU slots for the whole run; Ray Data's read, shuffle
and write tasks need a slot of their own, or they wait forever (measured: two scoring actors on a 2-CPU Ray
hang). A job checks the cluster before it starts anything, and a local Ray is started big enough
(`experiments.tune.ray_adapter.start(min_cpus=...)`).
"""

from __future__ import annotations

import ray

DATA_CPUS = 1  # Ray Data's tasks, beside the workers' slots


def require_cpus(needed: int, *, received: str, holders: str, fewer: str,
                 error: type[ValueError] = ValueError) -> None:
    """Raise `error` unless the running Ray has `needed` CPUs; `received` names the settings, `holders` who
    holds the slots and `fewer` what to lower."""
    available = int(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
    if available < needed:
        raise error(f"{received}: the Ray cluster has {available} CPUs; expected at least {needed} ({holders} for "
                    "the whole run and Ray Data's tasks need one more). Fix: "
                    f"{fewer}, --num-cpus for a local Ray (logical CPUs may exceed the cores), or a bigger cluster")
