"""Run the closed loop end to end into one folder: logs -> models -> plan -> evaluation -> report.

    ecorank loop demo --out runs/demo          # or a path to a loop config .toml
    ecorank demo                               # the same, with the demo config

Output folder:
    report.md           the report: headline table, goals, models, plots, per-scenario tables
    plots/*.png         the report's plots
    manifest.json       the resolved config, seeds, package versions, git sha, timings, model metrics
    config.toml         the loop config file as run (plus the overrides, in the manifest)
    runs.parquet        one row per (scenario, policy, seed): run metrics, gmv_rel
    rounds.parquet      one row per (scenario, policy, seed, round)
    accounts.parquet    each run's final account snapshot
    summary.csv         per (scenario, policy, metric): mean, std, paired bootstrap 95% CI vs P0
    sweep.parquet       the fairness-strength sweep, one row per (scenario, family, value, seed)
    goals.csv           every goal, what was measured, met or not
    logs/ models/ plans/  the impressions, the trained bundles and the exported traffic plan
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from experiments.config import ConfigError
from experiments.loop.config import LoopConfig
from experiments.loop.evaluate import Evaluation, check_loop, evaluate, plan_tasks
from experiments.loop.pipeline import Trained, prepare, scenario_config
from experiments.loop.plots import plot_all
from experiments.loop.report import Goal, check_goals, headline_text, write_report
from experiments.simulator.runner import git_sha, package_versions


@dataclass(frozen=True)
class LoopResult:
    out: Path
    trained: Trained
    evaluation: Evaluation
    goals: list[Goal]
    headline: str
    manifest: dict[str, Any]


def worker_setup() -> None:
    """Each simulation worker: one torch thread (the workers are the parallelism), freed memory kept."""
    import torch

    from serving.memory import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()


def run_loop(loop: LoopConfig, out: Path, *, config_path: Path | None = None, overrides: Sequence[str] = (),
             command: Sequence[str] = (), progress: bool = True) -> LoopResult:
    """The whole loop into `out` (created; an existing loop output there is replaced)."""
    import torch

    threads = torch.get_num_threads()  # worker_setup may run in this process (jobs = 1); restored at the end
    try:
        return _run_loop(loop, out, config_path=config_path, overrides=overrides, command=command, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _run_loop(loop: LoopConfig, out: Path, *, config_path: Path | None, overrides: Sequence[str],
              command: Sequence[str], progress: bool) -> LoopResult:
    started = time.time()
    check_loop(loop)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("logs", "models", "plans", "plots"):
        shutil.rmtree(out / stale, ignore_errors=True)
    timings: dict[str, float] = {}
    log_rounds = len(loop.scenarios) * len(loop.logging.seeds) * loop.logging.rounds
    with tqdm(total=log_rounds, desc="1/4 log impressions", unit="round", disable=not progress, leave=False) as bar:
        step = time.perf_counter()
        trained = prepare(loop, out, progress=progress, on_progress=_updater(bar), initializer=worker_setup)
        timings["log_train_plan"] = time.perf_counter() - step
    plan = plan_tasks(loop, trained)
    with tqdm(total=plan.rounds, desc="3/4 evaluate policies", unit="round", disable=not progress,
              leave=False) as bar:
        step = time.perf_counter()
        evaluation = evaluate(loop, plan, on_progress=_updater(bar), initializer=worker_setup)
        timings["evaluate"] = time.perf_counter() - step
    if config_path is not None and config_path.resolve() != (out / "config.toml").resolve():
        shutil.copyfile(config_path, out / "config.toml")
    manifest: dict[str, Any] = {
        "tool": "ecorank loop",
        "name": loop.name,
        "command": list(command),
        "command_line": " ".join(command) if command else f"ecorank loop {config_path or loop.name} --out {out}",
        "config_file": str(config_path) if config_path else None,
        "overrides": list(overrides),
        "config": loop.model_dump(),
        "evaluation_seeds": loop.seeds,
        "logging_seeds": loop.logging.seeds,
        "seed_streams": "numpy SeedSequence(seed, spawn_key=(stream, round + 1)) per stream and round; every "
                        "policy of a scenario meets the same worlds (common random numbers)",
        "log_rows": trained.log_rows,
        "served_model": str(trained.served.relative_to(out)),
        "plan": str(trained.plan.relative_to(out)),
        "plan_creators": trained.plan_creators,
        "model_metrics": trained.metrics,
        "simulations": len(plan.tasks) + len(loop.scenarios) * len(loop.logging.seeds),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "packages": {**package_versions(), **_ml_versions()},
    }
    # the report quotes the time to here; the report step's own seconds go to timings_seconds only, so that
    # `ecorank report` rewrites the same report.md from the same files
    manifest.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    wall_seconds=round(time.time() - started, 2))
    step = time.perf_counter()
    save_evaluation(evaluation, out)
    goals = write_report_files(out, loop, evaluation, manifest)
    timings["report"] = time.perf_counter() - step
    manifest["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return LoopResult(out=out, trained=trained, evaluation=evaluation, goals=goals,
                      headline=headline_text(evaluation), manifest=manifest)


def save_evaluation(evaluation: Evaluation, out: Path) -> None:
    evaluation.runs.to_parquet(out / "runs.parquet", index=False)
    evaluation.rounds.to_parquet(out / "rounds.parquet", index=False)
    evaluation.accounts.to_parquet(out / "accounts.parquet", index=False)
    evaluation.sweep.to_parquet(out / "sweep.parquet", index=False)
    evaluation.summary.to_csv(out / "summary.csv", index=False)


def load_evaluation(out: Path) -> Evaluation:
    return Evaluation(rounds=pd.read_parquet(out / "rounds.parquet"),
                      accounts=pd.read_parquet(out / "accounts.parquet"), runs=pd.read_parquet(out / "runs.parquet"),
                      summary=pd.read_csv(out / "summary.csv"), sweep=pd.read_parquet(out / "sweep.parquet"))


def write_report_files(out: Path, loop: LoopConfig, evaluation: Evaluation, manifest: dict[str, Any]) -> list[Goal]:
    """goals.csv, plots/ and report.md from an evaluation (the manifest supplies models, timings, git)."""
    goals = check_goals(evaluation)
    pd.DataFrame([asdict(g) for g in goals]).to_csv(out / "goals.csv", index=False)
    burn_in = scenario_config(loop, loop.scenarios[0]).run.burn_in
    plot_all(rounds=evaluation.rounds, accounts=evaluation.accounts, runs=evaluation.runs, sweep=evaluation.sweep,
             out=out / "plots", burn_in=burn_in)
    (out / "report.md").write_text(write_report(loop, evaluation, goals, manifest=manifest,
                                                model_metrics=manifest["model_metrics"],
                                                command=manifest["command_line"]))
    return goals


def rereport(out: Path) -> tuple[list[Goal], str]:
    """Redraw the plots and rewrite goals.csv and report.md of a finished loop folder from its files, without
    simulating again (after a change to the report or the goals); returns the goals and the headline."""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{out}: received a folder without manifest.json; expected the output folder of "
                          "`ecorank loop` or `ecorank demo`")
    manifest = json.loads(manifest_path.read_text())
    loop = LoopConfig.model_validate(manifest["config"])
    manifest.setdefault("command_line", " ".join(manifest.get("command", [])) or f"ecorank loop {loop.name}")
    evaluation = load_evaluation(out)
    goals = write_report_files(out, loop, evaluation, manifest)
    return goals, headline_text(evaluation)


def _updater(bar: tqdm[Any]) -> Callable[[int], None]:
    def update(rounds: int) -> None:
        bar.update(rounds)

    return update


def _ml_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in ("torch", "cvxpy", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
