"""The policy sweep, without Ray: its search space, one trial's simulation, the Pareto front, the chosen policy.

A trial sets blend weights and fairness knobs of the ecorank fairness policy (`SPACE`, keys of
`fairness/configs/default.toml`), plays the `ecorank` simulator policy with them on one scenario for a few
seeds, and returns four objectives averaged over the seeds, under the simulator's own metric names:
`gmv` (post-burn-in GMV, maximized), `gini_account` (window exposure Gini, minimized), `complaints_per_1k`
(complaints per 1,000 impressions, minimized) and `risk_share` (exposure share of violating items,
minimized). Every trial meets the same seeds, hence the same worlds (common random numbers): differences
between trials come from the knobs. The heads come from the simulator's observable estimator unless the
scenario names a trained bundle (`policies.heads_bundle`). `experiments/tune/ray_adapter.py` runs the trials
on Ray Tune; everything here is plain Python and runs without Ray.

Results (`write_results`): `trials.csv`, `pareto.csv` (the non-dominated trials), `pareto.png`, `sweep.json`
(what was swept, seeds included) and `policy.toml`, the chosen trial as a fairness policy file that
`fairness.policy.load_policy` and `ecorank serve --policy` accept (`export_trial` writes any other trial).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from experiments.config import ConfigError, ScenarioConfig
from experiments.loop.plots import DPI, REFERENCE_COLOR
from experiments.simulator.runner import SimTask, simulate_many
from fairness.policy import FairnessPolicy, load_policy

# The search space as plain data: ("uniform" | "loguniform", low, high) per fairness-policy key. Each knob
# moves at least one objective on S4 (checked by tests/experiments/tune/test_policy_sweep.py); the ranges
# keep every combination a valid policy (blend weights inside the default override ranges, planner floors
# summing below 1, cluster caps above the newcomer floor).
SPACE: dict[str, tuple[str, float, float]] = {
    "blend.gmv": ("uniform", 0.25, 3.0),
    "blend.prosperity": ("uniform", 0.0, 3.0),
    "blend.risk": ("uniform", 0.5, 5.0),
    "blend.complaint": ("uniform", 0.5, 5.0),
    "planner.kappa": ("uniform", 1.0, 4.0),  # anti-Matthew headroom over concave merit
    "planner.beta": ("uniform", 0.2, 1.0),  # merit exponent: lower is more concave
    "planner.cluster_cap": ("loguniform", 0.02, 0.2),
    "planner.originals_floor": ("uniform", 0.0, 0.6),
    "planner.ridge": ("uniform", 0.0, 1.0),  # 0: LP targets piled on the best clusters; > 0: spread
    "controller.gain": ("loguniform", 0.01, 0.5),  # price controller's integral gain
}
# Objective -> "max" or "min", in the order Optuna receives them.
OBJECTIVES: dict[str, str] = {"gmv": "max", "gini_account": "min", "complaints_per_1k": "min", "risk_share": "min"}
POLICY = "ecorank"


class Size(NamedTuple):
    preset: str
    rounds: int
    samples: int
    seeds: int


SMOKE = Size(preset="tiny", rounds=12, samples=4, seeds=2)  # `--smoke-test`: the whole path in seconds


@dataclass(frozen=True)
class PolicySweep:
    config: ScenarioConfig  # the scenario every trial plays (preset, rounds and heads already applied)
    seeds: tuple[int, ...]  # simulation seeds, the same for every trial
    samples: int = 24  # trials, the base policy's point included
    seed: int = 0  # the search's seed (Optuna's sampler)

    def base_policy(self) -> FairnessPolicy:
        """The fairness policy the knobs are set on: the scenario's ecorank policy with its overrides."""
        p = self.config.policies
        return load_policy(p.ecorank_policy, overrides=p.ecorank_overrides)

    def check(self) -> None:
        """Build the base policy and both corners of `SPACE` now, so a conflict fails before any simulation."""
        p = self.config.policies
        for corner in (1, 2):
            point = {key: bounds[corner] for key, bounds in SPACE.items()}
            try:
                load_policy(p.ecorank_policy, overrides=knob_overrides(point, p.ecorank_overrides))
            except ConfigError as err:
                raise ConfigError(f"the policy sweep's space conflicts with the base policy {p.ecorank_policy!r} "
                                  f"{list(p.ecorank_overrides)}; change the scenario's policies.ecorank_policy or "
                                  f"policies.ecorank_overrides:\n{err}") from None

    def base_point(self) -> dict[str, float] | None:
        """The base policy's knob values, when they all lie inside `SPACE` (then trial 1 evaluates it)."""
        data = self.base_policy().to_dict()
        point = {key: float(_dotted(data, key)) for key in SPACE}
        inside = all(low <= point[key] <= high for key, (_, low, high) in SPACE.items())
        return point if inside else None

    def describe(self) -> dict[str, Any]:
        """What was swept, for sweep.json: a finished sweep is only resumed by the same description."""
        p = self.config.policies
        return {"scenario": self.config.id, "preset": self.config.preset, "rounds": self.config.run.rounds,
                "seeds": list(self.seeds), "samples": self.samples, "search_seed": self.seed,
                "base_policy": p.ecorank_policy, "base_overrides": list(p.ecorank_overrides),
                "heads": p.heads_bundle or "observable estimator", "objectives": OBJECTIVES,
                "space": {key: list(value) for key, value in SPACE.items()}}


