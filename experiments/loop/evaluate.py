"""Steps 4-5 of the closed loop: every policy on every scenario and seed, paired CIs against P0, the sweep.

All learned policies rank with the trained model's heads (`policies.heads_bundle`), so what differs
between them is the ranking and fairness logic, not the quality of their estimates; ecorank goes through
the serving core itself. The oracle ranks on ground truth (a reference, never a contender) and random is
the floor. Every (policy, seed) pair of a scenario meets the same world: common random numbers, so the
comparison against P0 is paired per seed. The sweep re-runs the fairness-aware policies at several
strengths on the sweep scenarios and seeds, for the Pareto plot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.config import ConfigError
from experiments.loop.config import REFERENCE, Knob, LoopConfig
from experiments.loop.pipeline import Trained, scenario_config
from experiments.simulator.measure import SUMMARY_METRICS
from experiments.simulator.runner import Progress, RunResult, SimTask, simulate_many
from experiments.summary import add_gmv_relative, summarize

METRICS = ["gmv_rel", *SUMMARY_METRICS]


@dataclass(frozen=True)
class Evaluation:
    rounds: pd.DataFrame  # scenario, policy, seed, round, round metrics
    accounts: pd.DataFrame  # final snapshot: scenario, policy, seed, account, operator, type, exposure, ...
    runs: pd.DataFrame  # scenario, policy, seed, run metrics, gmv_rel, seconds
    summary: pd.DataFrame  # scenario, policy, metric, mean, std, n_seeds, delta, ci_low, ci_high (vs P0)
    sweep: pd.DataFrame  # scenario, family, knob, value, seed, run metrics, gmv_rel


@dataclass(frozen=True)
class _Label:
    scenario: str
    policy: str
    knob: Knob | None = None
    value: float = float("nan")


def sweep_overrides(knob: Knob, value: float, base: list[str]) -> dict[str, Any]:
    """The scenario overrides that set one swept value: a fairness-policy key for ecorank, else a scenario key."""
    if knob.family == "ecorank" and not knob.key.startswith("policies."):
        return {"policies.ecorank_overrides": [*base, f"{knob.key}={value!r}"]}
    return {knob.key: value}


def swept_points(loop: LoopConfig) -> Iterator[tuple[str, Knob, float, dict[str, Any]]]:
    """(scenario, knob, value, the scenario overrides that set it) for every point of the sweep."""
    for scenario in loop.sweep.scenarios:
        base = list(scenario_config(loop, scenario).policies.ecorank_overrides)
        for knob in loop.sweep.knobs:
            for value in knob.values:
                yield scenario, knob, value, sweep_overrides(knob, value, base)


def check_loop(loop: LoopConfig) -> None:
    """Build every scenario config and swept fairness policy now, so a bad value fails before any work."""
    from experiments.policies import make_policy
    from fairness.policy import load_policy

    for scenario in loop.scenarios:
        config = scenario_config(loop, scenario)
        for policy in loop.policies:
            make_policy(policy, config)
    for scenario, knob, value, overrides in swept_points(loop):
        try:
            config = scenario_config(loop, scenario, overrides)
            make_policy(knob.family, config)
            load_policy(config.policies.ecorank_policy, overrides=config.policies.ecorank_overrides)
        except ConfigError as err:
            raise ConfigError(f"sweep knob {knob.family} {knob.key}={value!r} on {scenario}: received a value the "
                              f"policy rejects; fix sweep.knobs in the loop config.\n{err}") from None


@dataclass(frozen=True)
class Plan:
    """Every simulation of step 4 and the sweep, with what each one is."""

    tasks: list[SimTask]
    labels: list[_Label]

    @property
    def rounds(self) -> int:
        return sum(t.config.run.rounds for t in self.tasks)


def plan_tasks(loop: LoopConfig, trained: Trained) -> Plan:
    heads = {"policies.heads_bundle": str(trained.served)}
    tasks: list[SimTask] = []
    labels: list[_Label] = []
    for scenario in loop.scenarios:
        config = scenario_config(loop, scenario, heads)
        for policy in loop.policies:
            for seed in loop.seeds:
                tasks.append(SimTask(config, policy, seed))
                labels.append(_Label(scenario, policy))
    for scenario, knob, value, overrides in swept_points(loop):
        config = scenario_config(loop, scenario, {**overrides, **heads})
        for seed in loop.sweep_seeds:
            tasks.append(SimTask(config, knob.family, seed))
            labels.append(_Label(scenario, knob.family, knob, value))
    return Plan(tasks, labels)


def evaluate(loop: LoopConfig, plan: Plan, *, on_progress: Progress | None = None,
             initializer: Callable[[], None] | None = None) -> Evaluation:
    """Run the planned simulations (`plan_tasks`) and gather their frames, CIs and sweep."""
    tasks, labels = plan.tasks, plan.labels
    results = simulate_many(tasks, jobs=loop.jobs, on_progress=on_progress, initializer=initializer)
    main = [(label, r) for label, r in zip(labels, results, strict=True) if label.knob is None]
    swept = [(label, r) for label, r in zip(labels, results, strict=True) if label.knob is not None]
    rounds = pd.concat([_tagged(r.rounds, label) for label, r in main], ignore_index=True)
    accounts = pd.concat([_tagged(_final(r.accounts), label) for label, r in main], ignore_index=True)
    runs = pd.DataFrame([{"scenario": label.scenario, "policy": r.policy, "seed": r.seed, **r.summary,
                          "seconds": r.seconds} for label, r in main])
    runs = pd.concat([add_gmv_relative(group, baseline=REFERENCE) for _, group in runs.groupby("scenario", sort=False)],
                     ignore_index=True)
    summary = pd.concat([summarize(group.drop(columns="scenario"), metrics=METRICS, reference=REFERENCE,
                                   samples=loop.bootstrap_samples, seed=loop.seeds[0]).assign(scenario=scenario)
                         for scenario, group in runs.groupby("scenario", sort=False)], ignore_index=True)
    summary = summary[["scenario", *[c for c in summary.columns if c != "scenario"]]]
    return Evaluation(rounds=rounds, accounts=accounts, runs=runs, summary=summary, sweep=_sweep(swept, runs))


def _tagged(frame: pd.DataFrame, label: _Label) -> pd.DataFrame:
    out = frame.copy()
    out.insert(0, "scenario", label.scenario)
    return out


def _final(accounts: pd.DataFrame) -> pd.DataFrame:
    """The last snapshot of one run."""
    final: pd.DataFrame = accounts.loc[accounts["round"] == accounts["round"].max()]
    return final


def _sweep(swept: list[tuple[_Label, RunResult]], runs: pd.DataFrame) -> pd.DataFrame:
    columns = ["scenario", "family", "knob", "value", "seed", *SUMMARY_METRICS, "gmv_rel"]
    if not swept:
        return pd.DataFrame(columns=columns)
    p0 = runs.loc[runs["policy"] == REFERENCE].set_index(["scenario", "seed"])["gmv"]
    rows = []
    for label, r in swept:
        assert label.knob is not None
        base = float(p0.loc[(label.scenario, r.seed)])
        rows.append({"scenario": label.scenario, "family": label.knob.family, "knob": label.knob.key,
                     "value": label.value, "seed": r.seed, **r.summary,
                     "gmv_rel": r.summary["gmv"] / base if base > 0 else np.nan})
    return pd.DataFrame(rows, columns=columns)
