"""Price controller: between plans, move prices from realized vs target exposure (integral control).

The planner publishes a target exposure share and a dual price per creator (or cluster). Traffic does
not follow a plan exactly (retrieval varies, users vary), so between plans each price integrates the
exposure error, as FairCo and P-MMF do with their fairness errors:

    s_k   <- smoothing * s_k + (1 - smoothing) * realized share_k          (exponential smoothing)
    p_k   <- clip(p_k + gain * clip((s_k - t_k) / max(t_k, min_target), -1, 1), -max_price, max_price)

A key getting more than its target has its price raised (demoted online, where prices are subtracted
from utility); one getting less has it lowered (boosted). Prices start from the plan's duals (warm
start). The error is relative to the target and clipped to [-1, 1], so one update moves a price by at
most `gain`, and prices are bounded by `max_price`: the loop is bounded, and it is stable when the
exposure response to a price change is not steeper than about 2 / gain (tests/fairness/test_controller.py
checks convergence on a synthetic stream).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fairness.policy import ControllerSection

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class PriceController:
    """Integral price controller over a fixed set of keys (creator or cluster ids)."""

    def __init__(self, *, keys: ArrayLike, targets: ArrayLike, initial_prices: ArrayLike, settings: ControllerSection,
                 min_target: float | None = None) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.float64)
        self.prices = np.clip(np.asarray(initial_prices, dtype=np.float64), -settings.max_price, settings.max_price)
        self.initial_prices = self.prices.copy()
        if not (self.keys.shape == self.targets.shape == self.prices.shape) or self.keys.ndim != 1:
            raise ValueError(f"keys {self.keys.shape}, targets {self.targets.shape} and initial_prices "
                             f"{self.prices.shape} must be equal 1-D shapes, one entry per key")
        if len(np.unique(self.keys)) != len(self.keys):
            raise ValueError("controller keys must be unique; aggregate exposure per key before building it")
        if np.any(self.targets < 0) or not np.isfinite(self.targets).all():
            raise ValueError("controller targets must be finite exposure shares >= 0")
        self.settings = settings
        positive = self.targets[self.targets > 0]
        # relative errors of keys with tiny targets are measured against this floor, so they cannot explode
        self.min_target = float(min_target if min_target is not None else
                                (0.1 * np.median(positive) if len(positive) else 1e-6))
        self.smoothed = self.targets.copy()  # start at target: no error before any observation
        self.updates = 0
        self._order = np.argsort(self.keys)

    def _index(self, keys: ArrayLike) -> tuple[I64, NDArray[np.bool_]]:
        keys = np.asarray(keys, dtype=np.int64)
        sorted_keys = self.keys[self._order]
        pos = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
        found = (sorted_keys[pos] == keys) if len(sorted_keys) else np.zeros(len(keys), bool)
        return self._order[pos], found

    def update(self, keys: ArrayLike, exposure: ArrayLike) -> None:
        """Feed one period's realized exposure (any units; normalized to shares over all exposure given)."""
        exposure = np.asarray(exposure, dtype=np.float64)
        total = float(exposure.sum())
        if total <= 0:
            return
        index, found = self._index(keys)
        realized = np.zeros(len(self.keys))
        np.add.at(realized, index[found], exposure[found] / total)
        s = self.settings
        self.smoothed = s.smoothing * self.smoothed + (1.0 - s.smoothing) * realized
        error = np.clip((self.smoothed - self.targets) / np.maximum(self.targets, self.min_target), -1.0, 1.0)
        self.prices = np.clip(self.prices + s.gain * error, -s.max_price, s.max_price)
        self.updates += 1

    def correction_of(self, keys: ArrayLike) -> F64:
        """What the controller has learned on top of its warm start, per key (0 for unknown keys)."""
        index, found = self._index(keys)
        return np.where(found, self.prices[index] - self.initial_prices[index], 0.0)

    def carry_over(self, previous: PriceController) -> None:
        """Start from this plan's duals plus the correction the previous controller had learned, per key.

        A new plan's duals come from an idealized fluid program; what the controller learned about how
        real traffic responds to prices stays valid across plans, so it is kept rather than reset.
        """
        self.prices = np.clip(self.prices + previous.correction_of(self.keys), -self.settings.max_price,
                              self.settings.max_price)

    def price_of(self, keys: ArrayLike) -> F64:
        """Current price per key; 0 for keys the controller does not know."""
        index, found = self._index(keys)
        return np.where(found, self.prices[index], 0.0)