def knob_overrides(params: Mapping[str, Any], base: Sequence[str] = ()) -> list[str]:
    """A trial's knobs as fairness-policy overrides (after the scenario's own)."""
    return [*base, *(f"{key}={float(params[key])!r}" for key in SPACE)]


def evaluate_trial(params: Mapping[str, Any], sweep: PolicySweep) -> dict[str, float]:
    """Play `ecorank` with the trial's knobs on every seed of the sweep; the objectives' means over seeds."""
    policies = sweep.config.policies
    overrides = knob_overrides(params, policies.ecorank_overrides)
    config = sweep.config.model_copy(update={"policies": policies.model_copy(update={"ecorank_overrides": overrides})})
    runs = simulate_many([SimTask(config, POLICY, seed) for seed in sweep.seeds], jobs=1)
    return {name: _nanmean([run.summary[name] for run in runs]) for name in OBJECTIVES}


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """(n, k) objective values -> (n,) True for the rows no other row dominates.

    Row j dominates row i when it is no worse on every objective and strictly better on one, so exact
    duplicates of a front point are all kept. A row with a NaN cannot be compared and is never on the front.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(maximize):
        raise ValueError(f"values: received shape {values.shape}; expected (n, {len(maximize)}), one column per "
                         "objective in `maximize`")
    costs = np.where(np.asarray(maximize, dtype=bool), -values, values)  # (n, k), every objective minimized
    valid = np.flatnonzero(np.all(np.isfinite(costs), axis=1))
    c = costs[valid]  # (m, k): the comparable rows
    # (m, m): [i, j] says whether row j dominates row i
    no_worse = np.all(c[None, :, :] <= c[:, None, :], axis=2)
    better = np.any(c[None, :, :] < c[:, None, :], axis=2)
    dominated = np.any(no_worse & better, axis=1)  # (m,)
    mask = np.zeros(len(values), dtype=bool)
    mask[valid[~dominated]] = True
    return mask


def front_of(trials: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated trials under `OBJECTIVES`, highest GMV first."""
    mask = pareto_mask(trials[list(OBJECTIVES)].to_numpy(dtype=float), [m == "max" for m in OBJECTIVES.values()])
    front: pd.DataFrame = trials.loc[mask].sort_values(["gmv", "trial_id"], ascending=[False, True])
    return front.reset_index(drop=True)


def choose(front: pd.DataFrame, *, max_gini: float | None = None) -> pd.Series:
    """The front point to export.

    With `max_gini`: the highest GMV among the front points whose `gini_account` is at most `max_gini`.
    Without: the balanced point, closest (Euclidean) to the ideal one after scaling each objective to
    [0, 1] over the front (0 = the front's best value, 1 = its worst), so no objective's units dominate.
    """
    if front.empty:
        raise ConfigError("no trial has finite values for all four objectives, so there is no Pareto front; the "
                          "trial logs are in the Ray storage folder")
    if max_gini is not None:
        allowed = front[front["gini_account"] <= max_gini]
        if allowed.empty:
            raise ConfigError(f"--max-gini: received {max_gini:g}; no Pareto point has gini_account at most that "
                              f"(the lowest is {front['gini_account'].min():.4g}). Pass a larger value; the finished "
                              "sweep is reused, nothing is simulated again")
        return allowed.iloc[int(np.argmax(allowed["gmv"].to_numpy(dtype=float)))]
    scaled = []
    for name, mode in OBJECTIVES.items():
        column = front[name].to_numpy(dtype=float)
        best, worst = (column.max(), column.min()) if mode == "max" else (column.min(), column.max())
        span = abs(worst - best)
        scaled.append(np.abs(column - best) / span if span > 0 else np.zeros(len(column)))
    distance = np.sqrt(np.sum(np.square(scaled), axis=0))  # (n_front,)
    return front.iloc[int(np.argmin(distance))]  # the front is sorted by GMV: ties go to the higher GMV


