"""Per-head losses and predictions for the three head kinds of `mtl/spec.py`.

Every loss takes the head's raw outputs (B, OUTPUT_DIM[kind]), labels (B,) and an optional boolean
mask (B,), and returns a scalar: the mean over rows where the mask is True, or exactly 0 (still
connected to the graph, so backward works and gives zero gradients) when no row is selected.

Masked-out rows may hold anything, NaN included: labels are replaced by a safe value *before* any
arithmetic, because `torch.where` alone would still let a NaN from the unselected branch into the
gradient (0 * NaN = NaN).

- `binary`:     BCE with logits; prediction = sigmoid(logit).
- `regression`: mean squared error; prediction = the value.
- `ziln`:       zero-inflated lognormal (Wang, Liu & Miao, 2019, "A Deep Probabilistic Model for
                Customer Lifetime Value Prediction", arXiv:1912.07753). Outputs are
                (purchase logit, mu, raw sigma); prediction = p * exp(mu + sigma^2 / 2).

ZILN convention (that of the paper's reference implementation, google/lifetime_value): per row,

    loss_i = BCE(p_i, y_i > 0) + [y_i > 0] * NLL_lognormal(y_i; mu_i, sigma_i)
    NLL    = log y + log sigma + 0.5 log(2 pi) + (log y - mu)^2 / (2 sigma^2)

and the loss is the mean of loss_i over all selected rows, so the lognormal part is averaged over
every row (zero-label rows contribute 0 to it), not only over the positive ones. Labels <= 0 count
as "no purchase"; they are not checked for negativity, which would cost a device sync per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.spec import OUTPUT_DIM, HeadKind, HeadSpec

__all__ = [
    "SIGMA_MIN",
    "binary_loss",
    "head_loss",
    "predict_head",
    "regression_loss",
    "ziln_expected_value",
    "ziln_loss",
    "ziln_sigma",
]

# Lower bound on the lognormal scale: sqrt(1e-7), Keras' epsilon as used by the reference. Without
# it, softplus(raw) -> 0 makes log(sigma) -> -inf and (log y - mu)^2 / sigma^2 -> inf, so one
# over-confident row would blow up the loss. Below the bound the gradient to raw sigma is 0.
SIGMA_MIN = math.sqrt(1e-7)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def binary_loss(logits: Tensor, *, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """BCE with logits. logits (B, 1), labels (B,) in {0, 1}, mask (B,) bool -> scalar."""
    mask = _check(logits, labels=labels, mask=mask, kind="binary")
    targets = _safe_labels(labels, mask=mask, fill=0.0, dtype=logits.dtype)  # (B,)
    per_row = F.binary_cross_entropy_with_logits(logits[:, 0], targets, reduction="none")  # (B,)
    return _masked_mean(per_row, mask=mask)


def regression_loss(outputs: Tensor, *, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error. outputs (B, 1), labels (B,), mask (B,) bool -> scalar."""
    mask = _check(outputs, labels=labels, mask=mask, kind="regression")
    targets = _safe_labels(labels, mask=mask, fill=0.0, dtype=outputs.dtype)  # (B,)
    per_row = (outputs[:, 0] - targets) ** 2  # (B,)
    return _masked_mean(per_row, mask=mask)


def ziln_sigma(outputs: Tensor) -> Tensor:
    """The lognormal scale from ZILN outputs (B, 3): softplus(raw sigma) floored at SIGMA_MIN, (B,)."""
    return F.softplus(outputs[:, 2]).clamp(min=SIGMA_MIN)


