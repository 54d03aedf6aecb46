"""Simulator throughput: rounds per second of the `default` preset, one policy, one seed per row.

    python benchmarks/simulator.py            # full 200-round runs (about 2-3 minutes on 2 cores)
    python benchmarks/simulator.py --quick    # 20-round runs, for a smoke check

Rows run one after another in this one process, so their ratios are comparable even on a noisy
machine. The goal (issue 2) is a whole `default` run in at most 60 s on 2 cores. The last line is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from experiments.config import load_scenario
from experiments.simulator.runner import simulate

GOAL_SECONDS = 60.0
CASES = [  # (scenario, policy, log impressions)
    ("S1", "p0", False),
    ("S1", "random", False),
    ("S4", "p0", False),
    ("S4", "explore", True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 rounds per case instead of 200")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = []
    with TemporaryDirectory() as tmp:
        for scenario, policy, log in CASES:
            overrides = ["run.rounds=20", "run.burn_in=5"] if args.quick else []
            config = load_scenario(scenario, preset="default", overrides=overrides)
            path = Path(tmp) / f"{scenario}-{policy}.parquet" if log else None
            started = time.perf_counter()
            result = simulate(config, policy, args.seed, impressions_path=path)
            seconds = time.perf_counter() - started
            rounds = config.run.rounds
            rows.append({
                "case": f"{scenario} {policy}" + (" +impressions" if log else ""),
                "rounds": rounds,
                "seconds": round(seconds, 2),
                "rounds_per_s": round(rounds / seconds, 2),
                "ms_per_round": round(1000 * seconds / rounds, 1),
                "requests_per_round": round(float(result.rounds["requests"].mean())),
                "accounts_final": int(result.summary["accounts_final"]),
                # Projected time of a whole 200-round default run at this pace, against the 60 s goal.
                "projected_200_s": round(200 * seconds / rounds, 1),
            })

    base = rows[0]["seconds"]
    header = ["case", "rounds", "seconds", "rounds/s", "ms/round", "vs first", "200-round run", "vs 60 s goal"]
    table = [header]
    for row in rows:
        table.append([row["case"], str(row["rounds"]), f"{row['seconds']:.2f}", f"{row['rounds_per_s']:.2f}",
                      f"{row['ms_per_round']:.1f}", f"{row['seconds'] / base:.2f}x", f"{row['projected_200_s']:.1f} s",
                      f"{row['projected_200_s'] / GOAL_SECONDS:.2f}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, line in enumerate(table):
        cells = zip(line, widths, strict=True)
        print("  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(cells)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(json.dumps({"benchmark": "simulator", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(), "rows": rows}))


if __name__ == "__main__":
    main()
