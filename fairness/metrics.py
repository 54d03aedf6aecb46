"""Exposure-fairness metrics over accounts, groups and operator clusters.

All metrics take a 1-D array of non-negative exposures ``E`` (one entry per account),
with ``n = len(E)`` and ``T = sum(E)``; shares are ``p_i = E_i / T``.

- ``gini``: G = sum_i sum_j |E_i - E_j| / (2 n^2 mean(E)); 0 = equal, (n-1)/n = one
  takes all.
- ``lorenz_curve``: points (k/n, sum of the k smallest E_i / T) for k = 0..n; the
  diagonal is equality.
- ``exposure_entropy``: H = -sum_i p_i log p_i, divided by log n when normalized
  (1 = equal, 0 = one takes all).
- ``top_share``: sum of the k = max(1, ceil(fraction * n)) largest E_i, divided by T.
- ``bottom_share``: the same for the k smallest (default fraction 0.1).
- ``max_min_share``: min_i E_i / (rho_i T) with rho_i = 1/n by default, i.e.
  min_i E_i / mean(E).
- ``merit_disparity``: max_g r_g - min_g r_g, r_g = (E(g) / T) / (M(g) / sum(M)) for
  each group g with positive merit M(g).
- ``spearman``: Pearson correlation of the average ranks of x and y (ties share their
  mean rank).
- ``share_of``: sum of E over a boolean mask, divided by T.
- ``cluster_gini`` / ``cluster_top_share`` / ``cluster_entropy``: the account-level
  metric applied to exposure summed per cluster label, so an operator cannot look
  "fairer" by splitting into many accounts.

Zero total exposure is treated as "nothing to be unequal about": Gini is 0, normalized
entropy and max-min share are 1, the Lorenz curve is the diagonal, and share metrics
(top share, share of a subset) are 0 because nobody holds any exposure. Empty inputs
raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

__all__ = [
    "aggregate_by_group",
    "average_ranks",
    "bottom_share",
    "cluster_entropy",
    "cluster_gini",
    "cluster_top_share",
    "exposure_entropy",
    "gini",
    "group_exposure_ratios",
    "lorenz_curve",
    "max_min_share",
    "merit_disparity",
    "share_of",
    "spearman",
    "top_share",
]

# numpy dtype kinds accepted as numbers: bool, signed int, unsigned int, float.
# Strings, objects and complex numbers are rejected rather than silently coerced.
_NUMERIC_KINDS = "biuf"


# ------------------------------------------------------------------------- validation


def _as_finite_1d(
    values: ArrayLike, name: str, *, expected: str, fix: str, allow_empty: bool = False
) -> FloatArray:
    """Convert to a 1-D float64 array of finite numbers, or raise a ValueError."""
    raw = np.asarray(values)
    if raw.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{name}: expected {expected}; received an array of dtype {raw.dtype} "
            f"(shape {raw.shape}). Convert it to numbers first, "
            "e.g. np.asarray(..., dtype=float)."
        )
    if raw.ndim != 1:
        raise ValueError(
            f"{name}: expected {expected}; received shape {raw.shape}. {fix}"
        )
    if raw.size == 0 and not allow_empty:
        raise ValueError(
            f"{name}: expected {expected} with at least one entry; received an empty "
            "array. Metrics over zero accounts are undefined; skip the computation "
            "for empty slates."
        )
    array = raw.astype(np.float64, copy=False)
    non_finite = ~np.isfinite(array)
    if non_finite.any():
        index = int(np.argmax(non_finite))
        raise ValueError(
            f"{name}: expected {expected}; received {float(array[index])!r} at index "
            f"{index} (first non-finite entry). Fill or drop missing values before "
            "computing metrics."
        )
    return array


def _check_exposure(values: ArrayLike, name: str = "exposure") -> FloatArray:
    """Return ``values`` as a 1-D float64 array of finite, non-negative numbers.

    Otherwise raise ValueError whose message names what was received (shape, dtype, or
    the first offending index and value), what was expected, and how to fix it.
    """
    expected = "a 1-D array of finite, non-negative numbers"
    array = _as_finite_1d(
        values,
        name,
        expected=expected,
        fix="Flatten it or pass one value per account.",
    )
    negative = array < 0
    if negative.any():
        index = int(np.argmax(negative))
        raise ValueError(
            f"{name}: expected {expected}; received {float(array[index])!r} at index "
            f"{index} (first negative entry). Exposure counts and shares cannot be "
            "negative; clip or drop the offending entries upstream."
        )
    return array


def _check_same_length(
    reference: FloatArray, ref_name: str, other_len: int, other_name: str
) -> None:
    if other_len != reference.shape[0]:
        raise ValueError(
            f"{other_name} has length {other_len} but {ref_name} has length "
            f"{reference.shape[0]}; expected one {other_name} entry per {ref_name} "
            "entry. Align both arrays on the same accounts."
        )


def _check_labels(
    labels: ArrayLike, name: str, reference: FloatArray, ref_name: str
) -> NDArray[np.generic]:
    """Return ``labels`` as a 1-D array, one label per entry of ``reference``."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D array of labels (ints or strings); received shape "
            f"{array.shape}. Pass one label per account."
        )
    _check_same_length(reference, ref_name, array.shape[0], name)
    return array


