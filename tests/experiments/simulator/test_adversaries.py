from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator import adversaries
from experiments.simulator.state import NONE, REUPLOADER
from experiments.simulator.story import Streams, initial_world


def test_detection_degrades_with_obfuscation(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    p = adversaries.detection_probability(world.detector, config, np.array([0.0, 0.5, 1.0]))
    assert np.all(np.diff(p) < 0)
    assert np.isclose(p[0], world.detector.recall)
    assert np.isclose(p[2], world.detector.recall * (1 - config.detector.obfuscation_penalty))


def test_recall_drifts_down_and_retraining_recovers_what_the_audit_missed(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    start = world.detector.recall
    adversaries.drift(world, config, np.ones(10))
    assert world.detector.recall < start
    dropped = world.detector.recall
    world.items.detected_dup[world.items.is_copy] = NONE  # the audit finds every copy undetected
    miss = adversaries.retrain(world, config, np.random.default_rng(0))
    assert miss > 0.5
    assert dropped < world.detector.recall <= config.detector.target_recall
    assert (world.items.detected_dup[world.items.is_copy] != NONE).any()  # re-scan found some


def test_multiplicative_weights_move_toward_the_profitable_arm(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    acc = world.accounts
    reup = np.flatnonzero(acc.type[: acc.n] == REUPLOADER)
    assert len(reup) >= 2
    acc.obfuscation[reup] = 0.0
    acc.copy_lag[reup] = 1
    acc.obfuscation[reup[0]] = 1.0
    acc.copy_lag[reup[0]] = 3
    acc.utility_hist[reup, :4] = -1.0
    acc.utility_hist[reup[0], :4] = 10.0  # the (z=1, lag=3) arm is the money-maker
    arms = world.strategies.reuploader_arms
    best = int(np.flatnonzero((arms[:, 0] == 1.0) & (arms[:, 1] == 3))[0])
    worst = int(np.flatnonzero((arms[:, 0] == 0.0) & (arms[:, 1] == 1))[0])
    adversaries.update_strategies(world, config, 3, np.random.default_rng(0))
    weights = world.strategies.reuploader_weights
    assert weights[best] > weights[worst]
    assert np.isclose(weights.sum(), 1.0)
