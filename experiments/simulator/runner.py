"""Run experiments: every (policy, seed) pair on the same scenario, and write the run folder.

Output folder (docs/simulator.md#outputs):
    manifest.json        config, policies, seeds, git sha, package versions, command, timings
    rounds.parquet       one row per (policy, seed, round): every round metric
    accounts.parquet     account snapshots every `metrics.snapshot_every` rounds and at the end
    runs.parquet         one row per (policy, seed): the run's summary metrics
    summary.csv          per policy and metric: mean, std, paired bootstrap 95% CI vs the first policy
    rounds.png           key round metrics over time, one line per policy
    impressions.parquet  one row per shown (request, candidate) of the logged policies
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments.config import ScenarioConfig
from experiments.plots import plot_rounds
from experiments.policies import make_policy
from experiments.policies.base import Learner
from experiments.simulator import impressions as imp
from experiments.simulator.measure import DIRECTION, SUMMARY_METRICS, account_snapshot, round_metrics, run_metrics
from experiments.simulator.story import Streams, initial_world, play_round
from experiments.summary import add_gmv_relative, format_table, summarize

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RunResult:
    policy: str
    seed: int
    rounds: pd.DataFrame
    accounts: pd.DataFrame
    summary: dict[str, float]
    impressions_part: Path | None
    seconds: float


def simulate(config: ScenarioConfig, policy_name: str, seed: int, *, impressions_path: Path | None = None,
             progress: Progress | None = None) -> RunResult:
    """One run: a fresh world for `seed`, played for config.run.rounds rounds under one policy."""
    started = time.perf_counter()
    streams = Streams(seed)
    world = initial_world(config, streams)
    policy = make_policy(policy_name, config)
    writer = imp.ImpressionWriter(impressions_path) if impressions_path else None
    learner = policy if isinstance(policy, Learner) and policy.learns else None
    rounds, snapshots = [], []
    try:
        for t in range(config.run.rounds):
            record = play_round(world, config, policy, streams)
            rounds.append(round_metrics(world, config, record))
            if writer or learner:
                table = imp.impressions_table(world, config, record, policy=policy_name, seed=seed,
                                              rng=streams.at("labels", t))
                if writer:
                    writer.write(table)
                if learner:
                    learner.learn(table)
            if (t + 1) % config.metrics.snapshot_every == 0 or t == config.run.rounds - 1:
                snapshots.append(pd.DataFrame(account_snapshot(world, t)))
            if progress:
                progress(1)
    finally:
        if writer:
            writer.close()
    frame = pd.DataFrame(rounds)
    frame.insert(0, "seed", seed)
    frame.insert(0, "policy", policy_name)
    accounts = pd.concat(snapshots, ignore_index=True)
    accounts.insert(0, "seed", seed)
    accounts.insert(0, "policy", policy_name)
    return RunResult(policy=policy_name, seed=seed, rounds=frame, accounts=accounts,
                     summary=run_metrics(world, config, rounds), impressions_part=impressions_path,
                     seconds=time.perf_counter() - started)


@dataclass(frozen=True)
class Experiment:
    """Everything an experiment produced, in memory, plus where it was written."""

    out: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    table: str
    manifest: dict[str, Any]


def run_experiment(config: ScenarioConfig, *, policies: Sequence[str], seeds: Sequence[int], out: Path,
                   jobs: int = 1, quiet: bool = False, command: Sequence[str] = (),
                   overrides: Sequence[str] = ()) -> Experiment:
    """Run every (policy, seed), write the output folder, return the summary."""
    for name in policies:
        make_policy(name, config)  # fail fast on an unknown name, before any work
    out.mkdir(parents=True, exist_ok=True)
    parts_dir = out / "_impressions_parts"
    tasks = [(p, s, parts_dir / f"{p}-{s}.parquet" if _logs(config, p) else None) for p in policies for s in seeds]
    started = time.time()
    total = len(tasks) * config.run.rounds
    with tqdm(total=total, desc=f"{config.id} {config.preset}", unit="round", disable=quiet, leave=False) as bar:

        def on_progress(rounds_done: int) -> None:
            bar.update(rounds_done)

        results = simulate_many([SimTask(config, p, s, path) for p, s, path in tasks], jobs=jobs,
                                on_progress=on_progress)
    order = {(p, s): i for i, (p, s, _) in enumerate(tasks)}
    results.sort(key=lambda r: order[(r.policy, r.seed)])

    rounds = pd.concat([r.rounds for r in results], ignore_index=True)
    accounts = pd.concat([r.accounts for r in results], ignore_index=True)
    runs = pd.DataFrame([{"policy": r.policy, "seed": r.seed, **r.summary, "seconds": r.seconds} for r in results])
    reference = policies[0]
    gmv_baseline = "p0" if "p0" in policies else reference
    runs = add_gmv_relative(runs, baseline=gmv_baseline)
    metrics = ["gmv_rel", *SUMMARY_METRICS]
    summary = summarize(runs, metrics=metrics, reference=reference, samples=config.metrics.bootstrap_samples,
                        seed=int(seeds[0]))

    rounds.to_parquet(out / "rounds.parquet", index=False)
    accounts.to_parquet(out / "accounts.parquet", index=False)
    runs.to_parquet(out / "runs.parquet", index=False)
    plot_rounds(rounds, out / "rounds.png", title=f"{config.id} {config.title} ({config.preset}, {len(seeds)} seed(s))",
                burn_in=config.run.burn_in)
    summary.to_csv(out / "summary.csv", index=False)
    parts = [r.impressions_part for r in results if r.impressions_part is not None]
    impression_rows = imp.merge_parts(parts, out / "impressions.parquet")
    for part in parts:
        part.unlink()
    if parts_dir.exists():
        parts_dir.rmdir()

    manifest = build_manifest(config, policies=policies, seeds=seeds, command=command, overrides=overrides,
                              started=started, reference=reference, gmv_baseline=gmv_baseline,
                              impression_rows=impression_rows, jobs=jobs)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    table = format_table(summary, reference=reference, direction=DIRECTION)
    return Experiment(out=out, runs=runs, summary=summary, table=table, manifest=manifest)


def _logs(config: ScenarioConfig, policy: str) -> bool:
    mode = config.outputs.impressions
    return mode == "all" or (mode == "explore" and policy == "explore")


@dataclass(frozen=True)
class SimTask:
    """One run to do: a scenario config, a policy name, a seed, and where to log impressions (None: nowhere)."""

    config: ScenarioConfig
    policy: str
    seed: int
    impressions_path: Path | None = None


def simulate_many(tasks: Sequence[SimTask], *, jobs: int, on_progress: Progress | None = None,
                  initializer: Callable[[], None] | None = None) -> list[RunResult]:
    """Every task, in `jobs` spawned worker processes (in this process for jobs <= 1); results in task order.

    Workers report each round through a managed queue; the parent owns the progress bar. `initializer`
    runs once in each worker (e.g. to pin torch to one thread), or in this process when it does the work.
    """
    report = on_progress or (lambda rounds: None)
    if jobs <= 1 or len(tasks) == 1:
        if initializer is not None:
            initializer()  # the same setup as a worker's, so results do not depend on the number of jobs
        return [simulate(t.config, t.policy, t.seed, impressions_path=t.impressions_path, progress=report)
                for t in tasks]
    # Spawned, not forked: torch and BLAS thread pools must not cross a fork.
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=initializer) as pool:
            futures = [pool.submit(_simulate_reporting, t, queue) for t in tasks]
            pending = set(futures)
            while pending:
                while not queue.empty():
                    report(queue.get())
                pending = {f for f in pending if not f.done()}
                time.sleep(0.05)
            while not queue.empty():
                report(queue.get())
            return [f.result() for f in futures]


def _simulate_reporting(task: SimTask, queue: Any) -> RunResult:
    return simulate(task.config, task.policy, task.seed, impressions_path=task.impressions_path, progress=queue.put)


def build_manifest(config: ScenarioConfig, *, policies: Sequence[str], seeds: Sequence[int], command: Sequence[str],
                   overrides: Sequence[str], started: float, reference: str, gmv_baseline: str,
                   impression_rows: int, jobs: int) -> dict[str, Any]:
    return {
        "tool": "ecorank simulate",
        "scenario": {"id": config.id, "name": config.name, "title": config.title, "preset": config.preset},
        "policies": list(policies),
        "reference_policy": reference,
        "gmv_baseline": gmv_baseline,
        "seeds": [int(s) for s in seeds],
        "seed_streams": "numpy SeedSequence(seed, spawn_key=(stream, round + 1)) per stream and round",
        "overrides": list(overrides),
        "command": list(command),
        "jobs": jobs,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 3),
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "outputs": {"rounds": "rounds.parquet", "accounts": "accounts.parquet", "runs": "runs.parquet",
                    "summary": "summary.csv", "plot": "rounds.png", "impressions": "impressions.parquet",
                    "impression_rows": impression_rows},
        "config": config.to_dict(),
    }


def git_sha() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("ecorank", "numpy", "pandas", "pyarrow", "pydantic", "tqdm"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["numpy_runtime"] = np.__version__
    return versions