def trial_policy(trial: Mapping[str, Any], sweep_info: Mapping[str, Any]) -> FairnessPolicy:
    """The fairness policy of one trial: the sweep's base policy with the trial's knob values."""
    overrides = knob_overrides(trial, sweep_info["base_overrides"])
    return load_policy(sweep_info["base_policy"], overrides=[*overrides, f"name={_toml_value(_name(trial))}"])


def policy_toml(policy: FairnessPolicy, *, header: Sequence[str] = ()) -> str:
    """A fairness policy as TOML text that `load_policy` reads back to the same policy."""
    lines = [f"# {line}" for line in header]
    data = policy.to_dict()
    lines += [f"{key} = {_toml_value(value)}" for key, value in data.items() if not isinstance(value, dict)]

    def table(name: str, section: Mapping[str, Any]) -> None:
        lines.extend(["", f"[{name}]"])
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in section.items() if not isinstance(value, dict))
        for key, value in section.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for key, value in data.items():
        if isinstance(value, dict):
            table(key, value)
    return "\n".join(lines) + "\n"


def export_trial(out: Path, trial_id: str, *, target: Path | None = None) -> Path:
    """Write one finished trial of the sweep in `out` as a policy file (default OUT/policy-TRIAL_ID.toml)."""
    trials_path, info_path = out / "trials.csv", out / "sweep.json"
    if not trials_path.is_file() or not info_path.is_file():
        raise ConfigError(f"--export: {str(out)!r} holds no finished policy sweep (no trials.csv and sweep.json); "
                          "pass the --out folder of `ecorank tune policy`")
    trials = pd.read_csv(trials_path, dtype={"trial_id": str})
    rows = trials[trials["trial_id"] == trial_id]
    if rows.empty:
        raise ConfigError(f"--export: received trial {trial_id!r}; expected a trial_id of {trials_path}: "
                          f"{', '.join(trials['trial_id'])}")
    info = json.loads(info_path.read_text())
    return _write_policy(rows.iloc[0], info, target or out / f"policy-{trial_id}.toml")