def ziln_loss(outputs: Tensor, *, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """Zero-inflated lognormal NLL. outputs (B, 3), labels (B,) >= 0, mask (B,) bool -> scalar.

    See the module docstring for the averaging convention.
    """
    mask = _check(outputs, labels=labels, mask=mask, kind="ziln")
    values = _safe_labels(labels, mask=mask, fill=0.0, dtype=outputs.dtype)  # (B,)
    positive = values > 0  # (B,)
    purchase_logit, mu, sigma = outputs[:, 0], outputs[:, 1], ziln_sigma(outputs)  # (B,) each

    classification = F.binary_cross_entropy_with_logits(purchase_logit, positive.to(outputs.dtype), reduction="none")
    # log(1) = 0 on non-positive rows keeps log() finite there; they are zeroed just below anyway.
    log_y = torch.log(torch.where(positive, values, torch.ones_like(values)))  # (B,)
    nll = log_y + torch.log(sigma) + _HALF_LOG_2PI + (log_y - mu) ** 2 / (2.0 * sigma**2)  # (B,)
    per_row = classification + torch.where(positive, nll, torch.zeros_like(nll))  # (B,)
    return _masked_mean(per_row, mask=mask)


def ziln_expected_value(outputs: Tensor) -> Tensor:
    """E[y] under the ZILN outputs (B, 3): p * exp(mu + sigma^2 / 2), (B,)."""
    p = torch.sigmoid(outputs[:, 0])
    sigma = ziln_sigma(outputs)
    return p * torch.exp(outputs[:, 1] + 0.5 * sigma**2)


def head_loss(head: HeadSpec, *, outputs: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
    """The loss of `head` on its raw outputs (B, head.output_dim); scalar."""
    if head.kind == "binary":
        return binary_loss(outputs, labels=labels, mask=mask)
    if head.kind == "regression":
        return regression_loss(outputs, labels=labels, mask=mask)
    if head.kind == "ziln":
        return ziln_loss(outputs, labels=labels, mask=mask)
    raise ValueError(f"head {head.name!r} has unknown kind {head.kind!r}; expected one of {sorted(OUTPUT_DIM)}")


def predict_head(head: HeadSpec, outputs: Tensor) -> Tensor:
    """The head's prediction (B,): binary -> probability, regression -> value, ziln -> expected value."""
    _check_outputs(outputs, kind=head.kind)
    if head.kind == "binary":
        return torch.sigmoid(outputs[:, 0])
    if head.kind == "regression":
        return outputs[:, 0]
    if head.kind == "ziln":
        return ziln_expected_value(outputs)
    raise ValueError(f"head {head.name!r} has unknown kind {head.kind!r}; expected one of {sorted(OUTPUT_DIM)}")


# --- helpers -------------------------------------------------------------------------------------


def _check_outputs(outputs: Tensor, *, kind: HeadKind) -> None:
    width = OUTPUT_DIM[kind]
    if outputs.ndim != 2 or outputs.shape[1] != width:
        raise ValueError(
            f"{kind} outputs have shape {tuple(outputs.shape)}; expected (batch, {width}). "
            f"A {kind} head emits {width} raw value(s) per row (see OUTPUT_DIM in mtl/spec.py)."
        )


def _check(outputs: Tensor, *, labels: Tensor, mask: Tensor | None, kind: HeadKind) -> Tensor:
    """Validate shapes and return the mask, all-True when None. Shapes are metadata: no device sync."""
    _check_outputs(outputs, kind=kind)
    batch = outputs.shape[0]
    if labels.shape != (batch,):
        raise ValueError(
            f"{kind} labels have shape {tuple(labels.shape)}; expected ({batch},) to match the outputs. "
            "Pass one label per row as a 1-D tensor (squeeze a trailing dimension of size 1)."
        )
    if mask is None:
        return torch.ones(batch, dtype=torch.bool, device=outputs.device)
    if mask.shape != (batch,) or mask.dtype != torch.bool:
        raise ValueError(
            f"{kind} mask has shape {tuple(mask.shape)} and dtype {mask.dtype}; expected ({batch},) torch.bool. "
            "Convert a 0/1 mask with mask.bool()."
        )
    return mask


def _safe_labels(labels: Tensor, *, mask: Tensor, fill: float, dtype: torch.dtype) -> Tensor:
    """Labels as `dtype`, with masked-out rows replaced by `fill` so NaNs there never reach a gradient."""
    labels = labels.to(dtype)
    return torch.where(mask, labels, torch.full_like(labels, fill))


def _masked_mean(per_row: Tensor, *, mask: Tensor) -> Tensor:
    """Mean of per_row (B,) over mask (B,); 0 when the mask is empty (clamp avoids 0 / 0)."""
    total = torch.where(mask, per_row, torch.zeros_like(per_row)).sum()
    return total / mask.sum().clamp(min=1)
