"""The policy interface: one vectorized call per round, over every request of the round.

A policy receives an `Observation` (observable signals only, read-only copies; see
`experiments/simulator/observation.py`) and returns a `Slate`: for each request, which candidates
fill the K slots, in order, and optionally the probability with which a stochastic policy chose
each one. Only the oracle reference sets `uses_ground_truth` and is handed a `Truth`.

FairCo, P-MMF and the ecorank engine plug in through this same protocol: `Observation.accounts`
carries per-account cumulative and recent exposure and the detected operator cluster of each
account, which is what exposure-history-aware policies need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from experiments.simulator.observation import Observation, Truth
from fairness.slate import plackett_luce, top_k

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

__all__ = ["F64", "I64", "Learner", "Policy", "Slate", "deterministic_slate", "normalized", "plackett_luce_slate",
           "top_k"]


@dataclass(frozen=True)
class Slate:
    """positions[r, k] is the candidate column shown in slot k of request r; both arrays (R, K)."""

    positions: I64
    propensity: F64  # probability the policy chose that candidate for that slot given the slots above


@runtime_checkable
class Policy(Protocol):
    name: str
    uses_ground_truth: bool

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        """Fill obs.n_slots slots for every request; vectorized over requests."""
        ...


@runtime_checkable
class Learner(Protocol):
    """A policy that learns from its own impressions: after every round the runner hands it that round's
    impressions (the impressions.parquet schema: observable features, slot, propensity and the realized
    outcomes, with the delayed audit's noisy risk label), when `learns` is true."""

    learns: bool

    def learn(self, impressions: pa.Table) -> None: ...


def deterministic_slate(scores: F64, k: int) -> Slate:
    positions = top_k(scores, k)
    return Slate(positions=positions, propensity=np.ones(positions.shape))


def plackett_luce_slate(logits: F64, k: int, rng: np.random.Generator) -> Slate:
    """Sample a ranking from Plackett-Luce(softmax(logits)) with exact step propensities (fairness.slate)."""
    positions, propensity = plackett_luce(logits, k, rng)
    return Slate(positions=positions, propensity=propensity)


def normalized(values: F64) -> F64:
    """Divide each request's row by its largest absolute value (documented blend normalization)."""
    scale: F64 = np.abs(values).max(axis=1, keepdims=True)
    out: F64 = np.divide(values, scale, out=np.zeros_like(values), where=scale > 0)
    return out
