"""Steps 1-3 of the closed loop: log impressions, train the multi-task models, build a traffic plan.

1. Every scenario of the loop is played under the exploration policy (Plackett-Luce around the P1 blend,
   propensities logged) on the logging seeds, which are never evaluation seeds; the impressions go to
   `logs/<scenario>.parquet`.
2. Each configured model (MMoE, PLE, ...) is trained on all of them, calibrated (isotonic, on the
   validation split) and saved as a bundle under `models/<name>/`, with its test metrics.
3. The served model predicts the four heads of the logged impressions of the last scenario's first
   logging seed, and the planner turns them into a traffic plan (`plans/v000001/`). The folder holds
   what `ecorank serve --bundle models/mmoe --plan plans/v000001` serves. Inside an evaluation run the
   ecorank policy plans again, from the same model's predictions on what it sees, every
   `planner.horizon_rounds` rounds: the worlds it is evaluated in are not the logged ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from experiments.config import ScenarioConfig, load_scenario
from experiments.loop.config import LoopConfig
from experiments.simulator.runner import Progress, SimTask, simulate_many
from fairness.planner import plan_traffic, save_plan
from fairness.policy import load_policy


@dataclass(frozen=True)
class Trained:
    """What steps 1-3 produced."""

    logs: Path  # folder of <scenario>.parquet
    log_rows: int
    models: dict[str, Path]  # model name -> bundle folder
    metrics: dict[str, dict[str, Any]]  # model name -> test metrics per head
    served: Path  # the bundle the learned policies rank with
    plan: Path
    plan_creators: int


def scenario_config(loop: LoopConfig, scenario: str, extra: dict[str, Any] | None = None) -> ScenarioConfig:
    """A scenario at the loop's preset with the loop's overrides, then `extra` (dotted keys)."""
    from fairness.toml_config import parse_overrides

    overrides = {**parse_overrides(loop.overrides), **(extra or {})}
    return load_scenario(scenario, preset=loop.preset, overrides=overrides)


def log_impressions(loop: LoopConfig, out: Path, *, on_progress: Progress | None = None,
                    initializer: Callable[[], None] | None = None) -> tuple[Path, int]:
    """Step 1: exploration runs of every scenario on the logging seeds -> logs/<scenario>.parquet."""
    logs = out / "logs"
    parts = logs / "_parts"
    parts.mkdir(parents=True, exist_ok=True)
    tasks = [SimTask(scenario_config(loop, s, {"run.rounds": loop.logging.rounds}), "explore", seed,
                     parts / f"{s}-{seed}.parquet") for s in loop.scenarios for seed in loop.logging.seeds]
    simulate_many(tasks, jobs=loop.jobs, on_progress=on_progress, initializer=initializer)
    from experiments.simulator.impressions import merge_parts

    rows = 0
    for scenario in loop.scenarios:
        files = [t.impressions_path for t in tasks if t.config.id == scenario and t.impressions_path is not None]
        rows += merge_parts(files, logs / f"{scenario}.parquet")
    shutil.rmtree(parts)
    return logs, rows


def train_models(loop: LoopConfig, logs: Path, out: Path, *, progress: bool) -> tuple[dict[str, Path], dict[str, Any]]:
    """Step 2: every configured model trained on all logs, calibrated, saved as a bundle with test metrics."""
    from mtl.schema import load_schema
    from mtl.train import train_bundle
    from mtl.trainer import TrainConfig

    t = loop.training
    models: dict[str, Path] = {}
    metrics: dict[str, Any] = {}
    for name in t.models:
        folder = out / "models" / name
        bundle = train_bundle(data=logs, schema=load_schema("ecorank"), model_name=name, out=folder,
                              config=TrainConfig(epochs=t.epochs, batch_size=t.batch_size, patience=t.patience,
                                                 lr=t.learning_rate, seed=t.seed), progress=progress)
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the bundle holds the best weights
        models[name], metrics[name] = folder, bundle.metrics.get("test", {})
    return models, metrics


def build_plan(loop: LoopConfig, logs: Path, served: Path, out: Path) -> tuple[Path, int]:
    """Step 3: the served model's predictions on one logged world -> a saved traffic plan (version 1)."""
    from mtl.bundle import load_bundle
    from serving.default import plan_inputs_from_impressions

    scenario, seed = loop.scenarios[-1], loop.logging.seeds[0]
    table = pq.read_table(logs / f"{scenario}.parquet")
    table = table.filter(pc.equal(table["seed"], seed))
    bundle = load_bundle(served)
    heads = bundle.predict(table)
    policy = load_policy(scenario_config(loop, scenario).policies.ecorank_policy)
    inputs = plan_inputs_from_impressions(table.to_pandas(), policy, heads=heads)
    plan_dir = save_plan(plan_traffic(inputs, policy, version=1), out / "plans")
    return plan_dir, len(np.unique(inputs.creator))


def prepare(loop: LoopConfig, out: Path, *, progress: bool = True, on_progress: Progress | None = None,
            initializer: Callable[[], None] | None = None) -> Trained:
    """Steps 1-3 into `out`."""
    logs, rows = log_impressions(loop, out, on_progress=on_progress, initializer=initializer)
    models, metrics = train_models(loop, logs, out, progress=progress)
    served = models[loop.training.serve]
    plan, creators = build_plan(loop, logs, served, out)
    return Trained(logs=logs, log_rows=rows, models=models, metrics=metrics, served=served, plan=plan,
                   plan_creators=creators)
