"""Shared fixtures: scenario loaders and one small experiment run reused by the output tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from experiments.config import ScenarioConfig, load_scenario
from experiments.simulator.runner import Experiment, run_experiment

ALL_POLICIES = ("p0", "p1", "random", "oracle", "explore")


@pytest.fixture
def tiny() -> Callable[..., ScenarioConfig]:
    """tiny("S1", "run.rounds=10") -> a validated tiny-preset config with overrides."""

    def load(scenario: str = "S4", *overrides: str) -> ScenarioConfig:
        return load_scenario(scenario, preset="tiny", overrides=list(overrides))

    return load


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    """Every policy, two seeds, S4 tiny (adaptive adversaries, all account types), all impressions logged."""
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all"])
    out: Path = tmp_path_factory.mktemp("tiny_experiment")
    return run_experiment(config, policies=list(ALL_POLICIES), seeds=[0, 1], out=out, quiet=True)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for every Ray test of the session (starting one costs several seconds)."""
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # 4 logical CPUs on 2 cores: two Ray Train workers and Ray Data's read tasks need slots at the same time
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_session: None) -> str:
    """The session's Ray, for a subprocess to join (`--address`) instead of starting its own."""
    import ray

    address: str = ray.get_runtime_context().gcs_address
    return address

