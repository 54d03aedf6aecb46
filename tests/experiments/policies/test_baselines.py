from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from experiments.config import ConfigError, ScenarioConfig
from experiments.policies import POLICIES, Policy, make_policy
from experiments.simulator.observation import observe, reveal_truth
from experiments.simulator.retrieval import retrieve
from experiments.simulator.story import Streams, initial_world


@pytest.fixture
def round_zero(tiny: Callable[..., ScenarioConfig]):  # type: ignore[no-untyped-def]
    config = tiny("S4")
    streams = Streams(0)
    world = initial_world(config, streams)
    users = np.arange(world.users.n)
    retrieved = retrieve(world, config, users, streams.at("retrieval", 0))
    return config, world, retrieved, observe(world, config, retrieved, 0)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_returns_a_valid_slate(name: str, round_zero) -> None:  # type: ignore[no-untyped-def]
    config, world, retrieved, obs = round_zero
    policy = make_policy(name, config)
    assert isinstance(policy, Policy)
    truth = reveal_truth(world, config, retrieved) if policy.uses_ground_truth else None
    slate = policy.rank(obs, rng=np.random.default_rng(0), truth=truth)
    rows, cols = obs.candidates.shape
    assert slate.positions.shape == slate.propensity.shape == (rows, obs.n_slots)
    assert slate.positions.min() >= 0
    assert slate.positions.max() < cols
    assert all(len(set(row)) == obs.n_slots for row in slate.positions.tolist())
    assert np.all((slate.propensity > 0) & (slate.propensity <= 1))
    again = policy.rank(obs, rng=np.random.default_rng(0), truth=truth)
    assert np.array_equal(slate.positions, again.positions)  # same seed, same slate


def test_p0_puts_the_highest_estimated_gmv_on_top(round_zero) -> None:  # type: ignore[no-untyped-def]
    from experiments.policies.estimates import estimate_heads

    config, _, _, obs = round_zero
    slate = make_policy("p0", config).rank(obs, rng=np.random.default_rng(0))
    gmv = estimate_heads(obs.candidates, config).gmv
    shown = np.take_along_axis(gmv, slate.positions, axis=1)
    assert np.all(np.diff(shown, axis=1) <= 0)
    assert np.allclose(shown[:, 0], gmv.max(axis=1))


def test_p1_penalizes_risk_where_p0_does_not(round_zero) -> None:  # type: ignore[no-untyped-def]
    from experiments.policies.estimates import estimate_heads

    config, _, _, obs = round_zero
    risk = estimate_heads(obs.candidates, config).risk
    risk_p0 = np.take_along_axis(risk, make_policy("p0", config).rank(obs, rng=np.random.default_rng(0)).positions, 1)
    risk_p1 = np.take_along_axis(risk, make_policy("p1", config).rank(obs, rng=np.random.default_rng(0)).positions, 1)
    assert risk_p1.mean() < risk_p0.mean()


def test_oracle_refuses_to_run_without_truth(round_zero) -> None:  # type: ignore[no-untyped-def]
    config, _, _, obs = round_zero
    with pytest.raises(ValueError, match="needs ground truth"):
        make_policy("oracle", config).rank(obs, rng=np.random.default_rng(0))


def test_only_the_oracle_uses_ground_truth(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny()
    assert {name for name in POLICIES if make_policy(name, config).uses_ground_truth} == {"oracle"}


def test_unknown_policy_lists_the_known_ones(tiny: Callable[..., ScenarioConfig]) -> None:
    with pytest.raises(ConfigError, match=r"unknown policy 'p9'.*'explore'.*'oracle', 'p0', 'p1'.*'random'"):
        make_policy("p9", tiny())


def test_history_weight_lifts_creators_with_a_better_gmv_record(round_zero) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from experiments.policies.estimates import estimate_heads

    config, _, _, obs = round_zero
    cand = obs.candidates
    impressions = np.full(cand.shape, 1000.0)
    gmv = np.where(cand.account % 2 == 0, 3000.0, 1000.0)  # even accounts sell three times as much per impression
    with_record = dataclasses.replace(cand, account_impressions=impressions, account_gmv=gmv)
    weighted = config.model_copy(update={"policies": config.policies.model_copy(update={"history_weight": 1.0})})
    plain = estimate_heads(with_record, config).gmv
    lifted = estimate_heads(with_record, weighted).gmv
    ratio = lifted / plain
    assert np.all(ratio[cand.account % 2 == 0] > 1.0)
    assert np.all(ratio[cand.account % 2 == 1] < 1.0)
    assert np.allclose(estimate_heads(cand, config).gmv, plain)  # weight 0: history is ignored
