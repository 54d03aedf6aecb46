"""Per-head evaluation metrics for the three head kinds of `mtl/spec.py`, in vectorized numpy.

Predictions are what `mtl.losses.predict_head` returns, one value per row:

- `binary`:     probability -> auc, logloss, ece, calibration_ratio, positive_rate, n.
- `ziln`:       expected value p * exp(mu + sigma^2 / 2) -> auc_purchase (labels > 0 scored by the
                expected value), rmse_log, normalized_gini, spearman, calibration_ratio, n.
- `regression`: value -> rmse, mae, spearman, n.

Definitions (n rows, labels y, predictions p):

- `auc`: Mann-Whitney U / (n_pos n_neg) from average ranks, so tied scores count 1/2 per pair.
- `logloss`: -mean(y log p + (1 - y) log(1 - p)), p clipped to [eps, 1 - eps].
- `expected_calibration_error`: sum over equal-width bins b of (n_b / n) |mean(y_b) - mean(p_b)|.
- `calibration_ratio`: sum(p) / sum(y); 1 = calibrated in total, > 1 = over-predicts.
- `rmse_log`: RMSE of log1p(y) against log1p(p) (amounts and expected values are >= 0).
- `normalized_gini`: the LTV "normalized Gini" (Wang, Liu & Miao, 2019, arXiv:1912.07753, and the
  Kaggle Porto Seguro form): sort labels by prediction, descending; L_k is the share of total label
  held by the top k rows; gini = mean_k L_k - (n + 1) / (2 n), the (trapezoid) area between that
  gain curve and the diagonal, half the "2 AUC - 1" form of google/lifetime_value. The ratio
  gini(ordered by p) / gini(ordered by y) is 1 for a perfect ranking, about 0 for a random one and
  negative for a reversed one. Rows tied in p get the mean label of their tie block (the expectation
  over every order of the tie), so ties never depend on row order and constant predictions score 0
  (up to rounding). `fairness.metrics.gini` is an order-invariant inequality measure, so it cannot
  serve here; both terms use the same gain curve.
- `spearman`: `fairness.metrics.spearman` (average ranks, nan when either side is constant).

`evaluate_heads` looks labels, predictions and masks up by head name and evaluates each head on its
masked rows only; masked-out rows may hold anything (NaN labels included). Empty or one-class
selections give nan metrics rather than errors, so an evaluation loop over small splits never stops.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fairness.metrics import average_ranks, spearman
from mtl.spec import HEAD_KINDS, HeadKind, HeadSpec

__all__ = [
    "HEAD_METRIC_NAMES",
    "auc",
    "calibration_ratio",
    "evaluate_heads",
    "expected_calibration_error",
    "head_metrics",
    "logloss",
    "mae",
    "normalized_gini",
    "rmse",
    "rmse_log",
    "spearman",
]

FloatArray = NDArray[np.float64]

# The keys `head_metrics` returns per head kind, in order.
HEAD_METRIC_NAMES: dict[HeadKind, tuple[str, ...]] = {
    "binary": ("auc", "logloss", "ece", "calibration_ratio", "positive_rate", "n"),
    "ziln": ("auc_purchase", "rmse_log", "normalized_gini", "spearman", "calibration_ratio", "n"),
    "regression": ("rmse", "mae", "spearman", "n"),
}

# numpy dtype kinds accepted as numbers: bool, signed int, unsigned int, float.
_NUMERIC_KINDS = "biuf"


# --- validation ----------------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str, *, allow_empty: bool = False) -> FloatArray:
    """`values` as a 1-D float64 array of finite numbers, or a ValueError naming received/expected."""
    raw = np.asarray(values)
    if raw.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{name}: received dtype {raw.dtype} (shape {raw.shape}); expected a 1-D array of finite numbers. "
            "Convert it first, e.g. np.asarray(..., dtype=float)."
        )
    if raw.ndim != 1:
        raise ValueError(
            f"{name}: received shape {raw.shape}; expected a 1-D array, one value per row. For a head's raw "
            "outputs (B, k) use mtl.losses.predict_head(head, outputs); squeeze a trailing dimension of size 1."
        )
    if raw.size == 0 and not allow_empty:
        raise ValueError(f"{name}: received an empty array; expected at least one row. Skip empty evaluations.")
    array = raw.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"{name}: received {float(array[index])!r} at index {index} (first non-finite entry); expected finite "
            "numbers. Mask out rows without a label or drop them before computing metrics."
        )
    return array


def _check_binary(values: FloatArray, name: str) -> None:
    bad = (values != 0.0) & (values != 1.0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"{name}: received {float(values[index])!r} at index {index}; expected binary labels in {{0, 1}}. "
            "Threshold amounts first, e.g. labels > 0."
        )


def _check_interval(values: FloatArray, name: str, *, low: float, high: float, what: str) -> None:
    bad = (values < low) | (values > high)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"{name}: received {float(values[index])!r} at index {index}; expected {what} in [{low}, {high}]. "
            f"{_INTERVAL_FIX[what]}"
        )


_INTERVAL_FIX = {
    "probabilities": "Pass probabilities (sigmoid of the logit, as predict_head returns), not logits.",
    "non-negative amounts": "GMV labels and ZILN expected values cannot be negative; check the label column.",
}


def _check_same_length(labels: FloatArray, other: FloatArray, other_name: str) -> None:
    if other.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{other_name}: received length {other.shape[0]}; expected {labels.shape[0]}, one per label. "
            "Compute both on the same rows."
        )


def _pair(labels: ArrayLike, preds: ArrayLike, preds_name: str) -> tuple[FloatArray, FloatArray]:
    y = _as_1d(labels, "labels")
    p = _as_1d(preds, preds_name)
    _check_same_length(y, p, preds_name)
    return y, p


# --- binary --------------------------------------------------------------------------------------


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC: P(score of a random positive > score of a random negative), ties counting 1/2.

    Labels in {0, 1}; scores any finite numbers. nan when only one class is present.
    """
    y, s = _pair(labels, scores, "scores")
    _check_binary(y, "labels")
    n_pos = float(y.sum())
    n_neg = float(y.shape[0]) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(s)  # (n,)
    u = float(ranks @ y) - n_pos * (n_pos + 1) / 2.0  # positive-over-negative pairs, ties 1/2
    return u / (n_pos * n_neg)


