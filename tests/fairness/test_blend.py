"""Blend: the documented utility, its per-head terms, budget mode, and checked overrides."""

from __future__ import annotations

import numpy as np
import pytest

from fairness.blend import BlendInputError, BlendWeights, HeadPredictions, blend, blend_terms, suggest_gmv_scale
from fairness.policy import load_policy


def heads() -> HeadPredictions:
    return HeadPredictions.of(gmv=[2.0, 0.0, 1.0], prosperity=[0.1, 0.5, 0.2], risk=[0.0, 0.9, 0.1],
                              complaint=[0.01, 0.0, 0.3])


def test_utility_matches_the_formula() -> None:
    w = BlendWeights(gmv=1.0, prosperity=0.5, risk=2.0, complaint=3.0)
    h = heads()
    expected = 1.0 * h.gmv / 4.0 + 0.5 * h.prosperity - 2.0 * h.risk - 3.0 * h.complaint
    np.testing.assert_allclose(blend(h, w, gmv_scale=4.0), expected)
    terms = blend_terms(h, w, gmv_scale=4.0)
    assert (terms["risk"] <= 0).all()
    assert (terms["complaint"] <= 0).all()
    np.testing.assert_allclose(sum(terms.values()), expected)


def test_normalization_is_fixed_not_per_request() -> None:
    """The same candidate has the same utility whatever else is in the request."""
    w = BlendWeights(gmv=1.0, prosperity=0.0, risk=0.0, complaint=0.0)
    alone = blend(heads().take(np.array([2])), w, gmv_scale=2.0)
    together = blend(heads(), w, gmv_scale=2.0)[2]
    assert alone[0] == together


def test_budget_mode_prices_risk_and_complaints_by_their_duals() -> None:
    policy = load_policy(overrides=["blend.mode=budgets", "budgets.risk=0.05", "budgets.complaint=0.02"])
    w = BlendWeights.from_policy(policy, budget_prices={"risk": 0.7, "complaint": 0.2})
    assert (w.risk, w.complaint) == (0.7, 0.2)
    assert w.gmv == policy.blend.gmv


def test_overrides_within_range_apply_and_outside_are_rejected() -> None:
    policy = load_policy()
    w = BlendWeights.from_policy(policy)
    assert w.with_overrides({"gmv": 2.5}, policy).gmv == 2.5
    with pytest.raises(BlendInputError, match=r"risk = 0\.1 is outside the allowed range \[0\.5, 5\]"):
        w.with_overrides({"risk": 0.1}, policy)
    with pytest.raises(BlendInputError, match=r"unknown head 'ctr'"):
        w.with_overrides({"ctr": 1.0}, policy)


@pytest.mark.parametrize(
    ("field", "values", "message"),
    [
        ("prosperity", [0.1, 1.2, 0.0], r"'prosperity'\[1\] = 1\.2; expected a probability in \[0, 1\]"),
        ("gmv", [1.0, -1.0, 0.0], r"'gmv'\[1\] = -1\.0; expected a finite value >= 0"),
        ("risk", [0.1, float("nan"), 0.0], r"'risk'\[1\] = nan"),
        ("complaint", [0.1, 0.2], r"'complaint' has shape \(2,\); expected \(3,\)"),
    ],
)
def test_bad_predictions_are_named(field: str, values: list[float], message: str) -> None:
    data = {"gmv": [1.0, 2.0, 3.0], "prosperity": [0.1, 0.2, 0.3], "risk": [0.0, 0.1, 0.2],
            "complaint": [0.0, 0.01, 0.02]}
    data[field] = values
    with pytest.raises(BlendInputError, match=message):
        HeadPredictions.of(**data)


def test_suggest_gmv_scale_is_a_quantile_of_positive_predictions() -> None:
    assert suggest_gmv_scale(np.arange(11.0), quantile=0.5) == pytest.approx(5.5)
    assert suggest_gmv_scale(np.zeros(3)) == 1.0
