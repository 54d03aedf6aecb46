"""Post-hoc calibrators of mtl/calibration.py on synthetic data with a known miscalibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mtl.calibration import (
    CALIBRATION_METHODS,
    Identity,
    IsotonicCalibration,
    TemperatureScaling,
    calibrator_from_dict,
    fit_calibrator,
)
from mtl.metrics import expected_calibration_error, logloss

TRUE_TEMPERATURE = 2.0


def _miscalibrated(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities sigmoid(z) for labels drawn from sigmoid(z / 2): over-confident by T = 2."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=n)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-z / TRUE_TEMPERATURE))).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-z)), labels


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, np.ndarray]:
    return _miscalibrated(0)


@pytest.fixture(scope="module")
def val() -> tuple[np.ndarray, np.ndarray]:
    return _miscalibrated(1)


def test_temperature_recovers_known_temperature(train: tuple[np.ndarray, np.ndarray]) -> None:
    calibrator = TemperatureScaling().fit(*train)
    assert calibrator.temperature == pytest.approx(TRUE_TEMPERATURE, rel=0.1)


def test_temperature_is_about_one_on_calibrated_data() -> None:
    rng = np.random.default_rng(5)
    probs = rng.random(20_000)
    labels = (rng.random(20_000) < probs).astype(np.float64)
    assert TemperatureScaling().fit(probs, labels).temperature == pytest.approx(1.0, rel=0.1)


def test_temperature_fit_is_deterministic(train: tuple[np.ndarray, np.ndarray]) -> None:
    assert TemperatureScaling().fit(*train).temperature == TemperatureScaling().fit(*train).temperature


def test_isotonic_output_is_monotone_and_in_unit_interval(train: tuple[np.ndarray, np.ndarray]) -> None:
    calibrator = IsotonicCalibration().fit(*train)
    grid = np.linspace(0.0, 1.0, 2001)
    out = calibrator.transform(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0.0
    assert out.max() <= 1.0
    assert calibrator.x is not None
    assert np.all(np.diff(calibrator.x) > 0)


def test_isotonic_pav_hand_case() -> None:
    # Sorted labels 1, 0, 0, 1, 1 pool the first three into mean 1/3; ties at x = 0.4 are pooled up front.
    calibrator = IsotonicCalibration().fit(np.array([0.1, 0.2, 0.3, 0.4, 0.4]), np.array([1, 0, 0, 1, 1]))
    assert calibrator.x is not None
    assert calibrator.y is not None
    np.testing.assert_allclose(calibrator.x, [0.1, 0.3, 0.4])
    np.testing.assert_allclose(calibrator.y, [1 / 3, 1 / 3, 1.0])
    np.testing.assert_allclose(calibrator.transform(np.array([0.0, 0.2, 0.35, 0.9])), [1 / 3, 1 / 3, 2 / 3, 1.0])


def test_isotonic_reduces_ece(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> None:
    probs, labels = val
    calibrated = IsotonicCalibration().fit(*train).transform(probs)
    before, after = expected_calibration_error(labels, probs), expected_calibration_error(labels, calibrated)
    assert before > 0.05
    assert after < before / 3


@pytest.mark.parametrize("method", ["isotonic", "temperature"])
def test_calibration_reduces_validation_logloss(
    method: str, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]
) -> None:
    probs, labels = val
    calibrator = fit_calibrator(method, *train)  # type: ignore[arg-type]
    assert calibrator.method == method
    assert logloss(labels, calibrator.transform(probs)) < logloss(labels, probs) - 0.01


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_json_round_trip_gives_identical_transform(method: str, train: tuple[np.ndarray, np.ndarray]) -> None:
    calibrator = fit_calibrator(method, *train)  # type: ignore[arg-type]
    saved = calibrator.to_dict()
    assert saved["method"] == method
    restored = calibrator_from_dict(json.loads(json.dumps(saved)))
    assert type(restored) is type(calibrator)
    grid = np.concatenate([np.linspace(0.0, 1.0, 1001), train[0][:500]])
    np.testing.assert_array_equal(restored.transform(grid), calibrator.transform(grid))


def test_identity_passes_probabilities_through() -> None:
    probs = np.array([0.0, 0.3, 1.0])
    assert np.array_equal(fit_calibrator("none", probs, np.array([0, 1, 1])).transform(probs), probs)
    assert isinstance(calibrator_from_dict({"method": "none"}), Identity)


def test_temperature_transform_keeps_order_and_extremes_finite() -> None:
    out = TemperatureScaling(temperature=2.0).transform(np.array([0.0, 0.1, 0.5, 0.9, 1.0]))
    assert np.all(np.isfinite(out))
    assert np.all(np.diff(out) > 0)
    assert out[2] == pytest.approx(0.5)


@pytest.mark.parametrize("method", CALIBRATION_METHODS)
def test_fit_input_errors(method: str) -> None:
    with pytest.raises(ValueError, match=r"probs: received an empty array"):
        fit_calibrator(method, np.array([]), np.array([]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"probs: received nan at index 1; expected finite probabilities"):
        fit_calibrator(method, np.array([0.2, np.nan]), np.array([0, 1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"probs: received 2\.5 at index 0"):
        fit_calibrator(method, np.array([2.5, 0.1]), np.array([0, 1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels: received 2\.0 at index 1; expected binary labels 0 or 1"):
        fit_calibrator(method, np.array([0.2, 0.4]), np.array([0, 2]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels: received nan at index 0"):
        fit_calibrator(method, np.array([0.2, 0.4]), np.array([np.nan, 1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels: received length 3; expected 2"):
        fit_calibrator(method, np.array([0.2, 0.4]), np.array([0, 1, 1]))  # type: ignore[arg-type]


def test_construction_and_state_errors() -> None:
    with pytest.raises(ValueError, match=r"method: received 'platt'; expected one of"):
        fit_calibrator("platt", np.array([0.5]), np.array([1]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not fitted"):
        TemperatureScaling().transform(np.array([0.5]))
    with pytest.raises(ValueError, match=r"not fitted"):
        IsotonicCalibration().to_dict()
    with pytest.raises(ValueError, match=r"temperature: received -1\.0; expected a finite number > 0"):
        TemperatureScaling(temperature=-1.0)
    with pytest.raises(ValueError, match=r"received keys \['method'\]; expected \['method', 'temperature'\]"):
        calibrator_from_dict({"method": "temperature"})
    with pytest.raises(ValueError, match=r"x strictly increasing"):
        calibrator_from_dict({"method": "isotonic", "x": [0.5, 0.1], "y": [0.2, 0.3]})
    with pytest.raises(ValueError, match=r"method: received None"):
        calibrator_from_dict({})
