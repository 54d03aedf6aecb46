"""Batch scoring throughput: `ecorank score` in this process against `ecorank score --ray` (Ray Data actors).

    python benchmarks/ray_scoring.py            # 200,000 and 1,000,000 candidates (about 3-5 minutes on 2 cores)
    python benchmarks/ray_scoring.py --quick    # 20,000 candidates, one actor per core, no warm-up (a smoke check)

Set-up, all seeded: the 64-dense-feature MMoE and the traffic plan of benchmarks/serving.py, and a folder
of 8 Parquet files of `serving.batch.synthetic_candidates` (requests of 100 candidates, rows in random
order, so every request spans files). Per size, one after another in this one process, so the ratios
compare on a noisy machine:

- in-process: `serving.batch.score_parquet` with 1 torch thread: read the folder, rank every request
  (model, blend, prices, allocation: RankingCore.rank, many requests per call), write one Parquet file;
- Ray Data, N actors (1 and the number of cores): `experiments.scale.score.score_parquet_ray` on a local
  Ray with cores + 1 logical CPUs, as `ecorank score --ray` starts it (each actor holds a CPU slot and Ray
  Data's tasks need one more): read in parallel, hash-shuffle whole requests into blocks, one RankingCore
  per actor (1 torch thread each), write in parallel. Ray is started, and warmed on a small folder, before
  the clock.

Times are wall-clock seconds from the folder to the written scores; candidates/s is candidates over that.
Every Ray run's scores are compared with the in-process scores: the same candidates, weights within
MATCH_WEIGHT, heads and utility within MATCH_RELATIVE (float32 noise: the two runs batch differently).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# As a script, this file's folder is sys.path[0], and benchmarks/mtl.py (and serving.py) would shadow the
# packages of the same name: put the repository root first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.table import print_table

SIZES = [200_000, 1_000_000]
QUICK_SIZES = [20_000]
PER_REQUEST = 100
FILES = 8
BATCH_SIZE = 8_192  # `ecorank score`'s default
MATCH_WEIGHT = 1e-6
# float32 noise, amplified where a head's calibration is steep: 1.0e-4 measured at 1e6 candidates (RESULTS.md)
MATCH_RELATIVE = 1e-3
KEYS = [("request_id", "ascending"), ("item_id", "ascending")]


def write_candidates(folder: Path, plan_dir: Path, feature_names: list[str], n: int, seed: int) -> Path:
    from fairness.planner import load_plan
    from serving.batch import synthetic_candidates

    table = synthetic_candidates(load_plan(plan_dir).creators, feature_names, requests=n // PER_REQUEST,
                                 per_request=PER_REQUEST, rng=np.random.default_rng(seed))
    out = folder / f"candidates-{n}"
    out.mkdir()
    step = -(-table.num_rows // FILES)
    for k in range(FILES):
        pq.write_table(table.slice(k * step, step), out / f"part-{k}.parquet")
    return out


def sorted_scores(folder: Path) -> pa.Table:
    return pq.read_table(folder).sort_by(KEYS)


def differences(a: pa.Table, b: pa.Table) -> dict[str, float]:
    """Largest |a - b| of the weights, and the largest difference relative to max(|b|, 0.01) of the heads and
    the utility (the model runs in float32 and the two runs batch differently: they agree to float32 noise)."""
    from fairness.policy import HEADS

    assert a.column("item_id").equals(b.column("item_id"))
    assert a.column("request_id").equals(b.column("request_id"))
    relative = max(float(np.max(np.abs(a.column(c).to_numpy() - b.column(c).to_numpy())
                                / np.maximum(np.abs(b.column(c).to_numpy()), 1e-2))) for c in (*HEADS, "utility"))
    weight = float(np.max(np.abs(a.column("weight").to_numpy() - b.column("weight").to_numpy())))
    return {"max_weight_difference": weight, "max_relative_difference": relative}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small size, for a smoke check")
    parser.add_argument("--address", default=None,
                        help="a running Ray to join (default: start a local one; the tests pass theirs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from benchmarks.serving import build_artifacts
    from experiments.scale.score import RayScoring, score_parquet_ray
    from experiments.tune.ray_adapter import start
    from fairness.planner import load_plan
    from fairness.policy import load_policy
    from mtl.bundle import load_bundle
    from serving.batch import BatchScorer, EngineParts, score_parquet

    torch.set_num_threads(1)
    cpus = os.cpu_count() or 1
    actor_counts = [cpus] if args.quick else sorted({1, cpus})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bundle_dir, plan_dir = build_artifacts(folder)
        parts = EngineParts(bundle=load_bundle(bundle_dir), policy=load_policy(), plan=load_plan(plan_dir))
        names = [d.name for d in parts.bundle.schema.dense]
        scorer = BatchScorer(parts.core(), batch_size=BATCH_SIZE)
        start(address=args.address, min_cpus=RayScoring(parts=parts, workers=max(actor_counts)).cpus_needed)
        warm = write_candidates(folder, plan_dir, names, 2_000, args.seed)
        for actors in [] if args.quick else actor_counts:  # untimed: Ray starts its workers, which import the engine
            score_parquet_ray(warm, folder / f"warm-{actors}", RayScoring(parts=parts, workers=actors))
        for n in QUICK_SIZES if args.quick else SIZES:
            data = write_candidates(folder, plan_dir, names, n, args.seed)
            summary = score_parquet(data, folder / f"here-{n}", scorer)
            here = sorted_scores(folder / f"here-{n}")
            row: dict[str, Any] = {"candidates": n, "requests": n // PER_REQUEST, "here_seconds": summary.seconds,
                                   "here_per_s": n / summary.seconds, "ray": []}
            for actors in actor_counts:
                out = folder / f"ray-{n}-{actors}"
                started = time.perf_counter()
                score_parquet_ray(data, out, RayScoring(parts=parts, workers=actors, batch_size=BATCH_SIZE))
                seconds = time.perf_counter() - started
                gaps = differences(sorted_scores(out), here)
                row["ray"].append({"actors": actors, "seconds": seconds, "per_s": n / seconds,
                                   "over_here": summary.seconds / seconds, **gaps,
                                   "matches_here": gaps["max_weight_difference"] <= MATCH_WEIGHT
                                   and gaps["max_relative_difference"] <= MATCH_RELATIVE})
            rows.append(row)
            print(f"  {n:>10,} candidates done", flush=True)

    header = ["candidates", "requests", "in-process s", "in-process /s",
              *[f"Ray {a} actor{'s' if a > 1 else ''} {unit}" for a in actor_counts for unit in ("s", "/s")],
              *[f"Ray {a} speed-up" for a in actor_counts], "max |dw|"]
    lines = [[f"{r['candidates']:,}", f"{r['requests']:,}", f"{r['here_seconds']:.2f}", f"{r['here_per_s']:,.0f}",
              *[cell for ray in r["ray"] for cell in (f"{ray['seconds']:.2f}", f"{ray['per_s']:,.0f}")],
              *[f"{ray['over_here']:.2f}x" for ray in r["ray"]],
              f"{max(ray['max_weight_difference'] for ray in r['ray']):.1e}"] for r in rows]
    print(f"64-feature MMoE, requests of {PER_REQUEST}, {FILES} input files, 1 torch thread per scorer, "
          f"{cpus} CPUs, seed {args.seed}")
    print_table(header, lines, left=0)
    print(json.dumps({"benchmark": "ray_scoring", "quick": args.quick, "cpus": cpus, "machine": platform.machine(),
                      "python": platform.python_version(), "seed": args.seed, "per_request": PER_REQUEST,
                      "rows": rows}))


if __name__ == "__main__":
    main()
