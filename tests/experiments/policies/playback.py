"""Replaying the simulator's round loop for policy tests: every slate checked and kept, the world kept.

`play` runs `story.play_round` as `runner.simulate` does, so a test can look at per-account exposure
history and at every slate a policy returned, not only at the run's summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from experiments.config import ScenarioConfig
from experiments.policies import make_policy
from experiments.policies.base import Policy, Slate
from experiments.simulator.measure import round_metrics, run_metrics
from experiments.simulator.observation import Observation, Truth
from experiments.simulator.state import World
from experiments.simulator.story import Streams, initial_world, play_round


@dataclass
class Recorder:
    """Wraps a policy: checks every slate it returns and keeps its positions."""

    inner: Policy
    slates: list[np.ndarray] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def uses_ground_truth(self) -> bool:
        return self.inner.uses_ground_truth

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        slate = self.inner.rank(obs, rng=rng, truth=truth)
        rows, cols = obs.candidates.shape
        assert slate.positions.shape == slate.propensity.shape == (rows, obs.n_slots)
        if rows:
            assert slate.positions.min() >= 0
            assert slate.positions.max() < cols
            ordered = np.sort(slate.positions, axis=1)
            assert not (ordered[:, 1:] == ordered[:, :-1]).any()  # a candidate at most once per slate
        assert np.all(slate.propensity == 1.0)  # deterministic policies
        self.slates.append(slate.positions.copy())
        return slate


@dataclass(frozen=True)
class Run:
    world: World
    summary: dict[str, float]
    slates: list[np.ndarray]
    config: ScenarioConfig


def play(config: ScenarioConfig, policy: str, seed: int) -> Run:
    streams = Streams(seed)
    world = initial_world(config, streams)
    recorder = Recorder(make_policy(policy, config))
    rounds = [round_metrics(world, config, play_round(world, config, recorder, streams))
              for _ in range(config.run.rounds)]
    return Run(world=world, summary=run_metrics(world, config, rounds), slates=recorder.slates, config=config)