def logloss(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps] so it stays finite."""
    y, p = _pair(labels, probs, "probs")
    _check_binary(y, "labels")
    _check_interval(p, "probs", low=0.0, high=1.0, what="probabilities")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def expected_calibration_error(labels: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """ECE over `n_bins` equal-width bins of [0, 1] (p = 1 falls in the last), weighted by bin size."""
    if n_bins < 1:
        raise ValueError(f"n_bins: received {n_bins!r}; expected an integer >= 1, e.g. 10.")
    y, p = _pair(labels, probs, "probs")
    _check_binary(y, "labels")
    _check_interval(p, "probs", low=0.0, high=1.0, what="probabilities")
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)  # (n,)
    label_sums = np.bincount(bins, weights=y, minlength=n_bins)  # (n_bins,)
    prob_sums = np.bincount(bins, weights=p, minlength=n_bins)  # (n_bins,)
    # sum_b (n_b / n) |sum(y_b) / n_b - sum(p_b) / n_b| = sum_b |sum(y_b) - sum(p_b)| / n; empty bins add 0.
    return float(np.abs(label_sums - prob_sums).sum() / y.shape[0])


def calibration_ratio(labels: ArrayLike, preds: ArrayLike) -> float:
    """sum(preds) / sum(labels): 1 = calibrated in total. nan when the labels sum to 0."""
    y, p = _pair(labels, preds, "preds")
    total = float(y.sum())
    return math.nan if total == 0 else float(p.sum()) / total


# --- amounts and values --------------------------------------------------------------------------


def rmse(labels: ArrayLike, preds: ArrayLike) -> float:
    """Root mean squared error."""
    y, p = _pair(labels, preds, "preds")
    return math.sqrt(float(np.mean((p - y) ** 2)))


def mae(labels: ArrayLike, preds: ArrayLike) -> float:
    """Mean absolute error."""
    y, p = _pair(labels, preds, "preds")
    return float(np.mean(np.abs(p - y)))


def rmse_log(labels: ArrayLike, preds: ArrayLike) -> float:
    """RMSE of log1p(amount) against log1p(predicted expected value); both must be >= 0."""
    y, p = _pair(labels, preds, "preds")
    _check_interval(y, "labels", low=0.0, high=math.inf, what="non-negative amounts")
    _check_interval(p, "preds", low=0.0, high=math.inf, what="non-negative amounts")
    return math.sqrt(float(np.mean((np.log1p(p) - np.log1p(y)) ** 2)))


def _gain_gini(labels: FloatArray, order_by: FloatArray, total: float) -> float:
    """mean_k L_k - (n + 1) / (2 n), L_k = share of `total` held by the top k rows by `order_by`."""
    n = int(labels.shape[0])
    order = np.argsort(-order_by, kind="stable")  # (n,) descending
    keys = order_by[order]
    starts = np.empty(n, dtype=np.bool_)
    starts[0] = True
    starts[1:] = keys[1:] != keys[:-1]
    block = np.cumsum(starts) - 1  # (n,) tie-block id of each sorted row
    block_mean = np.bincount(block, weights=labels[order]) / np.bincount(block)  # (n_blocks,)
    cumulative_share = np.cumsum(block_mean[block]) / total  # (n,) L_1 .. L_n
    return float(cumulative_share.mean()) - (n + 1) / (2.0 * n)


def normalized_gini(labels: ArrayLike, preds: ArrayLike) -> float:
    """gini(labels ordered by preds) / gini(labels ordered by labels); 1 = perfect, ~0 = random.

    Labels must be >= 0 (amounts). nan when the labels are all equal (nothing to rank) or sum to 0.
    """
    y, p = _pair(labels, preds, "preds")
    _check_interval(y, "labels", low=0.0, high=math.inf, what="non-negative amounts")
    total = float(y.sum())
    if total == 0:
        return math.nan
    best = _gain_gini(y, y, total)
    if best <= 0:  # all labels equal: every ordering is as good as any other
        return math.nan
    return _gain_gini(y, p, total) / best


# --- per head ------------------------------------------------------------------------------------


def head_metrics(
    head: HeadSpec, *, labels: np.ndarray, predictions: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """The metrics of HEAD_METRIC_NAMES[head.kind] on the rows where `mask` is True (all rows if None).

    `predictions` are predict_head's values (B,). Rows outside the mask are never read, so their
    labels may be NaN. With no selected rows every metric is nan and n is 0.
    """
    where = f"head {head.name!r} ({head.kind})"
    if head.kind not in HEAD_KINDS:
        raise ValueError(f"{where}: unknown kind {head.kind!r}; expected one of {list(HEAD_KINDS)}.")
    y_all = np.asarray(labels)
    p_all = np.asarray(predictions)
    if y_all.ndim != 1 or p_all.ndim != 1:
        raise ValueError(
            f"{where}: received labels of shape {y_all.shape} and predictions of shape {p_all.shape}; expected "
            "1-D arrays, one value per row. For raw outputs (B, k) use mtl.losses.predict_head(head, outputs)."
        )
    if p_all.shape != y_all.shape:
        raise ValueError(
            f"{where}: received {p_all.shape[0]} predictions; expected {y_all.shape[0]}, one per label. "
            "Predict on the same rows the labels come from."
        )
    if mask is not None:
        selected = np.asarray(mask)
        if selected.dtype != np.bool_ or selected.shape != y_all.shape:
            raise ValueError(
                f"{where}: received a mask of dtype {selected.dtype} and shape {selected.shape}; expected bool of "
                f"shape {y_all.shape}. Convert a 0/1 mask with mask.astype(bool)."
            )
        y_all, p_all = y_all[selected], p_all[selected]
    n = y_all.shape[0]
    if n == 0:
        return {name: (0.0 if name == "n" else math.nan) for name in HEAD_METRIC_NAMES[head.kind]}
    try:
        y = _as_1d(y_all, "labels")
        p = _as_1d(p_all, "predictions")
        return _kind_metrics(head.kind, y, p)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _kind_metrics(kind: HeadKind, y: FloatArray, p: FloatArray) -> dict[str, float]:
    n = float(y.shape[0])
    if kind == "binary":
        return {
            "auc": auc(y, p),
            "logloss": logloss(y, p),
            "ece": expected_calibration_error(y, p),
            "calibration_ratio": calibration_ratio(y, p),
            "positive_rate": float(y.mean()),
            "n": n,
        }
    if kind == "ziln":
        return {
            "auc_purchase": auc((y > 0).astype(np.float64), p),
            "rmse_log": rmse_log(y, p),
            "normalized_gini": normalized_gini(y, p),
            "spearman": spearman(y, p),
            "calibration_ratio": calibration_ratio(y, p),
            "n": n,
        }
    return {"rmse": rmse(y, p), "mae": mae(y, p), "spearman": spearman(y, p), "n": n}


def evaluate_heads(
    heads: Sequence[HeadSpec],
    *,
    labels: Mapping[str, np.ndarray],
    predictions: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """{head name: head_metrics(...)}, each head reading labels[name], predictions[name], masks[name].

    Everything is keyed by head name (as in mtl.data.EncodedBatch), never by position, so metrics
    cannot be wired to another head's labels. Extra keys are ignored. A head missing from `masks`
    is evaluated on all rows, unless it declares a mask (HeadSpec.mask): then its mask is required.
    """
    names = [head.name for head in heads]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"heads: received duplicate names {duplicates}; expected unique head names.")
    for head in heads:
        for what, mapping in (("labels", labels), ("predictions", predictions)):
            if head.name not in mapping:
                raise ValueError(
                    f"head {head.name!r}: no {what}; received {what} for {sorted(mapping)}, expected one entry per "
                    f"head {names}. Key {what} by head name (not label column or position)."
                )
        n_labels, n_preds = len(labels[head.name]), len(predictions[head.name])
        if n_labels != n_preds:
            raise ValueError(
                f"head {head.name!r}: received {n_preds} predictions and {n_labels} labels; expected the same "
                "length. Predict on the rows the labels come from."
            )
        if head.mask is not None and (masks is None or head.name not in masks):
            received = "masks=None" if masks is None else f"masks for {sorted(masks)}"
            raise ValueError(
                f"head {head.name!r}: trains only where {head.mask!r} > 0 but received {received}; expected a mask "
                f"for {head.name!r}. Pass masks=batch.masks so it is evaluated on the rows it trains on."
            )
    return {
        head.name: head_metrics(
            head,
            labels=labels[head.name],
            predictions=predictions[head.name],
            mask=None if masks is None else masks.get(head.name),
        )
        for head in heads
    }
