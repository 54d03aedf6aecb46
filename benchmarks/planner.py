"""Offline planner solve time against problem size: HiGHS, Clarabel and dual ascent, side by side.

    python benchmarks/planner.py            # 1e3 .. 1e6 pairs (about 4 minutes on 2 cores)
    python benchmarks/planner.py --quick    # 1e3 and 1e4 pairs, for a smoke check (seconds)

Inputs: `fairness.planner.synthetic_inputs(P, default_rng(seed))`: P (creator, segment) pairs in two
segments, 10% of creators in multi-account operators, the default policy (planner and budgets sections).
Per size, in this one process and one after another (so the ratios are comparable on a noisy machine):

- the LP (policy ridge 0) with HiGHS and with Clarabel, through cvxpy;
- the QP with ridge gamma = RIDGE_PER_PAIR x P (the ridge's strength on shares is gamma / P: on an even
  plan it costs RIDGE_PER_PAIR / 2 of the value scale) with Clarabel, through cvxpy;
- dual ascent on the same QP, with its objective and price gaps to Clarabel's;
- dual ascent on the LP with the surrogate ridge LP_RIDGE (what `auto` runs for an LP beyond the size
  limit), with its objective gap to the LP optimum.

Times are wall-clock seconds of the solve call (cvxpy compilation included), not of building the program
(its own column). HiGHS runs with a time limit of HIGHS_LIMIT seconds beyond 1e5 pairs; a row that hits
it prints '>' and the limit (the wall time it took is in the JSON). The 'auto' columns say which solver
`plan_traffic` picks at that size (fairness.planner.plan.choose_solver) and its time here. The goal is
1e5 pairs in at most 10 s on 2 cores. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from typing import Any

import numpy as np

from fairness.planner import (
    AUTO_SIZE_LIMIT,
    HIGHS_SIZE_LIMIT,
    LP_RIDGE,
    build_program,
    choose_solver,
    solve_cvxpy,
    solve_dual_ascent,
)
from fairness.planner.program import SolverFailure
from fairness.planner.synthetic import synthetic_inputs
from fairness.policy import load_policy

GOAL_SECONDS = 10.0
RIDGE_PER_PAIR = 0.01
SIZES = [1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
QUICK_SIZES = [1_000, 10_000]
HIGHS_MAX = 300_000       # the LP beyond this is not sensible (design note: 1e6 did not finish in 400 s)
HIGHS_LIMIT = 30.0        # seconds, for sizes above AUTO_SIZE_LIMIT
CLARABEL_MAX = 300_000


def timed_highs(program: Any, limit: float | None) -> tuple[float | None, float | None, bool]:
    """(seconds, objective, finished) of HiGHS on the LP; unfinished at the time limit."""
    options = {"highs_options": {"time_limit": limit}} if limit else None
    started = time.perf_counter()
    try:
        solution = solve_cvxpy(program, "highs", options=options)
    except SolverFailure:
        return time.perf_counter() - started, None, False
    return solution.seconds, solution.objective, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1e3 and 1e4 pairs only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    policy = load_policy()
    load_start = os.getloadavg()[0]
    rows = []
    for size in QUICK_SIZES if args.quick else SIZES:
        inputs = synthetic_inputs(size, np.random.default_rng(args.seed))
        started = time.perf_counter()
        lp = build_program(inputs, policy.planner, policy.budgets)
        build = time.perf_counter() - started
        pairs = lp.n_pairs
        qp = lp.with_ridge(RIDGE_PER_PAIR * pairs)
        row: dict[str, Any] = {"pairs": pairs, "creators": lp.n_creators, "clusters": lp.n_clusters,
                               "build_s": round(build, 3)}
        if size <= HIGHS_MAX:
            seconds, objective, finished = timed_highs(lp, HIGHS_LIMIT if size > AUTO_SIZE_LIMIT else None)
            row.update(highs_s=round(seconds, 3) if seconds is not None else None, highs_finished=finished,
                       highs_objective=objective)
        if size <= CLARABEL_MAX:
            clarabel_lp = solve_cvxpy(lp, "clarabel")
            row.update(clarabel_lp_s=round(clarabel_lp.seconds, 3), clarabel_lp_objective=clarabel_lp.objective)
            clarabel = solve_cvxpy(qp, "clarabel")
            row.update(clarabel_s=round(clarabel.seconds, 3), clarabel_objective=clarabel.objective)
        ascent = solve_dual_ascent(qp)
        row.update(dual_ascent_s=round(ascent.seconds, 3), dual_ascent_status=ascent.status,
                   dual_ascent_evaluations=ascent.stats["evaluations"], dual_ascent_objective=ascent.objective)
        if "clarabel_objective" in row:
            reference = row["clarabel_objective"]
            row["qp_gap"] = (reference - ascent.objective) / max(1.0, abs(reference))
            row["qp_price_gap"] = float(np.abs(ascent.pair_price(qp) - clarabel.pair_price(qp)).max())
        lp_ridge = LP_RIDGE * max(1.0, float(np.abs(lp.value).max())) * pairs
        surrogate = solve_dual_ascent(lp.with_ridge(lp_ridge))
        row.update(lp_dual_ascent_s=round(surrogate.seconds, 3), lp_dual_ascent_status=surrogate.status,
                   lp_dual_ascent_objective=surrogate.objective)
        lp_optimum = row.get("highs_objective") or row.get("clarabel_lp_objective")
        if lp_optimum is not None:
            row["lp_gap"] = (lp_optimum - surrogate.objective) / max(1.0, abs(lp_optimum))
        row["auto_lp"], row["auto_qp"] = choose_solver(lp, "auto"), choose_solver(qp, "auto")
        rows.append(row)
        print(f"  {pairs:>9,} pairs done", flush=True)
    load_end = os.getloadavg()[0]

    def seconds(row: dict[str, Any], key: str) -> str:
        if key == "highs_s" and row.get("highs_finished") is False:
            return f"> {HIGHS_LIMIT:.0f}"
        return f"{row[key]:.2f}" if row.get(key) is not None else "-"

    def ratio(row: dict[str, Any], key: str, reference: str) -> str:
        if row.get(reference) is None or (reference == "highs_s" and row.get("highs_finished") is False):
            return "-"
        return f"{row[key] / row[reference]:.2f}x"

    def gap(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.1e}" if key in row else "-"

    auto_key = {("highs", "lp"): "highs_s", ("clarabel", "lp"): "clarabel_lp_s",
                ("dual_ascent", "lp"): "lp_dual_ascent_s", ("clarabel", "qp"): "clarabel_s",
                ("highs", "qp"): "-", ("dual_ascent", "qp"): "dual_ascent_s"}

    def auto(row: dict[str, Any], kind: str) -> str:
        name = row[f"auto_{kind}"]
        took = seconds(row, auto_key[name, kind])
        return f"{name} {took}" + ("" if took == "-" or float(took) <= GOAL_SECONDS else " (over goal)")

    header = ["pairs", "build s", "HiGHS LP s", "Clarabel LP s", "Clarabel QP s", "DA QP s", "DA LP s",
              "DA QP/Clarabel QP", "DA LP/HiGHS LP", "QP obj gap", "QP price gap", "LP obj gap", "DA evals",
              "auto LP", "auto QP"]
    table = [header]
    for row in rows:
        table.append([f"{row['pairs']:,}", f"{row['build_s']:.2f}", seconds(row, "highs_s"),
                      seconds(row, "clarabel_lp_s"), seconds(row, "clarabel_s"), seconds(row, "dual_ascent_s"),
                      seconds(row, "lp_dual_ascent_s"), ratio(row, "dual_ascent_s", "clarabel_s"),
                      ratio(row, "lp_dual_ascent_s", "highs_s"), gap(row, "qp_gap"), gap(row, "qp_price_gap"),
                      gap(row, "lp_gap"), str(row["dual_ascent_evaluations"]), auto(row, "lp"), auto(row, "qp")])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"policy 'default'; QP ridge {RIDGE_PER_PAIR:g} x P; LP surrogate ridge {LP_RIDGE:g} x max|value| x P; "
          f"seed {args.seed}; 1-min load average at start {load_start:.2f}")
    for i, line in enumerate(table):
        print("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(line, widths,
                                                                                               strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"obj gap: (reference - dual ascent) / max(1, |reference|), reference Clarabel (QP) or the LP optimum "
          f"(HiGHS, else Clarabel); price gap: max over pairs of |total price difference| (utility units); auto: "
          f"HiGHS up to {HIGHS_SIZE_LIMIT:,} pairs (LP), Clarabel up to {AUTO_SIZE_LIMIT:,}, dual ascent beyond; "
          f"peak RSS {peak:.0f} MiB; 1-min load average at the end {load_end:.2f}")
    print(json.dumps({"benchmark": "planner", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(),
                      "ridge_per_pair": RIDGE_PER_PAIR, "lp_ridge": LP_RIDGE, "auto_size_limit": AUTO_SIZE_LIMIT,
                      "highs_size_limit": HIGHS_SIZE_LIMIT,
                      "load_start": load_start, "load_end": load_end, "peak_rss_mib": round(peak), "rows": rows}))


if __name__ == "__main__":
    main()
