"""The closed-loop experiment config: one TOML file says everything a run of the loop does.

    experiments/configs/loops/tiny.toml        CI: the whole loop in seconds
    experiments/configs/loops/demo.toml        `ecorank demo`: S0-S4, 3 seeds, within 3 minutes on 2 cores
    experiments/configs/loops/evaluation.toml  the report's evidence: S0-S4, 10 seeds, the evaluation preset

A loop config names the simulator preset and scenarios, the logging run that produces training data, the
models to train and the one the learned policies rank with, the policies to compare (P0 first: every CI
is against it), the evaluation seeds (common random numbers: every policy meets the same worlds) and a
sweep of each fairness-aware policy's strength knob for the Pareto plot. Unknown keys and bad values are
errors that name the key, what was received and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from fairness.toml_config import ConfigError, deep_merge, format_validation_error, parse_overrides, read_toml

LOOPS_DIR = Path(__file__).resolve().parents[1] / "configs" / "loops"
REFERENCE = "p0"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoggingConfig(_Section):
    rounds: PositiveInt = Field(description="Rounds the exploration policy runs per scenario to log impressions.")
    seeds: list[int] = Field(min_length=1, description="Seeds of the logging runs; keep them apart from the "
                                                        "evaluation seeds so no evaluation world is trained on.")


class TrainingConfig(_Section):
    models: list[Literal["mmoe", "ple", "shared_bottom"]] = Field(
        min_length=1, description="Multi-task models trained on the logs (all reported).")
    serve: str = Field(description="The trained model the learned policies rank with (one of `models`).")
    epochs: PositiveInt
    batch_size: PositiveInt
    patience: PositiveInt = Field(description="Early stopping: epochs without validation improvement.")
    learning_rate: float = Field(gt=0.0)
    seed: int = 0


class Knob(_Section):
    family: str = Field(description="The policy swept (e.g. ecorank, fairco, pmmf).")
    key: str = Field(description="What the value sets: a fairness-policy key for ecorank (planner.kappa), a "
                                 "scenario key for the others (policies.fairco_lambda).")
    values: list[float] = Field(min_length=1)


class SweepConfig(_Section):
    scenarios: list[str] = Field(default_factory=list, description="Scenarios swept (empty: no sweep).")
    seeds: list[int] = Field(default_factory=list, description="Seeds per swept point (default: the evaluation's).")
    knobs: list[Knob] = Field(default_factory=list)


class LoopConfig(_Section):
    name: str
    description: str = ""
    preset: str = Field(description="Simulator preset of every run (tiny, default, evaluation).")
    scenarios: list[str] = Field(min_length=1)
    overrides: list[str] = Field(default_factory=list, description="Scenario overrides applied to every run "
                                                                   "(section.key=value).")
    policies: list[str] = Field(min_length=2, description="Compared policies; the first must be p0.")
    seeds: list[int] = Field(min_length=2, description="Evaluation seeds (at least two for a CI).")
    jobs: PositiveInt = Field(description="Worker processes for the simulations.")
    bootstrap_samples: PositiveInt = 2000
    logging: LoggingConfig
    training: TrainingConfig
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @model_validator(mode="after")
    def _consistent(self) -> LoopConfig:
        if self.policies[0] != REFERENCE:
            raise ValueError(f"policies: received {self.policies[0]!r} first; expected {REFERENCE!r} first (every "
                             "confidence interval is against GMV-only ranking)")
        if self.training.serve not in self.training.models:
            raise ValueError(f"training.serve: received {self.training.serve!r}; expected one of the trained "
                             f"models {self.training.models}")
        shared = sorted(set(self.seeds) & set(self.logging.seeds))
        if shared:
            raise ValueError(f"logging.seeds: received {shared}, also evaluation seeds; expected disjoint seeds, so "
                             "the models never train on a world they are evaluated in")
        outside = sorted(set(self.sweep.seeds) - set(self.seeds))
        if outside:
            raise ValueError(f"sweep.seeds: received {outside}, not evaluation seeds; expected a subset of "
                             f"{self.seeds} (a swept point's GMV is relative to P0 on the same seed)")
        unknown = sorted(set(self.sweep.scenarios) - set(self.scenarios))
        if unknown:
            raise ValueError(f"sweep.scenarios: received {unknown}; expected scenarios of the loop {self.scenarios}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: received duplicates in {self.seeds}; expected distinct seeds")
        return self

    @property
    def sweep_seeds(self) -> list[int]:
        return self.sweep.seeds or self.seeds


def load_loop(source: str | Path, *, overrides: Sequence[str] | Mapping[str, Any] = ()) -> LoopConfig:
    """A loop config from a built-in name (experiments/configs/loops/NAME.toml) or a path, with overrides."""
    path = Path(source)
    if not path.suffix:
        path = LOOPS_DIR / f"{source}.toml"
        if not path.is_file():
            names = sorted(p.stem for p in LOOPS_DIR.glob("*.toml"))
            raise ConfigError(f"unknown loop config {str(source)!r}; expected one of {names} or a path to a .toml file")
    data = read_toml(path)
    extra = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    for dotted, value in extra.items():  # unknown keys are caught by validation, with the options named
        *sections, leaf = dotted.split(".")
        nested: dict[str, Any] = {leaf: value}
        for section in reversed(sections):
            nested = {section: nested}
        data = deep_merge(data, nested)
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, root=LoopConfig, header=f"loop config {path}",
                                                  fix_in=str(path))) from None
