"""Blend: four calibrated head predictions -> one utility per candidate.

    u_i = w_gmv * E[GMV_i] / gmv_scale + w_prosperity * p_prosperity_i - w_risk * p_risk_i - w_complaint * p_complaint_i

Normalization (documented, fixed, not per request): E[GMV] is divided by the policy's `gmv_scale`, a
currency amount per impression that counts as one unit of utility; the other three heads are
probabilities and enter as they are. A fixed scale keeps utilities comparable across requests and
with the planner's prices, which are in the same utility units (per-request max normalization would
not: the same candidate would be worth more in a weak request). `suggest_gmv_scale` picks a scale
from observed predictions.

In budget mode the risk and complaint weights are the dual prices of the planner's budgets instead of
configured numbers. Per-request overrides may change any weight within the policy's allowed range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fairness.policy import HEADS, FairnessPolicy

F64 = NDArray[np.float64]


class BlendInputError(ValueError):
    """Head predictions or weight overrides are invalid; the message says what, what was expected, the fix."""


@dataclass(frozen=True)
class HeadPredictions:
    """Calibrated per-candidate predictions, all (N,)."""

    gmv: F64  # expected GMV per impression (p_buy * E[amount]), currency units, >= 0
    prosperity: F64  # probability of healthy engagement
    risk: F64  # probability of a governance violation
    complaint: F64  # probability of a complaint

    @staticmethod
    def of(*, gmv: ArrayLike, prosperity: ArrayLike, risk: ArrayLike, complaint: ArrayLike) -> HeadPredictions:
        """Checked construction: equal 1-D shapes, finite, GMV >= 0, probabilities in [0, 1]."""
        arrays = {name: np.asarray(value, dtype=np.float64) for name, value in
                  {"gmv": gmv, "prosperity": prosperity, "risk": risk, "complaint": complaint}.items()}
        shape = arrays["gmv"].shape
        for name, array in arrays.items():
            if array.ndim != 1 or array.shape != shape:
                expected = f"({shape[0]},)" if shape else "(N,)"
                raise BlendInputError(f"head {name!r} has shape {array.shape}; expected {expected} like 'gmv': one "
                                      "prediction per candidate")
            bad = ~np.isfinite(array) | (array < 0) | ((array > 1) if name != "gmv" else False)
            if np.any(bad):
                where = int(np.flatnonzero(bad)[0])
                expected = "a finite value >= 0" if name == "gmv" else "a probability in [0, 1]"
                raise BlendInputError(f"head {name!r}[{where}] = {float(array[where])!r}; expected {expected} "
                                      f"({int(np.sum(bad))} bad values). Check the model's calibration for this head")
        return HeadPredictions(**arrays)

    def __len__(self) -> int:
        return len(self.gmv)

    def take(self, index: NDArray[np.int64] | NDArray[np.bool_]) -> HeadPredictions:
        return HeadPredictions(gmv=self.gmv[index], prosperity=self.prosperity[index], risk=self.risk[index],
                               complaint=self.complaint[index])


@dataclass(frozen=True)
class BlendWeights:
    gmv: float
    prosperity: float
    risk: float
    complaint: float

    @staticmethod
    def from_policy(policy: FairnessPolicy, *, budget_prices: Mapping[str, float] | None = None) -> BlendWeights:
        """The policy's weights; in budget mode risk and complaint are priced by the plan's budget duals."""
        b = policy.blend
        weights = BlendWeights(gmv=b.gmv, prosperity=b.prosperity, risk=b.risk, complaint=b.complaint)
        if b.mode == "budgets":
            prices = budget_prices or {}
            weights = replace(weights, risk=float(prices.get("risk", 0.0)),
                              complaint=float(prices.get("complaint", 0.0)))
        return weights

    def with_overrides(self, overrides: Mapping[str, float], policy: FairnessPolicy) -> BlendWeights:
        """Per-request overrides, each checked against the policy's allowed range for that head."""
        changes: dict[str, float] = {}
        for head, value in overrides.items():
            if head not in HEADS:
                raise BlendInputError(f"blend override for unknown head {head!r}; expected one of {list(HEADS)}")
            low, high = policy.blend.override_range.get(head, (getattr(self, head), getattr(self, head)))
            if not (np.isfinite(value) and low <= value <= high):
                raise BlendInputError(f"blend override {head} = {value!r} is outside the allowed range "
                                      f"[{low:g}, {high:g}] of policy {policy.name!r}; send a value in range or "
                                      "omit the override")
            changes[head] = float(value)
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return {head: float(getattr(self, head)) for head in HEADS}


def blend_terms(heads: HeadPredictions, weights: BlendWeights, *, gmv_scale: float) -> dict[str, F64]:
    """Each head's signed contribution to the utility (rewards positive, penalties negative)."""
    return {
        "gmv": weights.gmv * heads.gmv / gmv_scale,
        "prosperity": weights.prosperity * heads.prosperity,
        "risk": -weights.risk * heads.risk,
        "complaint": -weights.complaint * heads.complaint,
    }


def blend(heads: HeadPredictions, weights: BlendWeights, *, gmv_scale: float) -> F64:
    """Blended utility per candidate (N,)."""
    terms = blend_terms(heads, weights, gmv_scale=gmv_scale)
    utility: F64 = terms["gmv"] + terms["prosperity"] + terms["risk"] + terms["complaint"]
    return utility


def suggest_gmv_scale(gmv: ArrayLike, *, quantile: float = 0.9) -> float:
    """A gmv_scale from observed E[GMV] predictions: their `quantile`, so typical GMV terms are O(1)."""
    values = np.asarray(gmv, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.quantile(values, quantile)) if len(values) else 1.0
