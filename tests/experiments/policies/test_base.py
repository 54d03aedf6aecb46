from __future__ import annotations

import itertools

import numpy as np
import pytest

from experiments.policies.base import deterministic_slate, normalized, plackett_luce_slate, top_k


def test_top_k_orders_best_first_and_breaks_ties_by_column() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.2], [3.0, 2.0, 1.0, 0.0, -1.0]])
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    assert top_k(scores, 5).tolist() == [[1, 3, 2, 4, 0], [0, 1, 2, 3, 4]]


def test_top_k_matches_a_full_stable_sort_on_random_rows() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(200, 30)).astype(float)  # many ties
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    assert np.array_equal(top_k(scores, 7), expected)


def test_deterministic_slate_has_propensity_one() -> None:
    slate = deterministic_slate(np.random.default_rng(1).random((4, 9)), 3)
    assert slate.positions.shape == (4, 3)
    assert np.all(slate.propensity == 1.0)


def test_plackett_luce_propensities_are_the_exact_step_probabilities() -> None:
    logits = np.array([[0.5, -1.0, 2.0, 0.0]])
    slate = plackett_luce_slate(logits, 3, np.random.default_rng(3))
    weights = np.exp(logits[0])
    remaining = weights.sum()
    for slot, column in enumerate(slate.positions[0]):
        assert slate.propensity[0, slot] == pytest.approx(weights[column] / remaining)
        remaining -= weights[column]


def test_plackett_luce_sampling_frequencies_match_logged_propensities() -> None:
    """Monte Carlo: the empirical frequency of each 2-prefix equals the product of logged step propensities."""
    logits = np.tile(np.array([1.0, 0.0, -0.5, 0.3]), (40_000, 1))
    slate = plackett_luce_slate(logits, 2, np.random.default_rng(7))
    assert np.all((slate.propensity > 0) & (slate.propensity <= 1))
    prefix = slate.positions[:, 0] * 4 + slate.positions[:, 1]
    logged = slate.propensity.prod(axis=1)
    for first, second in itertools.permutations(range(4), 2):
        hit = prefix == first * 4 + second
        expected = float(logged[hit][0]) if hit.any() else 0.0
        assert hit.mean() == pytest.approx(expected, abs=0.01)


def test_uniform_plackett_luce_gives_one_over_remaining() -> None:
    slate = plackett_luce_slate(np.zeros((5, 10)), 4, np.random.default_rng(0))
    assert np.allclose(slate.propensity, 1.0 / np.array([10, 9, 8, 7]))
    assert all(len(set(row)) == 4 for row in slate.positions.tolist())


def test_normalized_scales_rows_by_their_largest_magnitude() -> None:
    values = np.array([[2.0, -4.0, 1.0], [0.0, 0.0, 0.0]])
    assert normalized(values).tolist() == [[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]]
