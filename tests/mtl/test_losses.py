"""Losses and predictions of mtl/losses.py against hand-computed closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from mtl.losses import (
    SIGMA_MIN,
    binary_loss,
    head_loss,
    predict_head,
    regression_loss,
    ziln_expected_value,
    ziln_loss,
)
from mtl.spec import HeadSpec

# Rows: (purchase logit, mu, raw sigma), label. Zero labels, a label below 1 (log < 0) and a large one.
ZILN_ROWS = [
    ((0.3, 1.0, 0.5), 0.0),
    ((-1.2, 0.2, -0.7), 2.5),
    ((2.0, -0.5, 1.5), 0.4),
    ((0.0, 3.0, 0.0), 0.0),
    ((1.1, 2.2, -2.0), 30.0),
]


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def _ziln_row_loss(raw: tuple[float, float, float], y: float) -> float:
    """The reference formula, one row at a time in plain floats."""
    logit, mu, raw_sigma = raw
    p = 1.0 / (1.0 + math.exp(-logit))
    sigma = max(_softplus(raw_sigma), SIGMA_MIN)
    positive = y > 0
    bce = -math.log(p) if positive else -math.log(1.0 - p)
    if not positive:
        return bce
    nll = math.log(y) + math.log(sigma) + 0.5 * math.log(2 * math.pi) + (math.log(y) - mu) ** 2 / (2 * sigma**2)
    return bce + nll


def _ziln_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    outputs = torch.tensor([raw for raw, _ in ZILN_ROWS], dtype=torch.float64)
    labels = torch.tensor([y for _, y in ZILN_ROWS], dtype=torch.float64)
    return outputs, labels


def test_ziln_loss_matches_closed_form_averaged_over_all_rows() -> None:
    outputs, labels = _ziln_tensors()
    expected = sum(_ziln_row_loss(raw, y) for raw, y in ZILN_ROWS) / len(ZILN_ROWS)
    assert ziln_loss(outputs, labels=labels).item() == pytest.approx(expected, rel=1e-10)


def test_ziln_lognormal_part_matches_torch_distribution() -> None:
    outputs, labels = _ziln_tensors()
    positive = labels > 0
    sigma = torch.nn.functional.softplus(outputs[:, 2])
    log_prob = torch.distributions.LogNormal(outputs[positive, 1], sigma[positive]).log_prob(labels[positive])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(outputs[:, 0], positive.double(), reduction="sum")
    # Reference convention: the lognormal NLL is summed over positive rows but divided by ALL rows.
    expected = (bce - log_prob.sum()) / len(labels)
    torch.testing.assert_close(ziln_loss(outputs, labels=labels), expected)


def test_ziln_mask_selects_rows_for_numerator_and_denominator() -> None:
    outputs, labels = _ziln_tensors()
    mask = torch.tensor([True, True, False, False, True])
    kept = [row for row, m in zip(ZILN_ROWS, mask.tolist(), strict=True) if m]
    expected = sum(_ziln_row_loss(raw, y) for raw, y in kept) / len(kept)
    assert ziln_loss(outputs, labels=labels, mask=mask).item() == pytest.approx(expected, rel=1e-10)


def test_ziln_sigma_floor_keeps_loss_finite() -> None:
    outputs = torch.tensor([[0.0, 0.0, -80.0]], requires_grad=True)  # softplus(-80) ~ 1.8e-35
    loss = ziln_loss(outputs, labels=torch.tensor([1.0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert outputs.grad is not None
    assert torch.isfinite(outputs.grad).all()
    # log(1) = mu = 0, so the squared term vanishes and sigma sits exactly on the floor.
    expected = math.log(2.0) + math.log(SIGMA_MIN) + 0.5 * math.log(2 * math.pi)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ziln_expected_value_matches_closed_form() -> None:
    outputs, _ = _ziln_tensors()
    expected = [
        (1.0 / (1.0 + math.exp(-logit))) * math.exp(mu + max(_softplus(raw_sigma), SIGMA_MIN) ** 2 / 2)
        for (logit, mu, raw_sigma), _ in ZILN_ROWS
    ]
    torch.testing.assert_close(ziln_expected_value(outputs), torch.tensor(expected, dtype=torch.float64))


def test_binary_and_regression_losses_match_closed_forms() -> None:
    logits = torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    labels = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    mask = torch.tensor([True, True, False])
    bce = [-math.log(1 / (1 + math.exp(-0.5))), -math.log(1 - 1 / (1 + math.exp(1.0)))]
    assert binary_loss(logits, labels=labels, mask=mask).item() == pytest.approx(sum(bce) / 2, rel=1e-12)
    assert regression_loss(logits, labels=labels, mask=mask).item() == pytest.approx((0.25 + 1.0) / 2, rel=1e-12)
    assert regression_loss(logits, labels=labels).item() == pytest.approx((0.25 + 1.0 + 4.0) / 3, rel=1e-12)


@pytest.mark.parametrize(("kind", "width"), [("binary", 1), ("regression", 1), ("ziln", 3)])
def test_empty_mask_gives_zero_loss_and_zero_gradient(kind: str, width: int) -> None:
    head = HeadSpec(name="h", kind=kind, label="y")  # type: ignore[arg-type]
    outputs = torch.randn(4, width, requires_grad=True)
    loss = head_loss(head, outputs=outputs, labels=torch.ones(4), mask=torch.zeros(4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert outputs.grad is not None
    assert torch.equal(outputs.grad, torch.zeros_like(outputs))


@pytest.mark.parametrize(("kind", "width"), [("binary", 1), ("regression", 1), ("ziln", 3)])
def test_nan_labels_on_masked_rows_do_not_leak(kind: str, width: int) -> None:
    head = HeadSpec(name="h", kind=kind, label="y")  # type: ignore[arg-type]
    outputs = torch.randn(3, width, requires_grad=True)
    labels = torch.tensor([1.0, float("nan"), 0.0])
    mask = torch.tensor([True, False, True])
    loss = head_loss(head, outputs=outputs, labels=labels, mask=mask)
    loss.backward()
    clean = head_loss(head, outputs=outputs[[0, 2]], labels=labels[[0, 2]])
    assert outputs.grad is not None
    assert torch.isfinite(outputs.grad).all()
    assert torch.equal(outputs.grad[1], torch.zeros(width))
    torch.testing.assert_close(loss, clean)


def test_predict_head_per_kind() -> None:
    outputs3 = torch.tensor([[0.2, 1.0, 0.3]])
    outputs1 = torch.tensor([[0.7]])
    torch.testing.assert_close(predict_head(HeadSpec("b", "binary", "y"), outputs1), torch.sigmoid(outputs1[:, 0]))
    torch.testing.assert_close(predict_head(HeadSpec("r", "regression", "y"), outputs1), outputs1[:, 0])
    torch.testing.assert_close(predict_head(HeadSpec("z", "ziln", "y"), outputs3), ziln_expected_value(outputs3))


def test_shape_errors_say_received_and_expected() -> None:
    with pytest.raises(ValueError, match=r"shape \(4, 1\); expected \(batch, 3\)"):
        ziln_loss(torch.zeros(4, 1), labels=torch.zeros(4))
    with pytest.raises(ValueError, match=r"labels have shape \(4, 1\); expected \(4,\)"):
        binary_loss(torch.zeros(4, 1), labels=torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"mask\.bool\(\)"):
        regression_loss(torch.zeros(4, 1), labels=torch.zeros(4), mask=torch.ones(4))
