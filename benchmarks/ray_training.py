"""Distributed training on Ray Train against one process: time, and how far the results move.

    python benchmarks/ray_training.py            # S4 exploration logs of 40 rounds, 5 epochs (about 4 minutes)
    python benchmarks/ray_training.py --quick    # 12 rounds, 3 epochs (about a minute)

Data, all seeded: the simulator's S4 (tiny preset) exploration impressions, the `ecorank` schema, MMoE,
batch 256, the same split (by request, seed 0) in every run. Runs, one after another in this one process:

- single: `mtl.train.train_bundle`, the reference;
- single, reordered k: the same, on the same rows in another order (permuted with seed k). The split,
  the initial weights and the statistics are the same; only the minibatches differ. Their distance to
  the reference is what the shuffle order alone moves a result: the yardstick for the tolerance;
- Ray 2 workers: `experiments.scale.train.train_bundle_distributed` (`ecorank train --ray-workers 2`) on a
  local Ray with 3 logical CPUs (2 workers + Ray Data's read tasks), started before the clock.

Per run: wall seconds, the best validation loss, and on the test split each binary head's AUC and log loss
and the GMV head's normalized Gini. The summary gives each metric's largest distance to the reference over
the reordered runs and for the Ray run: tests/experiments/scale/test_train.py bounds the Ray run's distance
by about twice the reordered runs'. The last line is one JSON object.
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

FULL = {"rounds": 40, "epochs": 5, "reorders": 3}
QUICK = {"rounds": 12, "epochs": 3, "reorders": 3}  # the setting of tests/experiments/scale/test_train.py
BINARY_HEADS = ("prosperity", "risk", "complaint")
WORKERS = 2


def impressions(folder: Path, rounds: int) -> Path:
    from experiments.config import load_scenario
    from experiments.simulator.runner import run_experiment

    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=explore", f"run.rounds={rounds}"])
    run_experiment(config, policies=["explore"], seeds=[7], out=folder / "logs", quiet=True)
    return folder / "logs" / "impressions.parquet"


def figures(metrics: dict[str, Any]) -> dict[str, float]:
    test = metrics["test"]
    out = {"best_val_loss": float(metrics["best_value"]), "gmv_gini": float(test["gmv"]["normalized_gini"])}
    for head in BINARY_HEADS:
        out[f"{head}_auc"] = float(test[head]["auc"])
        out[f"{head}_logloss"] = float(test[head]["logloss"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows and epochs, for a smoke check")
    parser.add_argument("--address", default=None,
                        help="a running Ray to join (default: start a local one; the tests pass theirs)")
    args = parser.parse_args()
    knobs = QUICK if args.quick else FULL

    from experiments.scale.cluster import DATA_CPUS
    from experiments.scale.train import train_bundle_distributed
    from experiments.tune.ray_adapter import start
    from mtl.schema import load_schema
    from mtl.train import train_bundle
    from mtl.trainer import TrainConfig

    schema = load_schema("ecorank")
    config = TrainConfig(epochs=knobs["epochs"], batch_size=256, patience=knobs["epochs"], seed=0)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = impressions(folder, knobs["rounds"])
        table = pq.read_table(data)
        start(address=args.address, min_cpus=WORKERS + DATA_CPUS)

        def single(name: str, source: Path) -> None:
            started = time.perf_counter()
            bundle = train_bundle(data=source, schema=schema, model_name="mmoe", out=folder / name, config=config,
                                  progress=False)
            runs.append({"run": name, "seconds": time.perf_counter() - started, **figures(bundle.metrics)})

        single("single", data)
        for k in range(1, knobs["reorders"] + 1):
            reordered = folder / f"reordered-{k}.parquet"
            pq.write_table(table.take(pa.array(np.random.default_rng(k).permutation(table.num_rows))), reordered)
            single(f"single, reordered {k}", reordered)
        started = time.perf_counter()
        bundle = train_bundle_distributed(data=data, schema=schema, model_name="mmoe", out=folder / "ray",
                                          config=config, workers=WORKERS, storage=folder / "ray-storage")
        runs.append({"run": f"Ray {WORKERS} workers", "seconds": time.perf_counter() - started,
                     **figures(bundle.metrics)})

    reference, reordered, distributed = runs[0], runs[1:-1], runs[-1]
    metrics = [k for k in reference if k not in ("run", "seconds")]
    spread = {m: max(abs(r[m] - reference[m]) for r in reordered) for m in metrics}
    ray_distance = {m: abs(distributed[m] - reference[m]) for m in metrics}

    header = ["run", "seconds", *metrics]
    lines = [[r["run"], f"{r['seconds']:.1f}", *(f"{r[m]:.4f}" for m in metrics)] for r in runs]
    lines.append(["max |reordered - single|", "", *(f"{spread[m]:.4f}" for m in metrics)])
    lines.append(["|Ray - single|", "", *(f"{ray_distance[m]:.4f}" for m in metrics)])
    print(f"S4 tiny exploration logs, {table.num_rows:,} rows, {knobs['rounds']} rounds; MMoE, {knobs['epochs']} "
          f"epochs, batch 256, seed 0; {os.cpu_count()} cores")
    print_table(header, lines)
    print(json.dumps({"benchmark": "ray_training", "quick": args.quick, "cpus": os.cpu_count(),
                      "machine": platform.machine(), "python": platform.python_version(), "rows": table.num_rows,
                      **knobs, "workers": WORKERS, "runs": runs, "reordered_spread": spread,
                      "ray_distance": ray_distance}))


if __name__ == "__main__":
    main()
