"""Policies ranking with a trained bundle: the heads, ecorank through the serving core, retraining in the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from experiments.config import ScenarioConfig, load_scenario
from experiments.policies import make_policy
from experiments.policies.engine import EnginePolicy
from experiments.policies.estimates import CANDIDATE_SIGNALS, cached_bundle, observed_features, policy_heads
from experiments.simulator import impressions as imp
from experiments.simulator.runner import run_experiment, simulate
from experiments.simulator.story import Streams, initial_world, play_round
from mtl.bundle import load_bundle
from mtl.train import fine_tune
from mtl.trainer import TrainConfig
from serving.core import RankingCore
from tests.bundles import small_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bundle(tmp_path_factory, rounds=12, epochs=1, seed=99)


def with_bundle(bundle_dir: Path, scenario: str = "S4", **extra: object) -> ScenarioConfig:
    return load_scenario(scenario, preset="tiny", overrides={"policies.heads_bundle": str(bundle_dir), **extra})


def test_policy_heads_are_the_bundles_predictions_on_observed_signals(bundle_dir: Path) -> None:
    config = with_bundle(bundle_dir)
    seen = []

    class Spy:
        name = "spy"
        uses_ground_truth = False

        def rank(self, obs, *, rng, truth=None):  # type: ignore[no-untyped-def]
            seen.append(obs)
            return make_policy("p0", config).rank(obs, rng=rng)

    play_round(initial_world(config, Streams(0)), config, Spy(), Streams(0))  # type: ignore[arg-type]
    candidates = seen[0].candidates
    heads = policy_heads(candidates, config)
    bundle = cached_bundle(str(bundle_dir))
    assert {d.name for d in bundle.schema.dense} <= CANDIDATE_SIGNALS
    expected = bundle.predict_dense(observed_features(candidates, bundle))
    for head in ("gmv", "prosperity", "risk", "complaint"):
        assert getattr(heads, head).shape == candidates.shape
        np.testing.assert_array_equal(getattr(heads, head).ravel(), expected[head])
    # without a bundle the same call is the observable estimator, a different ranking signal
    plain = policy_heads(candidates, load_scenario("S4", preset="tiny"))
    assert not np.allclose(plain.gmv, heads.gmv)


def test_ecorank_with_a_bundle_ranks_through_the_serving_core(bundle_dir: Path) -> None:
    config = with_bundle(bundle_dir)
    policy = make_policy("ecorank", config)
    assert isinstance(policy, EnginePolicy)
    world = initial_world(config, Streams(0))
    for _ in range(6):
        play_round(world, config, policy, Streams(0))
    assert isinstance(policy.core, RankingCore)
    assert policy.core.state.bundle.version == load_bundle(bundle_dir).version
    assert policy.core.state.plan_version >= 2  # planned after round 0, re-planned every horizon_rounds
    assert not policy.learns  # retraining is off unless configured


def test_retraining_fine_tunes_on_its_own_impressions_on_schedule(bundle_dir: Path) -> None:
    config = with_bundle(bundle_dir, **{"policies.ecorank_retrain_every": 4, "run.rounds": 12})
    policy = make_policy("ecorank", config)
    assert isinstance(policy, EnginePolicy)
    assert policy.learns
    first = simulate(config, "ecorank", 0)
    again = simulate(config, "ecorank", 0)
    assert first.summary == again.summary  # retraining is seeded: the same seed gives the same run
    plain = simulate(with_bundle(bundle_dir, **{"run.rounds": 12}), "ecorank", 0)
    assert first.summary != plain.summary  # the retrained models ranked differently

    # by hand: the rounds' impressions reach the policy and the model is swapped every 4 rounds
    world, streams = initial_world(config, Streams(1)), Streams(1)

    versions = []
    for t in range(8):
        record = play_round(world, config, policy, streams)
        table = imp.impressions_table(world, config, record, policy="ecorank", seed=1, rng=streams.at("labels", t))
        assert isinstance(table, pa.Table)
        policy.learn(table)
        assert policy.core is not None
        versions.append(policy.core.state.bundle.version)
    assert policy.retrained == 2
    assert versions[2] == versions[0] != versions[3]  # swapped at the end of round 3 (the 4th)
    assert versions[3] != versions[7]
    assert "+ft" in versions[7]


def test_fine_tune_warm_starts_keeps_the_encoding_and_recalibrates(bundle_dir: Path, tmp_path: Path) -> None:
    bundle = load_bundle(bundle_dir)
    logs = tmp_path / "more"
    config = load_scenario("S1", preset="tiny", overrides=["outputs.impressions=explore", "run.rounds=8"])
    run_experiment(config, policies=["explore"], seeds=[5], out=logs, quiet=True)
    settings = TrainConfig(epochs=1, batch_size=256, patience=1, seed=3)
    tuned = fine_tune(bundle, logs / "impressions.parquet", config=settings)
    assert tuned.stats is bundle.stats
    assert tuned.version.startswith(bundle.version + "+ft")
    assert set(tuned.calibrators) == set(bundle.calibrators)
    before = dict(bundle.model.named_parameters())
    changed = [name for name, value in tuned.model.named_parameters() if not np.allclose(
        value.detach().numpy(), before[name].detach().numpy())]
    assert changed  # it trained
    assert bundle.model is not tuned.model  # the original is untouched
    again = fine_tune(bundle, logs / "impressions.parquet", config=settings)
    for (_, a), (_, b) in zip(tuned.model.named_parameters(), again.model.named_parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    with pytest.raises(ValueError, match="expected both non-empty"):
        fine_tune(bundle, pq.read_table(logs / "impressions.parquet").slice(0, 1), config=settings)
