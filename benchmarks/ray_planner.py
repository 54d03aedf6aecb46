"""The offline planner partitioned by market: one joint program vs one program per market, in this process
and as Ray tasks, against the platform's size.

    python benchmarks/ray_planner.py            # 4, 8, 16 markets of 9e4 pairs (about 6 minutes on 2 cores)
    python benchmarks/ray_planner.py --quick    # 2 and 4 markets of 5e3 pairs (under a minute)

Inputs: `fairness.planner.partition.synthetic_markets(M, pairs_per_market, default_rng(seed))`: M
independent markets (`synthetic_inputs` each, disjoint creators and operators, equal supply), default
policy (an LP; `solver = "auto"` picks HiGHS, Clarabel or dual ascent by size, see
fairness/planner/plan.py). Per size, one after another in this one process (so the ratios compare on a
noisy machine):

- joint: `plan_traffic` on the whole platform (beyond 1e5 pairs `auto` runs dual ascent on the LP with a
  small surrogate ridge, an approximation; below, an exact solver);
- per market, here: `plan_by_market`, each market's exact program one after another;
- per market, Ray: `experiments.scale.plan.plan_markets_on_ray`, one Ray task per market on a local Ray
  with all CPUs (started, and its workers warmed up on a tiny plan, before the clock).

Times are wall-clock seconds of the whole call (split, solve, merge). 'size reached' is the largest
platform the per-market planner on Ray planned within GOAL_SECONDS. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# As a script, this file's folder is sys.path[0], and benchmarks/mtl.py (and serving.py) would shadow the
# packages of the same name that the Ray modules import
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks.table import print_table
from fairness.planner import plan_traffic
from fairness.planner.partition import plan_by_market, split_by_market, synthetic_markets
from fairness.policy import load_policy

GOAL_SECONDS = 60.0
# 9e4 pairs per market: under 1e5, where `auto` still picks an exact solver for each market
SIZES = [(4, 90_000), (8, 90_000), (16, 90_000)]
QUICK_SIZES = [(2, 5_000), (4, 5_000)]
MATCH_TOLERANCE = 1e-9
JOINT_MAX_PAIRS = 2_000_000  # dual ascent's memory and time grow past this; not needed to make the point


def timed(run: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run(*args, **kwargs)
    return time.perf_counter() - started, result


def max_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The largest absolute difference between two plans' numeric columns (the same creators, in order)."""
    assert a["creator"].equals(b["creator"])
    columns = [c for c in a.columns if a[c].dtype.kind == "f"]
    return max(float(np.abs(a[c].to_numpy() - b[c].to_numpy()).max(initial=0.0)) for c in columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument("--address", default=None,
                        help="a running Ray to join (default: start a local one; the tests pass theirs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from experiments.scale.plan import plan_markets_on_ray
    from experiments.tune.ray_adapter import start

    start(address=args.address)
    policy = load_policy()
    # Warm-up, untimed: Ray starts its worker processes (and they import the planner) on the first tasks.
    plan_markets_on_ray(synthetic_markets(os.cpu_count() or 1, 200, np.random.default_rng(args.seed)), policy)
    rows: list[dict[str, Any]] = []
    for markets, per_market in QUICK_SIZES if args.quick else SIZES:
        inputs = synthetic_markets(markets, per_market, np.random.default_rng(args.seed))
        parts = split_by_market(inputs)
        row: dict[str, Any] = {"markets": markets, "pairs": inputs.n_pairs,
                               "largest_market_pairs": max(p.n_pairs for p in parts)}
        if inputs.n_pairs <= JOINT_MAX_PAIRS:
            row["joint_seconds"], joint = timed(plan_traffic, inputs, policy)
            row["joint_solver"], row["joint_objective"] = joint.solver, joint.objective
        row["here_seconds"], here = timed(plan_by_market, inputs, policy, parts=parts)
        row["ray_seconds"], on_ray = timed(plan_markets_on_ray, inputs, policy, parts=parts)
        row["market_solver"], row["partitioned_objective"] = on_ray.solver, on_ray.objective
        # Ray's workers run 1 BLAS/OpenMP thread, this process more: sums may round differently in the last bit
        row["max_share_difference"] = max_difference(here.creators, on_ray.creators)
        row["ray_matches_here"] = bool(row["max_share_difference"] <= MATCH_TOLERANCE
                                       and abs(on_ray.objective - here.objective) <= MATCH_TOLERANCE)
        row["here_over_ray"] = row["here_seconds"] / row["ray_seconds"]
        rows.append(row)
        print(f"  {inputs.n_pairs:>10,} pairs in {markets} markets done", flush=True)

    header = ["markets", "pairs", "largest market", "joint s", "joint solver", "per market here s", "on Ray s",
              "here / Ray", "market solver", "max |Ray - here|"]
    lines = [[str(r["markets"]), f"{r['pairs']:,}", f"{r['largest_market_pairs']:,}",
              f"{r['joint_seconds']:.2f}" if "joint_seconds" in r else "-", r.get("joint_solver", "-"),
              f"{r['here_seconds']:.2f}", f"{r['ray_seconds']:.2f}", f"{r['here_over_ray']:.2f}x",
              r["market_solver"], f"{r['max_share_difference']:.1e}"] for r in rows]
    print(f"default policy (LP), {os.cpu_count()} CPUs, seed {args.seed}")
    print_table(header, lines)
    reached = max((r["pairs"] for r in rows if r["ray_seconds"] <= GOAL_SECONDS), default=0)
    print(f"size reached: {reached:,} pairs planned per market on Ray within {GOAL_SECONDS:.0f} s")
    print(json.dumps({"benchmark": "ray_planner", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(), "seed": args.seed,
                      "goal_seconds": GOAL_SECONDS, "size_reached": reached, "rows": rows}))


if __name__ == "__main__":
    main()