def check_resumable(out: Path, sweep: PolicySweep) -> None:
    """Refuse to resume a different sweep from `out`; record this sweep's description there (sweep.json)."""
    info_path = out / "sweep.json"
    if info_path.is_file():
        before = json.loads(info_path.read_text())
        changed = sorted(k for k, v in sweep.describe().items() if before.get(k) != v)
        if changed:
            raise ConfigError(f"--out {str(out)!r} holds a different policy sweep (it differs in {changed}); "
                              "expected the same sweep to resume it. Pass another --out, or delete that folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(sweep.describe(), indent=2) + "\n")


def write_results(trials: pd.DataFrame, sweep: PolicySweep, out: Path, *, max_gini: float | None = None
                  ) -> tuple[pd.DataFrame, pd.Series]:
    """trials.csv, pareto.csv, pareto.png, sweep.json and policy.toml (the chosen point) into `out`.

    Returns (the front, the chosen trial). When the choice rule finds no point, everything but policy.toml
    is written and the ConfigError says which value to change.
    """
    _require(trials, ["trial_id", *SPACE, *OBJECTIVES])
    base = sweep.base_point()
    trials = trials.assign(seeds=" ".join(str(s) for s in sweep.seeds),
                           is_base=[base is not None and all(math.isclose(row[k], v) for k, v in base.items())
                                    for _, row in trials.iterrows()])
    front = front_of(trials)
    trials = trials.assign(on_front=trials["trial_id"].isin(front["trial_id"]))
    out.mkdir(parents=True, exist_ok=True)
    trials.to_csv(out / "trials.csv", index=False)
    chosen: pd.Series | None = None
    problem: ConfigError | None = None
    try:
        chosen = choose(front, max_gini=max_gini)
    except ConfigError as err:
        problem = err
    chosen_id = None if chosen is None else str(chosen["trial_id"])
    front.assign(on_front=True, chosen=front["trial_id"] == chosen_id).to_csv(out / "pareto.csv", index=False)
    plot_pareto(trials, front, out / "pareto.png", chosen=chosen,
                title=f"{sweep.config.id} {sweep.config.preset}: {len(trials)} trials, seeds "
                      f"{' '.join(str(s) for s in sweep.seeds)}")
    rule = (f"max GMV with gini_account <= {max_gini:g}" if max_gini is not None
            else "balanced: closest to the ideal point, objectives scaled to [0, 1] over the front")
    info = {**sweep.describe(), "choose": rule, "chosen_trial": chosen_id}
    (out / "sweep.json").write_text(json.dumps(info, indent=2) + "\n")
    if problem is not None or chosen is None:
        raise problem or ConfigError("no trial was chosen")
    _write_policy(chosen, info, out / "policy.toml")
    return front, chosen


def plot_pareto(trials: pd.DataFrame, front: pd.DataFrame, path: Path, *, chosen: pd.Series | None,
                title: str) -> Path:
    """Left: GMV against exposure Gini, every trial grey, the front colored by complaint rate with marker area
    growing with risk share. Right: complaint rate against risk share. The chosen point is a star, the base
    policy's point a square."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.4, 4.2), layout="constrained")
    risk = front["risk_share"].to_numpy(dtype=float)
    area = 20 + 180 * (risk / risk.max() if np.nanmax(risk, initial=0.0) > 0 else np.zeros(len(risk)))
    for axis, (x, y) in ((left, ("gini_account", "gmv")), (right, ("risk_share", "complaints_per_1k"))):
        axis.scatter(trials[x], trials[y], s=14, color="0.75", label="trial", zorder=1)
        if axis is left:
            drawn = axis.scatter(front[x], front[y], s=area, c=front["complaints_per_1k"], cmap="viridis",
                                 edgecolors="black", linewidths=0.5, label="Pareto front", zorder=2)
            figure.colorbar(drawn, ax=axis).set_label("complaints per 1,000 impressions", fontsize=8)
        else:
            axis.scatter(front[x], front[y], s=30, color="tab:blue", edgecolors="black", linewidths=0.5,
                         label="Pareto front", zorder=2)
        based = trials[trials["is_base"]]
        if not based.empty:
            axis.scatter(based[x], based[y], s=70, marker="s", facecolors="none", edgecolors=REFERENCE_COLOR,
                         linewidths=1.2, label="base policy", zorder=3)
        if chosen is not None:
            axis.scatter([chosen[x]], [chosen[y]], s=160, marker="*", color="tab:red", edgecolors="black",
                         linewidths=0.5, label=f"chosen ({chosen['trial_id']})", zorder=4)
        axis.set_xlabel(f"{x} (lower is better)", fontsize=8)
        axis.set_ylabel(f"{y} ({'higher' if OBJECTIVES[y] == 'max' else 'lower'} is better)", fontsize=8)
        axis.tick_params(labelsize=7)
    left.set_title("GMV vs exposure Gini (front: color complaints, area risk share)", fontsize=9)
    right.set_title("complaint rate vs risk exposure", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    figure.suptitle(f"Policy sweep, {title}", fontsize=11)
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _write_policy(trial: pd.Series, info: Mapping[str, Any], path: Path) -> Path:
    policy = trial_policy({str(key): value for key, value in trial.items()}, info)
    objectives = ", ".join(f"{name} {float(trial[name]):.6g}" for name in OBJECTIVES)
    header = [f"Policy sweep trial {trial['trial_id']} (ecorank tune policy): {objectives}",
              f"on {info['scenario']} {info['preset']}, {info['rounds']} rounds, seeds {info['seeds']}; base policy "
              f"{info['base_policy']} {info['base_overrides']}",
              "Serve it: ecorank serve --policy " + str(path)]
    path.write_text(policy_toml(policy, header=header))
    return path


def _name(trial: Mapping[str, Any]) -> str:
    return f"tuned-{trial['trial_id']}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if value is None:
        return '"none"'  # the policy's spelling of "no budget"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are valid TOML


def _dotted(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ValueError(f"trials table: missing columns {missing}; received {list(frame.columns)}")
