"""Price controller: direction, bounds, warm start, and convergence on a synthetic exposure stream."""

from __future__ import annotations

import numpy as np

from fairness.controller import PriceController
from fairness.policy import load_policy


def settings(**changes: float) -> object:
    overrides = [f"controller.{k}={v}" for k, v in changes.items()]
    return load_policy(overrides=overrides).controller


def test_over_exposed_keys_get_dearer_and_under_exposed_cheaper() -> None:
    c = PriceController(keys=[10, 20], targets=[0.5, 0.5], initial_prices=[0.0, 0.0],
                        settings=settings(smoothing=0.0, gain=0.1))
    c.update([10, 20], [0.8, 0.2])
    assert c.price_of([10])[0] > 0 > c.price_of([20])[0]
    assert c.price_of([99])[0] == 0.0  # unknown keys are not priced


def test_warm_start_and_bounds() -> None:
    c = PriceController(keys=[1, 2], targets=[0.5, 0.5], initial_prices=[0.3, -5.0],
                        settings=settings(max_price=1.0, gain=0.5, smoothing=0.0))
    np.testing.assert_allclose(c.prices, [0.3, -1.0])  # warm start, clipped to the bound
    for _ in range(50):
        c.update([1, 2], [1.0, 0.0])
    assert np.abs(c.prices).max() <= 1.0
    assert c.updates == 50


def test_one_update_moves_a_price_by_at_most_the_gain() -> None:
    c = PriceController(keys=[1, 2], targets=[0.001, 0.999], initial_prices=[0.0, 0.0],
                        settings=settings(gain=0.05, smoothing=0.0))
    c.update([1, 2], [1.0, 0.0])  # a 1000x overshoot of a tiny target
    assert abs(c.prices[0]) <= 0.05 + 1e-12


def test_converges_on_a_synthetic_stream() -> None:
    """Exposure responds to prices like a softmax market with noise; prices settle where targets are met."""
    rng = np.random.default_rng(0)
    quality = np.array([2.0, 1.0, 0.5, 0.0, -0.5])
    targets = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    c = PriceController(keys=np.arange(5), targets=targets, initial_prices=np.zeros(5),
                        settings=settings(gain=0.05, smoothing=0.5, max_price=5.0))

    def shares(prices: np.ndarray) -> np.ndarray:
        logits = quality - 3.0 * prices
        e = np.exp(logits - logits.max())
        return e / e.sum()

    errors = []
    for _ in range(600):
        realized = rng.multinomial(2000, shares(c.prices)) / 2000  # a noisy period of 2,000 impressions
        c.update(np.arange(5), realized)
        errors.append(np.abs(shares(c.prices) - targets).max())
    assert errors[0] > 0.2  # started far from target (uniform prices favour the best creator)
    assert max(errors[-100:]) < 0.02  # and stays near it: converged and stable under noise
