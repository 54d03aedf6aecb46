"""Determinism, common random numbers, and the wall between policies and hidden state."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from experiments.config import ScenarioConfig
from experiments.policies import make_policy
from experiments.simulator.observation import AccountHistory, Candidates, Observation
from experiments.simulator.runner import simulate
from experiments.simulator.story import Streams, initial_world, play_round


def test_same_seed_gives_identical_runs(tiny: Callable[..., ScenarioConfig], tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tiny("S4")
    first = simulate(config, "explore", 3, impressions_path=tmp_path / "a.parquet")
    second = simulate(config, "explore", 3, impressions_path=tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(first.rounds, second.rounds)
    pd.testing.assert_frame_equal(first.accounts, second.accounts)
    assert first.summary.keys() == second.summary.keys()
    assert all(np.isclose(first.summary[k], second.summary[k], equal_nan=True) for k in first.summary)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def test_different_seeds_differ(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    a, b = simulate(config, "p0", 0), simulate(config, "p0", 1)
    assert not np.allclose(a.rounds["gmv"], b.rounds["gmv"])


def test_policies_share_the_initial_world_and_who_shows_up(tiny: Callable[..., ScenarioConfig]) -> None:
    """Common random numbers: same seed, different policies -> same world at t=0 and same active users."""
    config = tiny("S4")
    worlds = {name: initial_world(config, Streams(5)) for name in ("p0", "random")}
    for field in ("mean_quality", "style", "type", "operator"):
        assert np.array_equal(getattr(worlds["p0"].accounts, field), getattr(worlds["random"].accounts, field))
    assert np.array_equal(worlds["p0"].items.id, worlds["random"].items.id)
    records = {name: play_round(worlds[name], config, make_policy(name, config), Streams(5)) for name in worlds}
    assert np.array_equal(records["p0"].retrieved.user, records["random"].retrieved.user)
    assert np.array_equal(records["p0"].retrieved.rows, records["random"].retrieved.rows)
    assert not np.array_equal(records["p0"].shown, records["random"].shown)


def test_stream_draws_do_not_depend_on_other_streams() -> None:
    streams = Streams(11)
    first = streams.at("users", 4).random(3)
    streams.at("production", 4).random(1000)  # another component draws a lot
    assert np.array_equal(streams.at("users", 4).random(3), first)
    assert not np.array_equal(streams.at("users", 5).random(3), first)


HIDDEN = {"quality", "mean_quality", "gaming", "type", "operator", "satisfaction", "violation", "is_copy",
          "is_original", "defect_rate", "source", "root", "cohort"}


def test_observation_exposes_no_hidden_field_and_no_world_reference(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    seen: list[Observation] = []

    class Spy:
        name = "spy"
        uses_ground_truth = False

        def rank(self, obs, *, rng, truth=None):  # type: ignore[no-untyped-def]
            assert truth is None
            seen.append(obs)
            return make_policy("p0", config).rank(obs, rng=rng)

    play_round(world, config, Spy(), Streams(0))  # type: ignore[arg-type]
    obs = seen[0]
    names = {f.name for cls in (Observation, Candidates, AccountHistory) for f in dataclasses.fields(cls)}
    assert not names & HIDDEN
    for part in (obs.candidates, obs.accounts):
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            assert (isinstance(value, np.ndarray) and value.base is None) or not value.flags.writeable
            assert not value.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        obs.candidates.price[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.round = 3  # type: ignore[misc]


def test_a_broken_policy_gets_a_clear_error(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1")

    class Broken:
        name = "broken"
        uses_ground_truth = False

        def rank(self, obs, *, rng, truth=None):  # type: ignore[no-untyped-def]
            slate = make_policy("p0", config).rank(obs, rng=rng)
            positions = slate.positions.copy()
            positions[:, 1] = positions[:, 0]
            return dataclasses.replace(slate, positions=positions)

    with pytest.raises(ValueError, match="placed the same candidate in two slots"):
        play_round(initial_world(config, Streams(0)), config, Broken(), Streams(0))  # type: ignore[arg-type]


def test_cluster_key_groups_detected_operators_and_isolates_the_rest() -> None:
    history = AccountHistory(*(np.zeros(4) for _ in range(10)), operator_cluster=np.array([7, -1, 7, -1]))
    keys = history.cluster_key()
    assert keys[0] == keys[2] == 7
    assert len({int(k) for k in keys}) == 3
    assert keys[1] < 0
    assert keys[3] < 0


def test_cluster_exposure_sums_detected_clusters() -> None:
    history = AccountHistory(*(np.zeros(4) for _ in range(4)), exposure=np.array([1.0, 2.0, 3.0, 4.0]),
                             recent_exposure=np.array([0.5, 0.0, 0.5, 1.0]), clicks=np.zeros(4),
                             purchases=np.zeros(4), complaints=np.zeros(4), gmv=np.zeros(4),
                             operator_cluster=np.array([7, -1, 7, -1]))
    keys, exposure, index = history.cluster_exposure()
    assert dict(zip(keys.tolist(), exposure.tolist(), strict=True)) == {-4: 4.0, -2: 2.0, 7: 4.0}
    assert np.array_equal(keys[index], history.cluster_key())
    _, recent, _ = history.cluster_exposure(recent=True)
    assert sorted(recent.tolist()) == [0.0, 1.0, 1.0]
