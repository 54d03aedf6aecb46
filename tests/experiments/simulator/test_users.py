from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from experiments.config import ScenarioConfig
from experiments.simulator import users
from experiments.simulator.story import Streams, initial_world


def test_examination_is_one_over_log2_of_position_plus_one() -> None:
    assert np.allclose(users.examination(4), [1.0, 1 / np.log2(3), 0.5, 1 / np.log2(5)])


def test_duplicates_are_detected_in_memory_and_within_the_slate(tiny: Callable[..., ScenarioConfig]) -> None:
    world = initial_world(tiny("S1"), Streams(0))
    who = np.array([0, 1])
    users.remember(world.users, who, np.array([[7, 8, 9], [1, 2, 3]]), np.array([[70, 80, 90], [10, 20, 30]]))
    roots = np.array([[9, 4, 4], [5, 6, 5]])
    assert users.seen_before(world.users, who, roots).tolist() == [[True, False, True], [False, False, True]]


def test_memory_is_a_ring_buffer(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1", "users.seen_memory=4")
    world = initial_world(config, Streams(0))
    who = np.array([3])
    users.remember(world.users, who, np.array([[1, 2, 3]]), np.array([[11, 12, 13]]))
    users.remember(world.users, who, np.array([[4, 5, 6]]), np.array([[14, 15, 16]]))
    assert sorted(world.users.seen[3].tolist()) == [3, 4, 5, 6]
    assert sorted(world.users.seen_items[3].tolist()) == [13, 14, 15, 16]


def test_position_bias_lowers_click_rates_down_the_slate(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1")
    world = initial_world(config, Streams(0))
    n, k = 4000, 5
    who = np.zeros(n, np.int64)
    shown = np.tile(np.arange(k), (n, 1))  # the same five items at every slot permutation would do too
    affinity = np.full((n, k), 0.8)
    world.items.quality[:k] = 0.7
    world.items.account[:k] = world.items.account[0]
    world.items.root[:k] = np.arange(10**6, 10**6 + k)  # distinct contents: no duplicate effects
    responses = users.respond(world, config, who, shown, affinity, np.random.default_rng(0).random((n, k, 5)))
    rates = responses.click.mean(axis=0)
    assert np.all(np.diff(rates) < 0.01)
    assert rates[0] / rates[-1] == pytest.approx(users.examination(k)[0] / users.examination(k)[-1], rel=0.15)
    assert not (responses.purchase & ~responses.click).any()
    assert np.all(responses.gmv[responses.purchase] > 0)
    assert np.all(responses.gmv[~responses.purchase] == 0)


def test_unhappy_users_go_dormant_and_come_back_rested(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1")
    world = initial_world(config, Streams(0))
    who = np.arange(10)
    world.users.patience[who] = 1.5
    nothing = users.Responses(*(np.zeros((10, 3), bool) for _ in range(4)), gmv=np.zeros((10, 3)),
                              duplicate=np.zeros((10, 3), bool))
    users.churn(world.users, config, who, nothing, 7, np.random.default_rng(0))
    assert np.all(world.users.dormant_until[who] > 8)
    assert np.all(world.users.patience[who] == config.users.patience)
    assert len(np.intersect1d(users.active_users(world.users, 8, np.zeros(world.users.n)), who)) == 0
