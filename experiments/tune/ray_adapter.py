"""The one module that imports Ray: it runs the sweeps of `experiments/tune/` on Ray Tune.

The model sweep (`run_model_sweep`) searches at random with ASHA stopping on the validation loss; the policy
sweep (`run_policy_sweep`) is a multi-objective Optuna search (TPE) over GMV, exposure Gini, complaint rate
and risk share. Local by default (`ray.init(num_cpus=...)`, no dashboard), a running cluster with `address`.
Results and checkpoints go under `storage/name` (any path Ray accepts; shared storage on a real cluster); running the
same command again resumes an interrupted sweep from there. Ray 2.60 API: `tune.report` with a
`tune.Checkpoint`, `tune.RunConfig`, `tune.get_context`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from tqdm import tqdm

from experiments.tune.model_sweep import SPACE, ModelSweep, train_trial

if TYPE_CHECKING:  # the simulator and matplotlib load only when a policy sweep runs
    from experiments.tune.policy_sweep import PolicySweep

METRIC = "val_loss"


@dataclass(frozen=True)
class SweepResult:
    table: pd.DataFrame  # one row per trial: parameters, epochs run, last and best validation loss
    best_params: dict[str, Any]
    best_bundle: Path  # the best trial's bundle, copied out of Ray's storage
    path: Path  # where Ray keeps the experiment (resumable)


def start(*, address: str | None = None, num_cpus: int | None = None, min_cpus: int = 0) -> None:
    """Connect to `address`, or start a local Ray with `num_cpus` logical CPUs (default: the cores, at least
    `min_cpus`); reuses a running session."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's newer console output prints a configuration box and result paths even with verbose=0; the
    # classic reporter honours verbose=0. The sweeps show their own progress bar and tables.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        if num_cpus is None and min_cpus:
            num_cpus = max(os.cpu_count() or 1, min_cpus)
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def _space(space: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-data search space -> Tune's: a list is a choice, ("uniform"|"loguniform", low, high) a range."""
    tuned: dict[str, Any] = {}
    for key, values in space.items():
        if isinstance(values, tuple) and values[0] == "loguniform":
            tuned[key] = tune.loguniform(values[1], values[2])
        elif isinstance(values, tuple) and values[0] == "uniform":
            tuned[key] = tune.uniform(values[1], values[2])
        else:
            tuned[key] = tune.choice(values)
    return tuned


class _Progress(tune.Callback):
    """A progress bar of finished trials (Tune's own reporter is off: verbose=0)."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc = total, desc
        self.bar: tqdm[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the run config with the sweep (tuner.pkl); a live bar holds a stream and would not restore
        return {"total": self.total, "desc": self.desc, "bar": None}

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        self.bar = tqdm(total=self.total, desc=self.desc, unit="trial", leave=False)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _fit(trainable: Any, *, path: Path, fresh: Callable[[], tune.Tuner]) -> tune.ResultGrid:
    """Resume the sweep kept at `path` (errored trials are retried), or start it with `fresh()`."""
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    else:
        tuner = fresh()
    return tuner.fit()


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

    def fresh() -> tune.Tuner:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=sweep.epochs, grace_period=sweep.grace_epochs,
                                  reduction_factor=2)
        return tune.Tuner(
            trainable, param_space=_space(SPACE),
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=scheduler, num_samples=sweep.samples,
                                        max_concurrent_trials=max_concurrent,
                                        search_alg=BasicVariantGenerator(random_state=sweep.seed)),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                      callbacks=[_Progress(sweep.samples, "model sweep")]))

    grid = _fit(trainable, path=path, fresh=fresh)
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


def _policy_trainable(params: dict[str, Any], sweep: PolicySweep) -> None:
    from experiments.tune.policy_sweep import evaluate_trial

    tune.report(evaluate_trial(params, sweep))


def run_policy_sweep(sweep: PolicySweep, *, storage: Path, name: str = "policy_sweep",
                     address: str | None = None, num_cpus: int | None = None, max_concurrent: int = 2
                     ) -> tuple[pd.DataFrame, Path]:
    """Run (or resume) the multi-objective policy sweep; (one row per finished trial, where Ray keeps it).

    The first trial is the base policy's point when it lies in the space; TPE's first ten trials are drawn at
    random from the seed, later ones from the results so far (their order depends on `max_concurrent`).
    """
    from experiments.tune import policy_sweep

    start(address=address, num_cpus=num_cpus)
    storage = storage.resolve()
    path = storage / name
    trainable = tune.with_resources(tune.with_parameters(_policy_trainable, sweep=sweep), {"cpu": 1})
    base = sweep.base_point()

    def fresh() -> tune.Tuner:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study: the sweep has a progress bar
        search = OptunaSearch(metric=list(policy_sweep.OBJECTIVES), mode=list(policy_sweep.OBJECTIVES.values()),
                              points_to_evaluate=[base] if base else None, seed=sweep.seed)
        return tune.Tuner(
            trainable, param_space=_space(policy_sweep.SPACE),
            tune_config=tune.TuneConfig(num_samples=sweep.samples, max_concurrent_trials=max_concurrent,
                                        search_alg=search),
            run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                      callbacks=[_Progress(sweep.samples, "policy sweep")]))

    grid = _fit(trainable, path=path, fresh=fresh)
    rows = []
    for result in (grid[i] for i in range(len(grid))):
        history, config = result.metrics_dataframe, result.config
        if history is None or config is None or history.empty:
            continue  # a trial that errored before its report
        last = history.iloc[-1]
        trial_id = str(last["trial_id"])
        rows.append({"trial": _trial_number(result.path, trial_id), "trial_id": trial_id,
                     **{k: float(config[k]) for k in policy_sweep.SPACE},
                     **{k: float(last[k]) for k in policy_sweep.OBJECTIVES}, "path": result.path})
    if not rows:
        raise RuntimeError(f"policy sweep {path}: no trial finished; the trial logs are there")
    # creation order, which a restored grid does not keep
    return pd.DataFrame(rows).sort_values(["trial", "trial_id"]).reset_index(drop=True), path


def _trial_number(folder: str, trial_id: str) -> int:
    """The trial's creation number (1, 2, ...), read from its folder name `<trainable>_<id>_<n>_<params>_<date>`."""
    _, _, tail = Path(folder).name.partition(f"_{trial_id}_")
    number = tail.split("_", 1)[0]
    return int(number) if number.isdigit() else 0
