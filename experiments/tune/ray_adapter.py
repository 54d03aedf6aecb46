"""The one module that imports Ray: it runs the sweeps of `experiments/tune/` on Ray Tune.

Local by default (`ray.init(num_cpus=...)`, no dashboard), a running cluster with `address`. Results and
checkpoints go under `storage/name` (any path Ray accepts; shared storage on a real cluster); running the
same command again resumes an interrupted sweep from there. Ray 2.60 API: `tune.report` with a
`tune.Checkpoint`, `tune.RunConfig`, `tune.get_context`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from experiments.tune.model_sweep import SPACE, ModelSweep, train_trial

METRIC = "val_loss"


@dataclass(frozen=True)
class SweepResult:
    table: pd.DataFrame  # one row per trial: parameters, epochs run, last and best validation loss
    best_params: dict[str, Any]
    best_bundle: Path  # the best trial's bundle, copied out of Ray's storage
    path: Path  # where Ray keeps the experiment (resumable)


def start(*, address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address`, or start a local Ray with `num_cpus` (reuses a running session)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def _space() -> dict[str, Any]:
    space: dict[str, Any] = {}
    for key, values in SPACE.items():
        if isinstance(values, tuple) and values[0] == "loguniform":
            space[key] = tune.loguniform(values[1], values[2])
        else:
            space[key] = tune.choice(values)
    return space


def _model_trainable(params: dict[str, Any], sweep: ModelSweep) -> None:
    losses: list[float] = []

    def report(epoch: int, row: dict[str, float]) -> None:
        losses.append(row["loss"])
        if epoch + 1 < sweep.epochs:  # the last epoch is reported below, with the bundle
            tune.report({METRIC: row["loss"], "epoch": epoch + 1})

    with tempfile.TemporaryDirectory() as folder:
        bundle_dir = Path(folder) / "bundle"
        train_trial(params, sweep, bundle_dir, report)
        shutil.rmtree(bundle_dir / "checkpoints", ignore_errors=True)  # the bundle holds the best weights
        tune.report({METRIC: losses[-1], "epoch": len(losses)},
                    checkpoint=tune.Checkpoint.from_directory(str(bundle_dir)))


def run_model_sweep(sweep: ModelSweep, *, out: Path, storage: Path, name: str = "model_sweep",
                    address: str | None = None, num_cpus: int | None = None, max_concurrent: int = 2
                    ) -> SweepResult:
    """Run (or resume) the model sweep with ASHA on the validation loss; copy the best bundle to out/best_bundle."""
    start(address=address, num_cpus=num_cpus)
    storage = storage.resolve()
    path = storage / name
    trainable = tune.with_parameters(_model_trainable, sweep=sweep)
    trainable = tune.with_resources(trainable, {"cpu": 1})
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=sweep.epochs, grace_period=sweep.grace_epochs,
                                  reduction_factor=2)
        tuner = tune.Tuner(
            trainable, param_space=_space(),
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=scheduler, num_samples=sweep.samples,
                                        max_concurrent_trials=max_concurrent,
                                        search_alg=BasicVariantGenerator(random_state=sweep.seed)),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0))
    grid = tuner.fit()
    rows, finished = [], []
    for result in (grid[i] for i in range(len(grid))):
        history, config = result.metrics_dataframe, result.config
        if history is None or config is None or METRIC not in history:
            continue  # a trial that errored before its first report
        best_loss = float(history[METRIC].min())
        rows.append({**{k: config.get(k) for k in SPACE}, "epochs": int(history["epoch"].max()),
                     "val_loss": float(history[METRIC].iloc[-1]), "best_val_loss": best_loss,
                     "finished": result.checkpoint is not None, "path": result.path})
        if result.checkpoint is not None:
            finished.append((best_loss, config, result.checkpoint))
    if not finished:
        raise RuntimeError(f"model sweep {path}: no trial finished; the trial logs are there")
    table = pd.DataFrame(rows).sort_values("best_val_loss").reset_index(drop=True)
    _, best_config, checkpoint = min(finished, key=lambda item: item[0])
    out.mkdir(parents=True, exist_ok=True)
    target = out / "best_bundle"
    shutil.rmtree(target, ignore_errors=True)
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, target)
    table.to_csv(out / "trials.csv", index=False)
    return SweepResult(table=table, best_params={k: best_config[k] for k in SPACE}, best_bundle=target, path=path)
