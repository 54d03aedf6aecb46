"""Slates from traffic weights: deterministic order, sampled first-slot probabilities equal the weights."""

from __future__ import annotations

import numpy as np

from fairness.slate import slate_from_weights, top_k


def test_deterministic_orders_by_weight_then_tie_break() -> None:
    w = np.array([[0.25, 0.5, 0.25, 0.0, 0.0]])
    tie = np.array([[1.0, 0.0, 2.0, 5.0, 4.0]])
    positions, propensity = slate_from_weights(w, 5, tie_break=tie)
    assert positions.tolist() == [[1, 2, 0, 3, 4]]
    assert (propensity == 1).all()


def test_sampled_first_slot_follows_the_weights() -> None:
    w = np.array([[0.5, 0.3, 0.2, 0.0]])
    rng = np.random.default_rng(1)
    draws = 20000
    rows = np.repeat(w, draws, axis=0)
    positions, propensity = slate_from_weights(rows, 3, tie_break=np.zeros_like(rows), rng=rng)
    first = np.bincount(positions[:, 0], minlength=4) / draws
    np.testing.assert_allclose(first, w[0], atol=0.015)
    assert (positions[:, :3] != 3).all()  # the zero-weight candidate never precedes positive ones
    # logged propensity of slot 1 is the weight itself
    np.testing.assert_allclose(propensity[:, 0], w[0][positions[:, 0]])


def test_sampled_fills_with_zero_weight_candidates_after_positive_ones() -> None:
    w = np.array([[0.0, 1.0, 0.0, 0.0]])
    positions, propensity = slate_from_weights(w, 3, tie_break=np.array([[3.0, 0.0, 1.0, 2.0]]),
                                               rng=np.random.default_rng(0))
    assert positions.tolist() == [[1, 0, 3]]
    assert propensity.tolist() == [[1.0, 1.0, 1.0]]


def test_top_k_breaks_ties_by_lower_column() -> None:
    assert top_k(np.array([[1.0, 3.0, 3.0, 0.0]]), 2).tolist() == [[1, 2]]
