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
from numpy.typing import NDArray

from experiments.simulator.observation import Observation, Truth

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


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


def top_k(scores: F64, k: int) -> I64:
    """Indices of the k best scores per row, best first; ties go to the lower column (deterministic)."""
    rows, cols = scores.shape
    k = min(k, cols)
    if k == 0:
        return np.zeros((rows, 0), np.int64)
    negated = -scores
    if k < cols:
        part = np.argpartition(negated, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrarily among values tied with the k-th best; where such a tie
        # straddles the cut, fall back to a stable sort so the lower columns win (rare for real scores).
        taken = np.take_along_axis(negated, part, axis=1)
        kth = taken.max(axis=1, keepdims=True)
        straddles = (negated == kth).sum(axis=1) > (taken == kth).sum(axis=1)
        if straddles.any():
            part[straddles] = np.argsort(negated[straddles], axis=1, kind="stable")[:, :k]
    else:
        part = np.tile(np.arange(cols), (rows, 1))
    order = np.lexsort((part, np.take_along_axis(negated, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def deterministic_slate(scores: F64, k: int) -> Slate:
    positions = top_k(scores, k)
    return Slate(positions=positions, propensity=np.ones(positions.shape))


def plackett_luce_slate(logits: F64, k: int, rng: np.random.Generator) -> Slate:
    """Sample a ranking without replacement from Plackett-Luce(softmax(logits)) with the Gumbel-top-k trick.

    The logged propensity of slot j is the Plackett-Luce step probability
    exp(l_i) / sum over candidates not yet placed of exp(l), exact and cheap via a cumulative sum.
    """
    logits = np.where(np.isfinite(logits), logits, -np.inf)
    perturbed = logits + rng.gumbel(size=logits.shape)
    positions = top_k(perturbed, k)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # (R, M), stable softmax numerators
    chosen = np.take_along_axis(shifted, positions, axis=1)  # (R, K)
    remaining = shifted.sum(axis=1, keepdims=True) - np.cumsum(chosen, axis=1) + chosen  # mass before slot j
    return Slate(positions=positions, propensity=chosen / remaining)


def normalized(values: F64) -> F64:
    """Divide each request's row by its largest absolute value (documented blend normalization)."""
    scale: F64 = np.abs(values).max(axis=1, keepdims=True)
    out: F64 = np.divide(values, scale, out=np.zeros_like(values), where=scale > 0)
    return out
