"""Per-head metrics of mtl/metrics.py: hand cases, brute-force references and label wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl.metrics import (
    HEAD_METRIC_NAMES,
    auc,
    calibration_ratio,
    evaluate_heads,
    expected_calibration_error,
    head_metrics,
    logloss,
    mae,
    normalized_gini,
    rmse,
    rmse_log,
)
from mtl.spec import HeadSpec

CLICK = HeadSpec(name="click", kind="binary", label="click")
RISK = HeadSpec(name="risk", kind="binary", label="risk")
GMV = HeadSpec(name="gmv", kind="ziln", label="amount", mask="click")
SCORE = HeadSpec(name="score", kind="regression", label="score")


def _brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]  # (n_pos, n_neg)
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _kaggle_gini(labels: np.ndarray, preds: np.ndarray) -> float:
    """Reference normalized-Gini numerator, one loop, for distinct predictions."""
    order = sorted(range(len(preds)), key=lambda i: -preds[i])
    total, running, area = labels.sum(), 0.0, 0.0
    for i in order:
        running += labels[i]
        area += running / total
    n = len(labels)
    return float(area / n - (n + 1) / (2 * n))


# --- auc -----------------------------------------------------------------------------------------


def test_auc_hand_cases() -> None:
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(labels, np.full(4, 0.5)) == 0.5
    # One tie between a positive and a negative: 3 pairs won, 1 tied -> 3.5 / 4.
    assert auc(labels, np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(0.875)


def test_auc_matches_pair_counting_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(np.int64)
    scores = np.round(rng.normal(size=500) + labels, 1)  # rounding creates many ties
    assert auc(labels, scores) == pytest.approx(_brute_force_auc(labels, scores), abs=1e-12)


def test_auc_one_class_is_nan() -> None:
    assert math.isnan(auc(np.ones(5), np.arange(5.0)))
    assert math.isnan(auc(np.zeros(5), np.arange(5.0)))


# --- probabilities -------------------------------------------------------------------------------


def test_logloss_hand_value() -> None:
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert logloss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected, rel=1e-12)


def test_logloss_clips_certain_mistakes() -> None:
    assert logloss(np.array([1.0]), np.array([0.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_ece_is_zero_for_perfectly_calibrated_bins() -> None:
    # 0.25 with 1 of 4 positive, 0.55 with 11 of 20, 0.9 with 9 of 10.
    probs = np.concatenate([np.full(4, 0.25), np.full(20, 0.55), np.full(10, 0.9)])
    labels = np.concatenate([[1, 0, 0, 0], np.arange(20) < 11, np.arange(10) < 9]).astype(np.float64)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_value_weights_bins_by_size() -> None:
    # Bin [0.1, 0.2): 3 rows at 0.1, no positive -> |0 - 0.1| weight 3/4; bin [0.9, 1]: 1 row at 1.0, positive.
    probs = np.array([0.15, 0.15, 0.15, 1.0])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(labels, probs) == pytest.approx(0.75 * 0.15)


def test_calibration_ratio() -> None:
    assert calibration_ratio(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(1.0)
    assert calibration_ratio(np.array([2.0, 0.0]), np.array([3.0, 1.0])) == pytest.approx(2.0)
    assert math.isnan(calibration_ratio(np.zeros(3), np.ones(3)))


# --- amounts -------------------------------------------------------------------------------------


def test_rmse_log_hand_case() -> None:
    labels = np.array([0.0, math.e - 1.0])  # log1p -> 0, 1
    preds = np.array([math.e**2 - 1.0, 0.0])  # log1p -> 2, 0
    assert rmse_log(labels, preds) == pytest.approx(math.sqrt((4.0 + 1.0) / 2.0))


def test_rmse_and_mae_hand_case() -> None:
    labels, preds = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    assert rmse(labels, preds) == pytest.approx(math.sqrt(5.0 / 3.0))
    assert mae(labels, preds) == pytest.approx(1.0)


def test_normalized_gini_perfect_reversed_and_constant() -> None:
    rng = np.random.default_rng(1)
    labels = rng.lognormal(size=200) * (rng.random(200) < 0.4)
    assert normalized_gini(labels, labels) == pytest.approx(1.0)
    assert normalized_gini(labels, np.log1p(labels) * 3.0 + 1.0) == pytest.approx(1.0)  # any monotone map
    assert normalized_gini(labels, -labels) < -0.9
    assert normalized_gini(labels, np.ones(200)) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(normalized_gini(np.full(5, 2.0), np.arange(5.0)))
    assert math.isnan(normalized_gini(np.zeros(5), np.arange(5.0)))


def test_normalized_gini_is_about_zero_for_random_predictions() -> None:
    rng = np.random.default_rng(2)
    labels = rng.lognormal(size=200_000) * (rng.random(200_000) < 0.3)
    assert abs(normalized_gini(labels, rng.random(200_000))) < 0.02


def test_normalized_gini_matches_loop_reference() -> None:
    rng = np.random.default_rng(3)
    labels = rng.exponential(size=300) * (rng.random(300) < 0.5)
    preds = labels + rng.normal(scale=0.7, size=300)
    expected = _kaggle_gini(labels, preds) / _kaggle_gini(labels, labels)
    assert normalized_gini(labels, preds) == pytest.approx(expected, rel=1e-10)
    assert 0.0 < expected < 1.0


def test_normalized_gini_ties_do_not_depend_on_row_order() -> None:
    labels = np.array([0.0, 5.0, 1.0, 0.0, 2.0])
    preds = np.array([1.0, 1.0, 2.0, 0.0, 0.0])
    permutation = np.array([4, 2, 0, 3, 1])
    assert normalized_gini(labels, preds) == pytest.approx(normalized_gini(labels[permutation], preds[permutation]))


# --- head_metrics --------------------------------------------------------------------------------


def test_head_metrics_keys_per_kind() -> None:
    labels = np.array([0.0, 3.0, 0.0, 10.0])
    preds = np.array([0.5, 2.0, 0.2, 8.0])
    for head in (GMV, SCORE):
        assert tuple(head_metrics(head, labels=labels, predictions=preds, mask=None)) == HEAD_METRIC_NAMES[head.kind]
    binary = head_metrics(CLICK, labels=np.array([0, 1, 1, 0]), predictions=np.array([0.2, 0.7, 0.6, 0.1]), mask=None)
    assert tuple(binary) == HEAD_METRIC_NAMES["binary"]
    assert binary["auc"] == 1.0
    assert binary["positive_rate"] == 0.5
    assert binary["n"] == 4.0


def test_head_metrics_ziln_values() -> None:
    labels = np.array([0.0, 3.0, 0.0, 10.0])
    preds = np.array([0.5, 2.0, 0.2, 8.0])
    metrics = head_metrics(GMV, labels=labels, predictions=preds, mask=np.ones(4, dtype=bool))
    assert metrics["auc_purchase"] == 1.0
    assert metrics["normalized_gini"] == pytest.approx(1.0)
    assert metrics["spearman"] == pytest.approx(math.sqrt(0.9))  # the two zero labels tie: ranks 1.5, 1.5
    assert metrics["calibration_ratio"] == pytest.approx(10.7 / 13.0)
    assert metrics["rmse_log"] == pytest.approx(rmse_log(labels, preds))


def test_head_metrics_respects_mask_and_ignores_nan_outside_it() -> None:
    labels = np.array([1.0, 0.0, np.nan, 1.0, np.nan])
    preds = np.array([0.9, 0.1, 0.5, 0.2, 0.7])
    mask = np.array([True, True, False, False, False])
    metrics = head_metrics(CLICK, labels=labels, predictions=preds, mask=mask)
    assert metrics["n"] == 2.0
    assert metrics["auc"] == 1.0  # row 3 (a positive scored 0.2) would break a perfect AUC
    assert metrics["logloss"] == pytest.approx(logloss(labels[:2], preds[:2]))


def test_head_metrics_empty_mask_gives_nan() -> None:
    metrics = head_metrics(SCORE, labels=np.ones(3), predictions=np.ones(3), mask=np.zeros(3, dtype=bool))
    assert metrics["n"] == 0.0
    assert all(math.isnan(v) for k, v in metrics.items() if k != "n")


def test_head_metrics_errors_name_the_head() -> None:
    with pytest.raises(ValueError, match=r"head 'click'.*received 3 predictions; expected 4"):
        head_metrics(CLICK, labels=np.zeros(4), predictions=np.zeros(3), mask=None)
    with pytest.raises(ValueError, match=r"head 'click'.*labels: received 2\.0 at index 1.*expected binary"):
        head_metrics(CLICK, labels=np.array([0.0, 2.0]), predictions=np.array([0.1, 0.2]), mask=None)
    with pytest.raises(ValueError, match=r"head 'click'.*probs: received 1\.5.*Pass probabilities"):
        head_metrics(CLICK, labels=np.array([0.0, 1.0]), predictions=np.array([0.1, 1.5]), mask=None)
    with pytest.raises(ValueError, match=r"head 'gmv'.*received .*shape \(4, 3\).*predict_head"):
        head_metrics(GMV, labels=np.zeros(4), predictions=np.zeros((4, 3)), mask=None)
    with pytest.raises(ValueError, match=r"head 'score'.*mask of dtype int64.*astype\(bool\)"):
        head_metrics(SCORE, labels=np.zeros(2), predictions=np.zeros(2), mask=np.array([1, 0]))
    with pytest.raises(ValueError, match=r"head 'score'.*labels: received nan at index 0"):
        head_metrics(SCORE, labels=np.array([np.nan, 1.0]), predictions=np.zeros(2), mask=None)


def test_metric_errors_say_received_and_expected() -> None:
    with pytest.raises(ValueError, match=r"preds: received length 2; expected 3"):
        rmse(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels: received -1\.0 at index 0; expected non-negative amounts"):
        rmse_log(np.array([-1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"labels: received an empty array"):
        auc(np.array([]), np.array([]))


# --- evaluate_heads: label wiring ----------------------------------------------------------------


def _two_head_data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """click predictions rank click labels perfectly; risk predictions rank risk labels in reverse."""
    rng = np.random.default_rng(4)
    click = (rng.random(400) < 0.4).astype(np.float64)
    risk = (rng.random(400) < 0.2).astype(np.float64)
    predictions = {
        "click": 0.2 + 0.6 * click + 0.01 * rng.random(400),
        "risk": 0.8 - 0.6 * risk + 0.01 * rng.random(400),
    }
    return {"click": click, "risk": risk}, predictions


def test_evaluate_heads_reads_each_heads_own_labels() -> None:
    labels, predictions = _two_head_data()
    metrics = evaluate_heads([CLICK, RISK], labels=labels, predictions=predictions, masks=None)
    assert set(metrics) == {"click", "risk"}
    assert metrics["click"]["auc"] == 1.0
    assert metrics["risk"]["auc"] == 0.0
    assert metrics["click"]["auc"] == auc(labels["click"], predictions["click"])
    assert metrics["risk"]["positive_rate"] == pytest.approx(labels["risk"].mean())

    swapped = evaluate_heads(
        [CLICK, RISK], labels={"click": labels["risk"], "risk": labels["click"]}, predictions=predictions, masks=None
    )
    assert swapped["click"]["auc"] != metrics["click"]["auc"]
    assert swapped["risk"]["auc"] != metrics["risk"]["auc"]
    assert abs(swapped["click"]["auc"] - 0.5) < 0.1  # independent labels: chance level


def test_evaluate_heads_does_not_depend_on_head_or_key_order() -> None:
    labels, predictions = _two_head_data()
    forward = evaluate_heads([CLICK, RISK], labels=labels, predictions=predictions, masks=None)
    reverse = evaluate_heads(
        [RISK, CLICK],
        labels=dict(reversed(labels.items())),
        predictions=dict(reversed(predictions.items())),
        masks=None,
    )
    assert forward == reverse


def test_evaluate_heads_applies_each_heads_mask() -> None:
    click = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    amount = np.array([4.0, 0.0, np.nan, np.nan, 9.0])  # NaN where the head never trains
    masks = {"click": np.ones(5, dtype=bool), "gmv": click > 0}
    metrics = evaluate_heads(
        [CLICK, GMV],
        labels={"click": click, "gmv": amount},
        predictions={"click": np.full(5, 0.6), "gmv": np.array([3.0, 0.5, 100.0, 100.0, 7.0])},
        masks=masks,
    )
    assert metrics["gmv"]["n"] == 3.0
    assert metrics["gmv"]["normalized_gini"] == pytest.approx(1.0)
    assert metrics["click"]["n"] == 5.0


def test_evaluate_heads_missing_or_mismatched_inputs_raise() -> None:
    labels, predictions = _two_head_data()
    with pytest.raises(ValueError, match=r"head 'risk': no labels; received labels for \['click'\]"):
        evaluate_heads([CLICK, RISK], labels={"click": labels["click"]}, predictions=predictions, masks=None)
    with pytest.raises(ValueError, match=r"head 'click': no predictions; received predictions for \['risk'\]"):
        evaluate_heads([CLICK, RISK], labels=labels, predictions={"risk": predictions["risk"]}, masks=None)
    short = {**predictions, "risk": predictions["risk"][:10]}
    with pytest.raises(ValueError, match=r"head 'risk': received 10 predictions and 400 labels"):
        evaluate_heads([CLICK, RISK], labels=labels, predictions=short, masks=None)
    with pytest.raises(ValueError, match=r"duplicate names \['click'\]"):
        evaluate_heads([CLICK, CLICK], labels=labels, predictions=predictions, masks=None)


def test_evaluate_heads_requires_the_mask_of_a_masked_head() -> None:
    data = {"click": np.ones(3), "gmv": np.ones(3)}
    with pytest.raises(ValueError, match=r"head 'gmv': trains only where 'click' > 0 but received masks=None"):
        evaluate_heads([CLICK, GMV], labels=data, predictions=data, masks=None)
    with pytest.raises(ValueError, match=r"received masks for \['click'\]; expected a mask for 'gmv'"):
        evaluate_heads([CLICK, GMV], labels=data, predictions=data, masks={"click": np.ones(3, dtype=bool)})
