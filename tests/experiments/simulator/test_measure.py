from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from experiments.config import ScenarioConfig
from experiments.simulator import measure
from experiments.simulator.state import NEWCOMER
from experiments.simulator.story import Streams, initial_world


def test_gini_trend_is_the_fitted_change_over_the_horizon() -> None:
    assert measure.gini_trend(np.linspace(0.2, 0.5, 31)) == pytest.approx(0.3 * 31 / 30)
    assert measure.gini_trend(np.full(20, 0.4)) == pytest.approx(0.0)
    assert np.isnan(measure.gini_trend(np.array([0.1, 0.2])))


def test_newcomer_outcomes_on_a_constructed_history(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1", "metrics.impressions_milestone=10")
    world = initial_world(config, Streams(0))
    acc = world.accounts
    world.round = 20
    rows = np.arange(4)
    acc.cohort[rows] = NEWCOMER
    acc.born[rows] = config.run.burn_in
    acc.died[rows] = [-1, -1, config.run.burn_in + 2, -1]  # one leaves before the horizon
    acc.impressions_hist[rows] = 0.0
    acc.impressions_hist[0, config.run.burn_in: config.run.burn_in + 3] = 5.0  # reaches 10 on its 2nd round
    survival, to_milestone, reached = measure.newcomer_outcomes(world, config, horizon=4)
    cohort = (acc.cohort[: acc.n] == NEWCOMER) & (acc.born[: acc.n] >= config.run.burn_in)
    assert cohort.sum() == 4
    assert survival == pytest.approx(3 / 4)
    assert to_milestone == 1.0
    assert reached == pytest.approx(1 / 4)


def test_mobility_is_one_minus_rank_persistence(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1", "creators.exit_enabled=false", "entry.enabled=false")
    world = initial_world(config, Streams(0))
    world.round = config.run.rounds
    acc = world.accounts
    steady = np.arange(acc.n, dtype=float)[:, None] * np.ones((1, config.run.rounds))
    acc.exposure_hist[: acc.n] = steady
    assert measure.mobility(world, config) == pytest.approx(0.0)  # ranks never change
    acc.exposure_hist[: acc.n, config.run.rounds // 2:] = steady[::-1, config.run.rounds // 2:]
    assert measure.mobility(world, config) > 1.0  # ranks reverse: negative correlation
