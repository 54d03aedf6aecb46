"""Per-request allocation latency: the fast exact solver against the warm cvxpy reference.

    python benchmarks/allocator.py            # n = 100, 1,000, 10,000 candidates (about 1-2 minutes on 2 cores)
    python benchmarks/allocator.py --quick    # n = 100 and 1,000 only, fewer problems, for a smoke check

Problems come from fairness.allocator.synthetic.random_problem (one request each), in three cases per
n: floor slack (floor = 0); floor binding (floor 0.35) with originality a property of the creator, so no
capped group mixes originals with others and the floor has an exact two-sided solution; and floor
binding with 5% of creators mixing originals and re-uploads, where the floor price is found by a
search that re-solves several times. The "floor binds" column says in how many problems the floor's
multiplier is positive. The reference keeps one compiled program per size
bucket and is warmed on a separate problem of the same bucket before timing, so its times are
solve-only (the compile is reported apart). Each row's figures are medians: over the problems for
the reference (one solve each), over problems x repeats for the fast solver. "max |dw|" is the largest
weight difference between the two solvers over the row's problems. A last table times one solve_fast
call over many small requests (batched) against solving them one by one. Rows run one after another in
this one process, so their ratios are comparable even on a noisy machine. The last line is one JSON
object with every figure. The goal (design note) is >= 100x at n = 1,000 with identical answers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fairness.allocator.fast import solve_fast
from fairness.allocator.problem import Allocation, AllocationProblem
from fairness.allocator.reference import ReferenceAllocator, bucket_size
from fairness.allocator.synthetic import random_problem

GOAL_RATIO = 100.0
DEFAULT_FLOOR = 0.35
FULL = {100: 20, 1_000: 10, 10_000: 3}  # n -> problems per case
QUICK = {100: 5, 1_000: 3}
FAST_REPEATS = 5


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def concat(problems: list[AllocationProblem]) -> AllocationProblem:
    """Single-request problems side by side as one multi-request problem (offsetting the indices)."""
    creators = np.cumsum([0] + [len(p.creator_cap) for p in problems])
    clusters = np.cumsum([0] + [len(p.cluster_cap) for p in problems])
    cat = np.concatenate
    return AllocationProblem(
        value=cat([p.value for p in problems]), cap=cat([p.cap for p in problems]),
        creator=cat([p.creator + creators[k] for k, p in enumerate(problems)]),
        creator_cap=cat([p.creator_cap for p in problems]),
        creator_cluster=cat([p.creator_cluster + clusters[k] for k, p in enumerate(problems)]),
        cluster_cap=cat([p.cluster_cap for p in problems]),
        cluster_request=cat([p.cluster_request + k for k, p in enumerate(problems)]),
        original=cat([p.original for p in problems]), floor=cat([p.floor for p in problems]),
        tau=cat([p.tau for p in problems]),
    )


def _timed(fn: Callable[[AllocationProblem], Allocation], problem: AllocationProblem) -> tuple[Allocation, float]:
    started = time.perf_counter()
    out = fn(problem)
    return out, time.perf_counter() - started


CASES = {"floor slack": (0.0, 0.0), "floor binding": (DEFAULT_FLOOR, 0.0),
         "floor binding, 5% mixed creators": (DEFAULT_FLOOR, 0.05)}  # case -> (floor, mixed_share)


def _row(n: int, case: str, count: int, reference: ReferenceAllocator, rng: np.random.Generator,
         compiled: set[int]) -> dict[str, Any]:
    floor, mixed = CASES[case]
    problems = [random_problem(n, rng, floor=floor, mixed_share=mixed) for _ in range(count)]
    # the first solve in a bucket compiles its program; time that apart, then warm up on a problem of the
    # same kind so that every timed reference solve is warm-started from a previous, different request
    _, first_s = _timed(reference.solve, random_problem(n, rng, floor=floor, mixed_share=mixed))
    compile_s = None if bucket_size(n) in compiled else first_s
    compiled.add(bucket_size(n))
    fast_times, ref_times, gaps, binds = [], [], [], 0
    for problem in problems:
        ref, ref_s = _timed(reference.solve, problem)
        ref_times.append(ref_s)
        fast = solve_fast(problem)
        fast_times += [_timed(solve_fast, problem)[1] for _ in range(FAST_REPEATS)]
        gaps.append(float(np.max(np.abs(fast.weights - ref.weights))))
        binds += bool(fast.floor_price[0] > 0)
    fast_ms, ref_ms = 1e3 * float(np.median(fast_times)), 1e3 * float(np.median(ref_times))
    return {
        "n": n, "case": case, "floor": floor, "mixed_share": mixed, "problems": count,
        "floor_binds": binds, "fast_ms": round(fast_ms, 4), "reference_ms": round(ref_ms, 3),
        "ratio": round(ref_ms / fast_ms, 1), "max_abs_dw": max(gaps),
        "reference_compile_s": None if compile_s is None else round(compile_s, 2),
    }


def _batched(requests: int, n: int, case: str, reference: ReferenceAllocator, rng: np.random.Generator,
             ref_sample: int) -> dict[str, Any]:
    floor, mixed = CASES[case]
    problems = [random_problem(n, rng, floor=floor, mixed_share=mixed) for _ in range(requests)]
    batch = concat(problems)
    together = solve_fast(batch)
    batch_s = float(np.median([_seconds(lambda: solve_fast(batch)) for _ in range(FAST_REPEATS)]))
    alone = [solve_fast(p) for p in problems]
    loop_s = float(np.median([_seconds(lambda: [solve_fast(p) for p in problems]) for _ in range(3)]))
    request = batch.request
    gap_alone = max(float(np.max(np.abs(together.weights[request == r] - a.weights))) for r, a in enumerate(alone))
    reference.solve(random_problem(n, rng, floor=floor, mixed_share=mixed))  # compile / warm the bucket
    ref_times, gap_ref = [], 0.0
    for r in range(ref_sample):
        ref, ref_s = _timed(reference.solve, problems[r])
        ref_times.append(ref_s)
        gap_ref = max(gap_ref, float(np.max(np.abs(together.weights[request == r] - ref.weights))))
    batch_us, loop_us = 1e6 * batch_s / requests, 1e6 * loop_s / requests
    ref_us = 1e6 * float(np.median(ref_times))
    return {
        "requests": requests, "n": n, "case": case, "floor": floor,
        "floor_binds": int((together.floor_price > 0).sum()), "batched_call_ms": round(1e3 * batch_s, 2),
        "batched_us_per_request": round(batch_us, 2), "one_by_one_us_per_request": round(loop_us, 2),
        "reference_us_per_request": round(ref_us, 1), "reference_sample": ref_sample,
        "batch_speedup": round(loop_us / batch_us, 1), "vs_reference": round(ref_us / batch_us, 1),
        "max_abs_dw_batched_vs_alone": gap_alone, "max_abs_dw_batched_vs_reference": gap_ref,
    }


def _print_table(header: list[str], lines: list[list[str]]) -> None:
    table = [header, *lines]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, line in enumerate(table):
        cells = zip(line, widths, strict=True)
        print("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(cells)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n = 100 and 1,000 only, fewer problems")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    reference = ReferenceAllocator()
    compiled: set[int] = set()
    rows = [_row(n, case, count, reference, rng, compiled) for n, count in (QUICK if args.quick else FULL).items()
            for case in CASES]
    requests = 200 if args.quick else 1000
    batched = [_batched(requests, 50, case, reference, rng, ref_sample=20 if args.quick else 100) for case in CASES]
    load_end = os.getloadavg()[0]

    print(f"fast exact solver vs warm cvxpy reference (Clarabel, tolerance {reference.tolerance:g}), per request; "
          f"1-min load average {load_start:.2f} at start, {load_end:.2f} at end")
    _print_table(
        ["n", "case", "problems", "floor binds", "fast ms", "reference ms", "reference / fast", "vs 100x goal",
         "max |dw|", "compile s"],
        [[f"{r['n']:,}", str(r["case"]), str(r["problems"]), f"{r['floor_binds']}/{r['problems']}",
          f"{r['fast_ms']:.3f}", f"{r['reference_ms']:.2f}", f"{r['ratio']:.1f}x",
          f"{float(r['ratio']) / GOAL_RATIO:.2f}", f"{r['max_abs_dw']:.1e}",
          "-" if r["reference_compile_s"] is None else f"{r['reference_compile_s']:.2f}"] for r in rows])
    print()
    print(f"batched: {requests:,} requests x 50 candidates in one solve_fast call, against the same requests solved "
          "one by one (fast) and a sample solved by the reference")
    _print_table(
        ["case", "floor binds", "batched call ms", "batched us/request", "one by one us/request", "batch speed-up",
         "reference us/request", "reference / batched", "max |dw| batched vs alone", "max |dw| vs reference"],
        [[b["case"], f"{b['floor_binds']}/{b['requests']}", f"{b['batched_call_ms']:.2f}",
          f"{b['batched_us_per_request']:.2f}", f"{b['one_by_one_us_per_request']:.2f}", f"{b['batch_speedup']:.1f}x",
          f"{b['reference_us_per_request']:.1f}", f"{b['vs_reference']:.1f}x",
          f"{b['max_abs_dw_batched_vs_alone']:.1e}", f"{b['max_abs_dw_batched_vs_reference']:.1e}"] for b in batched])
    print(json.dumps({"benchmark": "allocator", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(),
                      "numpy": np.__version__, "load_start": round(load_start, 2), "load_end": round(load_end, 2),
                      "rows": rows, "batched": batched}))


if __name__ == "__main__":
    main()