def _check_fraction(fraction: float) -> None:
    if not (0.0 < fraction <= 1.0):
        raise ValueError(
            f"fraction: expected a number in (0, 1]; received {fraction!r}. "
            "Use e.g. 0.01 for the top 1% of holders."
        )


# -------------------------------------------------------------- account-level metrics


def gini(exposure: ArrayLike) -> float:
    """Gini coefficient of exposure: sum_i sum_j |E_i - E_j| / (2 n^2 mean(E)).

    Computed in O(n log n) from the sorted values x_(1) <= ... <= x_(n) with the closed
    form G = 2 sum_i i x_(i) / (n T) - (n + 1) / n, which equals the double sum above.
    Returns 0.0 for equal (including all-zero) exposures and (n-1)/n when one account
    takes all.
    """
    values = _check_exposure(exposure)
    total = values.sum()
    if total == 0:
        return 0.0
    n = len(values)
    # Working in shares keeps the rank-weighted sum O(1)-sized for large counts.
    sorted_shares = np.sort(values / total)
    ascending_rank = np.arange(1, n + 1, dtype=np.float64)
    coefficient = 2.0 * float(ascending_rank @ sorted_shares) / n - (n + 1) / n
    # The closed form can land a few ulps below 0 for equal inputs; Gini is never < 0.
    return max(0.0, coefficient)


