"""The fairness engine end to end: blend, prices, allocation, explanations, overrides, degraded answers."""

from __future__ import annotations

import numpy as np
import pytest

from fairness.blend import BlendInputError, HeadPredictions
from fairness.engine import CandidateBatch, FairnessEngine
from fairness.policy import load_policy


def batch(n: int = 40, *, seed: int = 0, requests: int = 1) -> CandidateBatch:
    rng = np.random.default_rng(seed)
    heads = HeadPredictions.of(gmv=rng.gamma(2.0, 0.5, n), prosperity=rng.uniform(0.0, 0.4, n),
                               risk=rng.uniform(0.0, 0.5, n), complaint=rng.uniform(0.0, 0.05, n))
    creator = np.arange(n) // 2  # two candidates per creator
    return CandidateBatch(creator=creator, cluster=creator // 2, original=rng.random(n) < 0.5, heads=heads,
                          request=np.arange(n) % requests if requests > 1 else None)


def test_weights_are_a_feasible_allocation_with_consistent_explanations() -> None:
    policy = load_policy()
    engine = FairnessEngine(policy)
    b = batch()
    result = engine.allocate(b)
    w = result.weights
    a = policy.allocation
    assert w.sum() == pytest.approx(1.0, abs=1e-9)
    assert (w >= 0).all()
    assert (w <= a.item_cap + 1e-12).all()
    assert np.bincount(b.creator, weights=w).max() <= a.creator_cap + 1e-9
    assert np.bincount(b.cluster, weights=w).max() <= a.cluster_cap + 1e-9
    e = result.explanation
    np.testing.assert_allclose(e.base_utility, sum(e.terms.values()))
    np.testing.assert_allclose(e.adjusted_utility, e.base_utility - e.creator_price - e.cluster_price)
    # KKT: every weight is reproduced by its explanation
    sum_price = result.allocation.sum_price[0]
    threshold = sum_price + e.cluster_cap_dual + e.creator_cap_dual
    rebuilt = np.clip((e.adjusted_utility + e.floor_boost - threshold) / a.tau, 0.0, a.item_cap)
    np.testing.assert_allclose(rebuilt, w, atol=1e-9)
    records = e.to_records()
    assert len(records) == len(w)
    capped = int(np.argmax(w))
    assert records[capped]["weight"] == pytest.approx(w[capped])
    assert set(records[capped]["binding"]) <= {"item_cap", "creator_cap", "cluster_cap", "originals_floor"}


def test_eligible_originals_receive_the_floor() -> None:
    policy = load_policy(overrides=["allocation.originals_floor=0.6", "eligibility.max_risk=1.0",
                                    "eligibility.min_prosperity=0.0"])
    b = batch(seed=3)
    result = FairnessEngine(policy).allocate(b)
    assert result.weights[b.original].sum() >= 0.6 - 1e-9
    assert (result.explanation.floor_boost[~b.original] == 0).all()


def test_ineligible_originals_do_not_count_toward_the_floor() -> None:
    policy = load_policy(overrides=["eligibility.max_risk=0.0"])  # no candidate is risk-free: none eligible
    result = FairnessEngine(policy).allocate(batch())
    assert not result.explanation.eligible_original.any()
    assert any("originals_floor" in note for note in result.notes)
    assert not result.degraded.any()  # a floor the candidates cannot hold is routine, not a degraded answer


def test_risk_override_moves_traffic_away_from_risky_candidates() -> None:
    policy = load_policy()
    engine = FairnessEngine(policy)
    b = batch(seed=5)
    base = engine.allocate(b).weights
    strict = engine.allocate(b, overrides={"risk": 5.0}).weights
    risky = b.heads.risk > np.median(b.heads.risk)
    assert strict[risky].sum() < base[risky].sum()
    with pytest.raises(BlendInputError, match="outside the allowed range"):
        engine.allocate(b, overrides={"risk": 50.0})


def test_too_few_clusters_degrade_and_say_why() -> None:
    policy = load_policy(overrides=["allocation.cluster_cap=0.3", "allocation.creator_cap=0.3"])
    b = batch(n=4)  # two creators in one cluster: cluster cap 0.3 cannot hold all traffic
    result = FairnessEngine(policy).allocate(b)
    assert result.degraded.tolist() == [True]
    assert any("cluster_cap" in note and "raise allocation.cluster_cap" in note for note in result.notes)
    assert result.weights.sum() == pytest.approx(1.0)


def test_batched_requests_equal_separate_requests() -> None:
    engine = FairnessEngine(load_policy())
    b = batch(n=160, requests=4)
    together = engine.allocate(b).weights
    assert b.request is not None
    for r in range(4):
        rows = np.flatnonzero(b.request == r)
        alone = CandidateBatch(creator=b.creator[rows], cluster=b.cluster[rows], original=b.original[rows],
                               heads=b.heads.take(rows))
        np.testing.assert_allclose(engine.allocate(alone).weights, together[rows], atol=1e-12)
