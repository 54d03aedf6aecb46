"""Tests for fairness.metrics: hand-computed cases, references and properties."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairness.metrics import (
    aggregate_by_group,
    bottom_share,
    cluster_entropy,
    cluster_gini,
    cluster_top_share,
    exposure_entropy,
    gini,
    group_exposure_ratios,
    lorenz_curve,
    max_min_share,
    merit_disparity,
    share_of,
    spearman,
    top_share,
)

# Exposures are exact zeros or values in [1e-6, 1e6]: the upper bound keeps the
# brute-force references free of overflow, the lower one keeps subnormal floats (whose
# halves round to 0) out of exact-invariance checks.
exposure_values = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e6))
exposure_lists = st.lists(exposure_values, min_size=1, max_size=40)
positive_total_lists = exposure_lists.filter(lambda values: sum(values) > 0)


def brute_force_gini(values: list[float]) -> float:
    """Compute sum_i sum_j |E_i - E_j| / (2 n^2 mean(E)) term by term."""
    n = len(values)
    mean = sum(values) / n
    total_difference = sum(abs(a - b) for a in values for b in values)
    return total_difference / (2 * n * n * mean)


# ------------------------------------------------------------------------------- gini


def test_gini_of_equal_exposure_is_zero() -> None:
    assert gini([5.0] * 10) == pytest.approx(0.0, abs=1e-12)
    assert gini([3]) == 0.0


def test_gini_of_all_zero_exposure_is_zero() -> None:
    assert gini([0.0, 0.0, 0.0]) == 0.0


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000])
def test_gini_one_takes_all_is_n_minus_one_over_n(n: int) -> None:
    exposure = np.zeros(n)
    exposure[n // 2] = 7.0
    assert gini(exposure) == pytest.approx((n - 1) / n, abs=1e-12)


def test_gini_hand_computed() -> None:
    # Pairwise |differences| of [1, 2, 3, 4]: 1,2,3,1,2,1 -> 10; ordered pairs -> 20.
    # G = 20 / (2 * 4^2 * 2.5) = 20 / 80 = 0.25.
    assert gini([1, 2, 3, 4]) == pytest.approx(0.25)
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)


@given(positive_total_lists)
def test_gini_matches_brute_force_double_sum(values: list[float]) -> None:
    assert gini(values) == pytest.approx(brute_force_gini(values), abs=1e-9)


@given(
    positive_total_lists,
    st.floats(min_value=1e-3, max_value=1e3),
    st.randoms(use_true_random=False),
)
def test_gini_is_scale_and_permutation_invariant(
    values: list[float], scale: float, rng: random.Random
) -> None:
    shuffled = list(values)
    rng.shuffle(shuffled)
    reference = gini(values)
    assert gini(np.asarray(values) * scale) == pytest.approx(reference, abs=1e-9)
    assert gini(shuffled) == pytest.approx(reference, abs=1e-9)


@given(exposure_lists)
def test_gini_is_within_bounds(values: list[float]) -> None:
    n = len(values)
    assert 0.0 <= gini(values) <= (n - 1) / n + 1e-12


# ----------------------------------------------------------------------- lorenz curve


@given(exposure_lists)
def test_lorenz_endpoints_and_monotonicity(values: list[float]) -> None:
    population, exposure = lorenz_curve(values)
    n = len(values)
    assert population.shape == exposure.shape == (n + 1,)
    assert (population[0], exposure[0]) == (0.0, 0.0)
    assert (population[-1], exposure[-1]) == (1.0, 1.0)
    assert np.all(np.diff(population) > 0)
    assert np.all(np.diff(exposure) >= -1e-12)
    # Sorted ascending, so the curve never rises above the equality diagonal.
    assert np.all(exposure <= population + 1e-12)


def test_lorenz_hand_computed() -> None:
    population, exposure = lorenz_curve([4, 1, 3, 2])
    np.testing.assert_allclose(population, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(exposure, [0.0, 0.1, 0.3, 0.6, 1.0])
    # Trapezoid area = 0.25 * (0.1/2 + (0.1+0.3)/2 + (0.3+0.6)/2 + (0.6+1)/2) = 0.375;
    # 1 - 2 * 0.375 = 0.25 = gini([1, 2, 3, 4]).
    assert np.trapezoid(exposure, population) == pytest.approx(0.375)


@given(positive_total_lists)
def test_gini_equals_one_minus_twice_trapezoid_area_under_lorenz(
    values: list[float],
) -> None:
    # With G = sum|E_i - E_j| / (2 n^2 mean) and the piecewise-linear Lorenz curve
    # through (k/n, L_k), G = 1 - 2 * AUC holds exactly (no n/(n-1) correction):
    # both sides equal (n + 1)/n - (2/n) sum_k L_k.
    population, exposure = lorenz_curve(values)
    area = float(np.trapezoid(exposure, population))
    assert gini(values) == pytest.approx(1.0 - 2.0 * area, abs=1e-9)


def test_lorenz_of_all_zero_is_the_diagonal() -> None:
    population, exposure = lorenz_curve([0, 0, 0, 0])
    np.testing.assert_array_equal(population, exposure)


# -------------------------------------------------------- entropy, top share, max-min


def test_entropy_of_equal_exposure_is_one() -> None:
    assert exposure_entropy([2.0] * 8) == pytest.approx(1.0)
    assert exposure_entropy([2.0] * 8, normalized=False) == pytest.approx(math.log(8))


def test_entropy_of_one_takes_all_is_zero() -> None:
    assert exposure_entropy([0, 0, 9, 0]) == pytest.approx(0.0)


def test_entropy_hand_computed_and_single_account() -> None:
    # Shares 1/4, 1/4, 1/2: H = 2 * (1/4) ln 4 + (1/2) ln 2 = 1.5 ln 2.
    assert exposure_entropy([1, 1, 2], normalized=False) == pytest.approx(
        1.5 * math.log(2)
    )
    assert exposure_entropy([1, 1, 2]) == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert exposure_entropy([5.0]) == 1.0


@given(exposure_lists)
def test_normalized_entropy_is_within_unit_interval(values: list[float]) -> None:
    assert 0.0 <= exposure_entropy(values) <= 1.0


def test_top_share_of_equal_and_one_takes_all() -> None:
    assert top_share(np.ones(100)) == pytest.approx(0.01)
    one_takes_all = np.zeros(100)
    one_takes_all[3] = 1.0
    assert top_share(one_takes_all) == pytest.approx(1.0)


def test_top_share_hand_computed_and_rounding() -> None:
    assert top_share([1, 2, 3, 4], fraction=0.5) == pytest.approx(0.7)
    # At least one holder, even when fraction * n < 1.
    assert top_share([1, 2, 3, 4], fraction=0.01) == pytest.approx(0.4)
    # 0.07 * 100 is 7.000000000000001 in floating point; it must still mean 7 holders.
    assert top_share(np.ones(100), fraction=0.07) == pytest.approx(0.07)
    assert top_share([0, 0], fraction=0.5) == 0.0


def test_bottom_share_hand_computed_and_mirrors_top_share() -> None:
    assert bottom_share([4, 1, 3, 2], fraction=0.5) == pytest.approx(0.3)
    assert bottom_share([4, 1, 3, 2], fraction=0.01) == pytest.approx(0.1)  # at least one holder
    assert bottom_share(np.ones(100), fraction=0.07) == pytest.approx(0.07)
    assert bottom_share([0, 0]) == 0.0
    values = np.random.default_rng(0).pareto(1.5, 100)
    assert bottom_share(values, fraction=0.3) + top_share(values, fraction=0.7) == pytest.approx(1.0)


def test_max_min_share() -> None:
    assert max_min_share([3, 3, 3]) == pytest.approx(1.0)
    assert max_min_share([2, 4, 6]) == pytest.approx(0.5)
    assert max_min_share([0, 4, 6]) == 0.0
    assert max_min_share([0, 0]) == 1.0


def test_max_min_share_with_targets() -> None:
    # Targets 1/2, 1/4, 1/4 of T = 8 owe 4, 2, 2.
    # Exposure [3, 2, 3] meets 3/4, 2/2, 3/2 of that -> min 0.75.
    assert max_min_share([3, 2, 3], target_shares=[2, 1, 1]) == pytest.approx(0.75)
    assert max_min_share([4, 2, 2], target_shares=[0.5, 0.25, 0.25]) == pytest.approx(
        1.0
    )
    # A zero target owes nothing, so zero exposure there does not lower the minimum.
    assert max_min_share([0, 5, 5], target_shares=[0, 1, 1]) == pytest.approx(1.0)


def test_share_of() -> None:
    exposure = [1.0, 2.0, 3.0, 4.0]
    assert share_of(exposure, np.array([True, False, False, True])) == pytest.approx(
        0.5
    )
    assert share_of(exposure, np.zeros(4, dtype=bool)) == 0.0
    assert share_of([0.0, 0.0], np.array([True, True])) == 0.0


# -------------------------------------------------------------------- merit disparity


def test_merit_disparity_is_zero_when_exposure_is_proportional_to_merit() -> None:
    merit = np.array([1.0, 3.0, 2.0, 4.0])
    groups = np.array(["a", "b", "a", "c"])
    assert merit_disparity(10 * merit, merit, groups) == pytest.approx(0.0, abs=1e-12)
    ratios = group_exposure_ratios(10 * merit, merit, groups)
    assert ratios == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})


def test_merit_disparity_hand_computed() -> None:
    # Group a: exposure share 6/10 over merit share 1/4 -> 2.4.
    # Group b: 4/10 over 3/4 -> 8/15.
    # Disparity = 2.4 - 8/15 = 28/15.
    exposure = [6, 2, 2]
    merit = [1, 1, 2]
    groups = ["a", "b", "b"]
    assert group_exposure_ratios(exposure, merit, groups) == pytest.approx(
        {"a": 2.4, "b": 8 / 15}
    )
    assert merit_disparity(exposure, merit, groups) == pytest.approx(28 / 15)


def test_merit_disparity_skips_groups_without_merit() -> None:
    ratios = group_exposure_ratios([1, 1, 2], [1, 1, 0], [0, 1, 2])
    assert set(ratios) == {0, 1}
    assert all(isinstance(label, int) for label in ratios)
    assert merit_disparity([1, 1, 2], [1, 1, 0], [0, 1, 2]) == pytest.approx(0.0)


# ---------------------------------------------------------- group and cluster metrics


def test_aggregate_by_group_with_int_and_string_labels() -> None:
    labels, sums = aggregate_by_group([1.0, 2.0, 3.0, 4.0], [7, 3, 7, 3])
    np.testing.assert_array_equal(labels, [3, 7])
    np.testing.assert_allclose(sums, [6.0, 4.0])
    labels, sums = aggregate_by_group([1.0, 2.0, 3.0], ["op-b", "op-a", "op-b"])
    assert labels.tolist() == ["op-a", "op-b"]
    np.testing.assert_allclose(sums, [2.0, 4.0])


def test_splitting_an_operator_into_accounts_leaves_cluster_gini_unchanged() -> None:
    operator_exposure = np.array([10.0, 20.0, 70.0])
    operator_ids = np.array(["a", "b", "c"])
    # Operator c splits its 70 across seven sybil accounts of 10 each.
    split_exposure = np.array([10.0, 20.0] + [10.0] * 7)
    split_ids = np.array(["a", "b"] + ["c"] * 7)

    assert cluster_gini(split_exposure, split_ids) == pytest.approx(
        gini(operator_exposure)
    )
    assert cluster_gini(split_exposure, split_ids) == pytest.approx(
        cluster_gini(operator_exposure, operator_ids)
    )
    # Account-level Gini is fooled by the split: it now looks much more equal.
    assert gini(split_exposure) < gini(operator_exposure) - 0.1
    assert cluster_top_share(split_exposure, split_ids, fraction=0.3) == pytest.approx(
        0.7
    )
    assert cluster_entropy(split_exposure, split_ids) == pytest.approx(
        exposure_entropy(operator_exposure)
    )


@given(positive_total_lists, st.data())
def test_cluster_metrics_are_invariant_to_random_splits(
    values: list[float], data: st.DataObject
) -> None:
    n_clusters = len(values)
    pieces_per_cluster = data.draw(
        st.lists(st.integers(1, 4), min_size=n_clusters, max_size=n_clusters)
    )
    cluster_ids = np.repeat(np.arange(n_clusters), pieces_per_cluster)
    # Split each cluster's exposure evenly across its accounts.
    account_exposure = np.repeat(
        np.asarray(values) / pieces_per_cluster, pieces_per_cluster
    )
    assert cluster_gini(account_exposure, cluster_ids) == pytest.approx(
        gini(values), abs=1e-9
    )
    assert cluster_entropy(account_exposure, cluster_ids) == pytest.approx(
        exposure_entropy(values), abs=1e-9
    )


# --------------------------------------------------------------------------- spearman


def test_spearman_hand_cases() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks with ties: x -> [1, 2.5, 2.5, 4], y -> [1, 3, 2, 4];
    # centered dot product 4.5 over sqrt(4.5 * 5) = sqrt(0.9).
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # Monotone transforms do not change rank correlation; negative inputs are allowed.
    assert spearman(
        [-3.0, 0.5, 2.0], [math.exp(-3.0), math.exp(0.5), math.exp(2.0)]
    ) == pytest.approx(1.0)


def test_spearman_is_nan_for_constant_or_too_short_input() -> None:
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(spearman([1], [2]))
    assert math.isnan(spearman([], []))


@given(
    st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=2, max_size=30)
)
def test_spearman_matches_pearson_of_brute_force_average_ranks(
    pairs: list[tuple[int, int]],
) -> None:
    x = np.array([a for a, _ in pairs], dtype=float)
    y = np.array([b for _, b in pairs], dtype=float)

    def average_ranks(values: np.ndarray) -> np.ndarray:
        # Rank = 1 + number strictly below + half of the other ties.
        return np.array(
            [1 + np.sum(values < v) + (np.sum(values == v) - 1) / 2 for v in values]
        )

    rank_x, rank_y = average_ranks(x), average_ranks(y)
    if np.ptp(rank_x) == 0 or np.ptp(rank_y) == 0:
        assert math.isnan(spearman(x, y))
    else:
        assert spearman(x, y) == pytest.approx(
            float(np.corrcoef(rank_x, rank_y)[0, 1]), abs=1e-9
        )


# ---------------------------------------------------------------- validation messages


def test_two_dimensional_input_names_the_shape() -> None:
    with pytest.raises(
        ValueError, match=r"expected a 1-D array.*received shape \(3, 2\).*Flatten"
    ):
        gini(np.ones((3, 2)))


def test_negative_value_names_first_offending_index_and_value() -> None:
    with pytest.raises(
        ValueError, match=r"expected .*non-negative.*received -2\.0 at index 1"
    ) as error:
        gini([1.0, -2.0, -3.0])
    assert "index 2" not in str(error.value)


def test_nan_names_first_offending_index() -> None:
    with pytest.raises(ValueError, match=r"expected .*received nan at index 2"):
        top_share([1.0, 2.0, float("nan")])


def test_empty_input_raises() -> None:
    with pytest.raises(ValueError, match=r"expected .*received an empty array"):
        gini([])


def test_non_numeric_dtype_names_the_dtype() -> None:
    with pytest.raises(ValueError, match=r"expected .*received an array of dtype <U1"):
        gini(["a", "b"])


def test_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(
        ValueError, match=r"merit has length 2 but exposure has length 3; expected"
    ):
        merit_disparity([1, 2, 3], [1, 2], ["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"groups has length 4 but values has length 3; expected"
    ):
        cluster_gini([1, 2, 3], [0, 0, 1, 1])
    with pytest.raises(
        ValueError, match=r"y has length 1 but x has length 2; expected"
    ):
        spearman([1, 2], [1])


def test_merit_errors() -> None:
    with pytest.raises(
        ValueError, match=r"merit: expected .*received -1\.0 at index 0"
    ):
        merit_disparity([1, 2], [-1, 2], ["a", "b"])
    with pytest.raises(ValueError, match=r"merit: expected at least one positive"):
        merit_disparity([1, 2], [0, 0], ["a", "b"])


def test_unsortable_mixed_labels_are_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"groups: expected sortable labels .*received"
    ):
        aggregate_by_group([1.0, 2.0], np.array([None, "a"], dtype=object))


def test_invalid_fraction_and_mask() -> None:
    with pytest.raises(
        ValueError, match=r"fraction: expected a number in \(0, 1\]; received 0"
    ):
        top_share([1, 2], fraction=0.0)
    with pytest.raises(
        ValueError, match=r"mask: expected a 1-D boolean array; received dtype int64"
    ):
        share_of([1, 2], np.array([1, 0]))