def lorenz_curve(exposure: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Lorenz curve as (population_share, exposure_share), each of length n + 1.

    Point k is (k / n, share of total exposure held by the k smallest holders), from
    (0, 0) to (1, 1). For this piecewise-linear curve, gini(E) == 1 - 2 * (trapezoid
    area under the curve) exactly. All-zero exposure yields the diagonal (perfect
    equality), matching ``gini`` == 0.
    """
    values = _check_exposure(exposure)
    n = len(values)
    population_share = np.arange(n + 1, dtype=np.float64) / n
    total = values.sum()
    if total == 0:
        return population_share, population_share.copy()
    exposure_share = np.concatenate(([0.0], np.cumsum(np.sort(values)) / total))
    exposure_share[-1] = 1.0  # pin the endpoint against cumulative rounding error
    return population_share, exposure_share


def exposure_entropy(exposure: ArrayLike, *, normalized: bool = True) -> float:
    """Shannon entropy of exposure shares, H = -sum_i p_i log p_i (natural log).

    When ``normalized``, H / log(n): 1 = perfectly equal, 0 = one account takes all. A
    single account is trivially equal (1.0 normalized). All-zero exposure counts as
    equal: 1.0 normalized, log(n) unnormalized.
    """
    values = _check_exposure(exposure)
    n = len(values)
    total = values.sum()
    if total == 0:
        return 1.0 if normalized else math.log(n)
    shares = values / total
    positive = shares[shares > 0]  # zero shares contribute 0 log 0 = 0
    entropy = float(-(positive * np.log(positive)).sum())
    if not normalized:
        return entropy
    if n == 1:
        return 1.0
    # Clip rounding noise so the normalized value stays in [0, 1].
    return min(1.0, max(0.0, entropy / math.log(n)))


def _holders(n: int, fraction: float) -> int:
    """k = max(1, ceil(fraction * n)), at most n. Rounds before ceil: 0.07 * 100 = 7.000000000000001 must
    mean 7 holders, not 8."""
    return min(n, max(1, math.ceil(round(fraction * n, 9))))


def top_share(exposure: ArrayLike, *, fraction: float = 0.01) -> float:
    """Share of total exposure held by the top k = max(1, ceil(fraction * n)) holders.

    Returns 0.0 when total exposure is 0 (nobody holds a share).
    """
    _check_fraction(fraction)
    values = _check_exposure(exposure)
    n, total = len(values), values.sum()
    if total == 0:
        return 0.0
    k = _holders(n, fraction)
    # np.partition puts the k largest values in the last k slots in O(n), no full sort.
    largest = np.partition(values, n - k)[n - k :]
    return float(largest.sum() / total)


def bottom_share(exposure: ArrayLike, *, fraction: float = 0.1) -> float:
    """Share of total exposure held by the bottom k = max(1, ceil(fraction * n)) holders.

    The mirror of `top_share`; divided by k / n it is the bottom's mean exposure over everyone's
    (1 = equal), a steadier view of the worst-off than `max_min_share`'s single account.
    Returns 0.0 when total exposure is 0.
    """
    _check_fraction(fraction)
    values = _check_exposure(exposure)
    total = values.sum()
    if total == 0:
        return 0.0
    k = _holders(len(values), fraction)
    smallest = np.partition(values, k - 1)[:k]
    return float(smallest.sum() / total)


def max_min_share(
    exposure: ArrayLike, *, target_shares: ArrayLike | None = None
) -> float:
    """Worst-off account's exposure relative to its target: min_i E_i / (rho_i T).

    With the default equal targets rho_i = 1/n this is min_i E_i / mean(E): 1 = equal,
    0 = someone gets nothing. ``target_shares`` (non-negative, normalized here to sum
    to 1) gives each account its own target; accounts with a zero target are owed
    nothing and are skipped. Returns 1.0 when total exposure is 0 (no account is worse
    off than another).
    """
    values = _check_exposure(exposure)
    total = values.sum()
    if total == 0:
        return 1.0
    if target_shares is None:
        return float(values.min() / values.mean())
    targets = _check_exposure(target_shares, "target_shares")
    _check_same_length(values, "exposure", targets.shape[0], "target_shares")
    target_total = targets.sum()
    if target_total == 0:
        raise ValueError(
            "target_shares: expected at least one positive target; received all "
            "zeros. Omit target_shares to use equal targets."
        )
    owed = targets > 0
    ratios = values[owed] / (targets[owed] / target_total * total)
    return float(ratios.min())


def share_of(exposure: ArrayLike, mask: ArrayLike) -> float:
    """Exposure share of the masked subset: sum(E[mask]) / T; 0.0 when T is 0."""
    values = _check_exposure(exposure)
    selected = np.asarray(mask)
    if selected.dtype != np.bool_ or selected.ndim != 1:
        raise ValueError(
            f"mask: expected a 1-D boolean array; received dtype {selected.dtype} "
            f"with shape {selected.shape}. Build it with a comparison, "
            "e.g. is_original == 1."
        )
    _check_same_length(values, "exposure", selected.shape[0], "mask")
    total = values.sum()
    if total == 0:
        return 0.0
    return float(values[selected].sum() / total)


# ---------------------------------------------------------- group and cluster metrics


def aggregate_by_group(
    values: ArrayLike, groups: ArrayLike
) -> tuple[NDArray[np.generic], FloatArray]:
    """Sum ``values`` per group label: returns (sorted unique labels, per-label sums).

    Labels may be any integers or strings (one type per call), via np.unique and
    np.bincount rather than a Python loop over groups.
    """
    array = _check_exposure(values, "values")
    group_labels = _check_labels(groups, "groups", array, "values")
    try:
        labels, label_index = np.unique(group_labels, return_inverse=True)
    except TypeError as error:  # e.g. an object array mixing None, ints and strings
        raise ValueError(
            f"groups: expected sortable labels of one type (all ints or all strings); "
            f"received dtype {group_labels.dtype} that numpy cannot sort ({error}). "
            "Cast the labels to str or int first."
        ) from error
    sums = np.bincount(label_index.ravel(), weights=array, minlength=labels.shape[0])
    return labels, sums.astype(np.float64, copy=False)


def cluster_gini(exposure: ArrayLike, clusters: ArrayLike) -> float:
    """Gini over per-cluster total exposure.

    Operator-level Gini is ``cluster_gini(account_exposure, operator_id)``.
    """
    _, cluster_exposure = aggregate_by_group(exposure, clusters)
    return gini(cluster_exposure)


def cluster_top_share(
    exposure: ArrayLike, clusters: ArrayLike, *, fraction: float = 0.01
) -> float:
    """Share of total exposure held by the top max(1, ceil(fraction * n_clusters))."""
    _, cluster_exposure = aggregate_by_group(exposure, clusters)
    return top_share(cluster_exposure, fraction=fraction)


def cluster_entropy(
    exposure: ArrayLike, clusters: ArrayLike, *, normalized: bool = True
) -> float:
    """Entropy of per-cluster exposure shares (over log(n_clusters) if normalized)."""
    _, cluster_exposure = aggregate_by_group(exposure, clusters)
    return exposure_entropy(cluster_exposure, normalized=normalized)


def group_exposure_ratios(
    exposure: ArrayLike, merit: ArrayLike, groups: ArrayLike
) -> dict[Hashable, float]:
    """Per group g with positive merit: (exposure share of g) / (merit share of g).

    1.0 means the group gets exposure exactly in proportion to its merit; above 1 it is
    over-exposed. Groups whose total merit is 0 have no defined ratio and are left out.
    Keys are Python scalars (int, str, ...) converted from the labels in ``groups``.
    """
    exposure_values = _check_exposure(exposure)
    merit_values = _check_exposure(merit, "merit")
    _check_same_length(exposure_values, "exposure", merit_values.shape[0], "merit")
    merit_total = merit_values.sum()
    if merit_total == 0:
        raise ValueError(
            "merit: expected at least one positive merit value; received all zeros. "
            "Exposure-to-merit ratios are undefined without merit; check the merit "
            "column."
        )
    labels, group_exposure = aggregate_by_group(exposure_values, groups)
    _, group_merit = aggregate_by_group(merit_values, groups)
    exposure_total = exposure_values.sum()
    exposure_share = (
        group_exposure / exposure_total
        if exposure_total > 0
        else np.zeros_like(group_exposure)
    )
    has_merit = group_merit > 0
    ratios = exposure_share[has_merit] / (group_merit[has_merit] / merit_total)
    return dict(zip(labels[has_merit].tolist(), ratios.tolist(), strict=True))


def merit_disparity(exposure: ArrayLike, merit: ArrayLike, groups: ArrayLike) -> float:
    """Spread of exposure-to-merit ratios: max_g ratio_g - min_g ratio_g.

    Taken over groups with positive merit (see ``group_exposure_ratios``); 0 means every
    group gets exposure in proportion to its merit.
    """
    ratios = np.fromiter(
        group_exposure_ratios(exposure, merit, groups).values(), dtype=np.float64
    )
    return float(ratios.max() - ratios.min())


# ------------------------------------------------------------------- rank correlation


def average_ranks(values: FloatArray) -> FloatArray:
    """Return 1-based ranks where tied values share the mean of the ranks they span."""
    _, tie_index, tie_counts = np.unique(
        values, return_inverse=True, return_counts=True
    )
    last_rank = np.cumsum(tie_counts)  # rank of the last member of each tie block
    first_rank = last_rank - tie_counts + 1
    mean_rank = (first_rank + last_rank) / 2.0
    return mean_rank[tie_index.ravel()].astype(np.float64, copy=False)


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation with average ranks for ties.

    Returns nan when n < 2 or either input is constant (the correlation is undefined).
    Inputs may be any finite real numbers (negative values are allowed).
    """
    expected = "a 1-D array of finite numbers"
    fix = "Flatten it or pass one value per item."
    x_values = _as_finite_1d(x, "x", expected=expected, fix=fix, allow_empty=True)
    y_values = _as_finite_1d(y, "y", expected=expected, fix=fix, allow_empty=True)
    _check_same_length(x_values, "x", y_values.shape[0], "y")
    n = len(x_values)
    if n < 2:
        return math.nan
    # Average ranks of n items always have mean (n + 1) / 2, ties or not.
    x_centered = average_ranks(x_values) - (n + 1) / 2
    y_centered = average_ranks(y_values) - (n + 1) / 2
    x_norm = math.sqrt(float(x_centered @ x_centered))
    y_norm = math.sqrt(float(y_centered @ y_centered))
    if x_norm == 0 or y_norm == 0:
        return math.nan
    correlation = float(x_centered @ y_centered) / (x_norm * y_norm)
    return min(1.0, max(-1.0, correlation))
