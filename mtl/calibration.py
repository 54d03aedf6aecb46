"""Post-hoc calibration of a binary head's probabilities, fitted on validation data.

    calibrator = fit_calibrator("isotonic", val_probs, val_labels)   # or "temperature", "none"
    test_probs = calibrator.transform(test_probs)
    saved = json.dumps(calibrator.to_dict())                         # {"method": "isotonic", ...}
    calibrator = calibrator_from_dict(json.loads(saved))             # identical transform

- `TemperatureScaling` (Guo et al., 2017, "On Calibration of Modern Neural Networks"): one T > 0,
  p -> sigmoid(logit(p) / T), chosen to minimize the validation NLL. NLL is convex in 1 / T, hence
  unimodal in log T, so a golden-section search on log T in [-4, 4] (T in [0.018, 54.6]) finds it
  deterministically without derivatives. T > 1 softens over-confident probabilities. Ranking is
  unchanged (AUC stays the same).
- `IsotonicCalibration` (Zadrozny & Elkan, 2002): the non-decreasing step function of p closest to
  the labels in squared error, by pool-adjacent-violators. It stores breakpoints (x, y) and applies
  them with np.interp: linear between breakpoints, flat (clipped) beyond the ends.
- `Identity`: method "none"; returns the probabilities unchanged.

Probabilities are clipped to [EPS, 1 - EPS] before taking logits, so exact 0 and 1 stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Protocol, Self, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CALIBRATION_METHODS",
    "CalibrationMethod",
    "Calibrator",
    "Identity",
    "IsotonicCalibration",
    "TemperatureScaling",
    "calibrator_from_dict",
    "fit_calibrator",
]

FloatArray = NDArray[np.float64]
CalibrationMethod: TypeAlias = Literal["isotonic", "temperature", "none"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("isotonic", "temperature", "none")

EPS = 1e-7
LOG_T_BOUNDS = (-4.0, 4.0)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
_SEARCH_TOL = 1e-9  # width of the final log T bracket


class Calibrator(Protocol):
    """What every calibrator offers: fit on validation data, transform, serialize."""

    method: CalibrationMethod

    def fit(self, probs: ArrayLike, labels: ArrayLike) -> Self: ...

    def transform(self, probs: ArrayLike) -> FloatArray: ...

    def to_dict(self) -> dict[str, Any]: ...


# --- validation ----------------------------------------------------------------------------------


def _check_probs(probs: ArrayLike, *, allow_empty: bool) -> FloatArray:
    raw = np.asarray(probs)
    if raw.dtype.kind not in "biuf" or raw.ndim != 1:
        raise ValueError(
            f"probs: received dtype {raw.dtype} and shape {raw.shape}; expected a 1-D float array of "
            "probabilities, one per row. Use mtl.losses.predict_head(head, outputs) for a binary head."
        )
    if raw.size == 0 and not allow_empty:
        raise ValueError("probs: received an empty array; expected at least one validation row to fit on.")
    p = raw.astype(np.float64, copy=False)
    bad = ~np.isfinite(p) | (p < 0.0) | (p > 1.0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"probs: received {float(p[index])!r} at index {index}; expected finite probabilities in [0, 1]. "
            "Pass sigmoid(logit), not the logit, and drop rows without a prediction."
        )
    return p


def _check_fit_inputs(probs: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = _check_probs(probs, allow_empty=False)
    raw = np.asarray(labels)
    if raw.dtype.kind not in "biuf" or raw.ndim != 1:
        raise ValueError(
            f"labels: received dtype {raw.dtype} and shape {raw.shape}; expected a 1-D array of 0/1 labels."
        )
    if raw.shape != p.shape:
        raise ValueError(
            f"labels: received length {raw.shape[0]}; expected {p.shape[0]}, one per probability. "
            "Fit on the probabilities and labels of the same rows."
        )
    y = raw.astype(np.float64, copy=False)
    bad = (y != 0.0) & (y != 1.0)  # NaN compares unequal to both, so it is caught here too
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"labels: received {float(y[index])!r} at index {index}; expected binary labels 0 or 1. "
            "Calibrate binary heads only; mask out rows without a label."
        )
    return p, y


def _logit(p: FloatArray) -> FloatArray:
    clipped = np.clip(p, EPS, 1.0 - EPS)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.exp(-np.logaddexp(0.0, -z))  # = 1 / (1 + exp(-z)) without overflow


def _not_fitted(name: str) -> ValueError:
    return ValueError(f"{name} is not fitted; expected fit(probs, labels) (or calibrator_from_dict) first.")


# --- calibrators ---------------------------------------------------------------------------------


class Identity:
    """Method "none": probabilities pass through unchanged (after validation)."""

    method: CalibrationMethod = "none"

    def fit(self, probs: ArrayLike, labels: ArrayLike) -> Self:
        _check_fit_inputs(probs, labels)
        return self

    def transform(self, probs: ArrayLike) -> FloatArray:
        return _check_probs(probs, allow_empty=True).copy()

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method}


class TemperatureScaling:
    """p -> sigmoid(logit(p) / T) with the T > 0 minimizing validation NLL (see the module docstring)."""

    method: CalibrationMethod = "temperature"

    def __init__(self, *, temperature: float | None = None) -> None:
        if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature: received {temperature!r}; expected a finite number > 0, e.g. 1.0.")
        self.temperature = temperature

    def fit(self, probs: ArrayLike, labels: ArrayLike) -> Self:
        p, y = _check_fit_inputs(probs, labels)
        z = _logit(p)  # (n,)

        def nll(log_t: float) -> float:
            scaled = z * math.exp(-log_t)  # (n,)
            # BCE with logits: log(1 + e^s) - y s, stable for any s.
            return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

        # Golden-section search: keep the bracket [a, b] holding the minimum, shrink it by 0.618 a step.
        a, b = LOG_T_BOUNDS
        c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        f_c, f_d = nll(c), nll(d)
        while b - a > _SEARCH_TOL:
            if f_c <= f_d:
                b, d, f_d = d, c, f_c
                c = b - _GOLDEN * (b - a)
                f_c = nll(c)
            else:
                a, c, f_c = c, d, f_d
                d = a + _GOLDEN * (b - a)
                f_d = nll(d)
        self.temperature = math.exp((a + b) / 2.0)
        return self

    def transform(self, probs: ArrayLike) -> FloatArray:
        if self.temperature is None:
            raise _not_fitted("TemperatureScaling")
        return _sigmoid(_logit(_check_probs(probs, allow_empty=True)) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        if self.temperature is None:
            raise _not_fitted("TemperatureScaling")
        return {"method": self.method, "temperature": self.temperature}


class IsotonicCalibration:
    """Non-decreasing step fit by pool-adjacent-violators, applied by np.interp between breakpoints.

    Fitting sorts once (O(n log n)), averages labels over tied probabilities with np.unique, then
    runs PAV as one Python loop over the distinct values with a stack of blocks: each value is pushed
    once and popped at most once, so the loop is O(n_distinct). Only the first and last value of
    each pooled block are kept as breakpoints, so the stored curve is as small as the fit allows.
    """

    method: CalibrationMethod = "isotonic"

    def __init__(self, *, x: ArrayLike | None = None, y: ArrayLike | None = None) -> None:
        if (x is None) != (y is None):
            raise ValueError("x and y: received only one; expected both breakpoint arrays or neither.")
        self.x: FloatArray | None = None
        self.y: FloatArray | None = None
        if x is not None and y is not None:
            self.x, self.y = _check_breakpoints(x, y)

    def fit(self, probs: ArrayLike, labels: ArrayLike) -> Self:
        p, labels_01 = _check_fit_inputs(probs, labels)
        # Distinct probabilities, ascending, with their label sums and counts (ties pooled up front).
        values, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse.ravel(), weights=labels_01, minlength=values.shape[0])
        # PAV: blocks on a stack as (label sum, weight, index of the first distinct value).
        block_sum: list[float] = []
        block_weight: list[float] = []
        block_start: list[int] = []
        for i, (s, w) in enumerate(zip(sums.tolist(), counts.tolist(), strict=True)):
            s, w, start = float(s), float(w), i
            # Merge while the previous block's mean is >= this one's (compare sums cross-multiplied).
            while block_sum and block_sum[-1] * w >= s * block_weight[-1]:
                s += block_sum.pop()
                w += block_weight.pop()
                start = block_start.pop()
            block_sum.append(s)
            block_weight.append(w)
            block_start.append(start)
        starts = np.asarray(block_start, dtype=np.int64)  # (n_blocks,)
        ends = np.append(starts[1:], values.shape[0]) - 1  # (n_blocks,) last distinct value per block
        means = np.asarray(block_sum) / np.asarray(block_weight)  # (n_blocks,) non-decreasing
        # Breakpoints: each block's first and last x at its mean; a one-value block keeps one point.
        keep_end = ends > starts
        x = np.stack([values[starts], values[ends]], axis=1)  # (n_blocks, 2)
        y = np.stack([means, means], axis=1)  # (n_blocks, 2)
        pick = np.stack([np.ones_like(keep_end), keep_end], axis=1)  # (n_blocks, 2)
        self.x, self.y = x[pick], y[pick]  # (n_points,) each, row-major: x strictly increasing
        return self

    def transform(self, probs: ArrayLike) -> FloatArray:
        if self.x is None or self.y is None:
            raise _not_fitted("IsotonicCalibration")
        # np.interp holds y[0] below x[0] and y[-1] above x[-1]: clipped at the ends.
        return np.interp(_check_probs(probs, allow_empty=True), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        if self.x is None or self.y is None:
            raise _not_fitted("IsotonicCalibration")
        return {"method": self.method, "x": self.x.tolist(), "y": self.y.tolist()}


def _check_breakpoints(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or xs.shape != ys.shape or xs.size == 0:
        raise ValueError(
            f"x and y: received shapes {xs.shape} and {ys.shape}; expected two non-empty 1-D arrays of equal "
            "length, as IsotonicCalibration.to_dict() writes them."
        )
    finite = np.isfinite(xs).all() and np.isfinite(ys).all()
    if not finite or np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
        raise ValueError(
            "x and y: expected finite breakpoints with x strictly increasing and y non-decreasing in [0, 1]; "
            f"received x={xs.tolist()[:5]}..., y={ys.tolist()[:5]}.... Re-fit rather than editing breakpoints."
        )
    return xs, ys


# --- construction --------------------------------------------------------------------------------


def _new(method: str) -> Calibrator:
    if method == "isotonic":
        return IsotonicCalibration()
    if method == "temperature":
        return TemperatureScaling()
    if method == "none":
        return Identity()
    raise ValueError(f"method: received {method!r}; expected one of {list(CALIBRATION_METHODS)}.")


def fit_calibrator(method: CalibrationMethod, probs: ArrayLike, labels: ArrayLike) -> Calibrator:
    """A calibrator of `method` fitted on validation probabilities and 0/1 labels."""
    return _new(method).fit(probs, labels)


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from its to_dict() (e.g. after a JSON round trip)."""
    method = d.get("method")
    expected_keys = {"none": {"method"}, "temperature": {"method", "temperature"}, "isotonic": {"method", "x", "y"}}
    if not isinstance(method, str) or method not in expected_keys:
        raise ValueError(f"method: received {method!r}; expected one of {list(CALIBRATION_METHODS)}.")
    if set(d) != expected_keys[method]:
        raise ValueError(
            f"{method} calibrator: received keys {sorted(d)}; expected {sorted(expected_keys[method])}, "
            "as its to_dict() writes them."
        )
    if method == "temperature":
        temperature = d["temperature"]
        if not isinstance(temperature, int | float) or isinstance(temperature, bool):
            raise ValueError(f"temperature: received {temperature!r}; expected a number > 0.")
        return TemperatureScaling(temperature=float(temperature))
    if method == "isotonic":
        return IsotonicCalibration(x=d["x"], y=d["y"])
    return Identity()
