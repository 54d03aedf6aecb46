"""Rankings from scores or traffic weights: K positions per request, deterministic or sampled.

`top_k` sorts (ties go to the lower column, so results are reproducible). `plackett_luce` samples a
ranking without replacement with the Gumbel-top-k trick and returns each slot's exact step
propensity, which unbiased learning from the logs needs. With logits = log(weights) the first slot is
drawn with probability exactly equal to the traffic weight, so the top position's expected exposure
follows the allocation; later slots follow it approximately (the ranking with exactly matching
expected exposure at every position needs a Birkhoff-von Neumann decomposition; see docs/fairness.md).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


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


def plackett_luce(logits: F64, k: int, rng: np.random.Generator) -> tuple[I64, F64]:
    """Sample k positions per row from Plackett-Luce(softmax(logits)); (positions, step propensities), (R, k).

    The propensity of slot j is exp(l_i) / (sum over candidates not yet placed of exp(l)), exact and
    cheap with a cumulative sum. Candidates with logit -inf are never drawn while others remain.
    """
    logits = np.where(np.isfinite(logits), logits, -np.inf)
    perturbed = logits + rng.gumbel(size=logits.shape)
    positions = top_k(perturbed, k)
    top = logits.max(axis=1, keepdims=True)
    shifted = np.exp(logits - np.where(np.isfinite(top), top, 0.0))  # (R, M) stable softmax numerators
    chosen = np.take_along_axis(shifted, positions, axis=1)  # (R, k)
    remaining = shifted.sum(axis=1, keepdims=True) - np.cumsum(chosen, axis=1) + chosen  # mass before slot j
    propensity = np.divide(chosen, remaining, out=np.zeros_like(chosen), where=remaining > 0)
    return positions, propensity


def slate_from_weights(weights: F64, k: int, *, tie_break: F64, rng: np.random.Generator | None = None
                       ) -> tuple[I64, F64]:
    """Rank K positions per request from traffic weights (R, M); returns (positions, propensity), (R, K).

    Deterministic (rng None): by weight, ties (several candidates at a cap, or at 0) broken by
    `tie_break` (the adjusted utility); propensity 1. Sampled: Plackett-Luce on log(weight), so the top
    slot is drawn with probability equal to the weight; once every positive-weight candidate is placed,
    the rest follow by tie_break with propensity 1.
    """
    tie_rank = np.argsort(np.argsort(tie_break, axis=1, kind="stable"), axis=1).astype(np.float64)  # 0 = worst
    if rng is None:
        return top_k(_by_weight_then(weights, tie_rank), k), np.ones((len(weights), min(k, weights.shape[1])))
    positive = weights > 0
    with np.errstate(divide="ignore"):
        logits = np.where(positive, np.log(np.where(positive, weights, 1.0)), -np.inf)
    # positive-weight candidates first, in Gumbel-perturbed order; then the others by tie_break
    key = np.where(positive, 1e6 + logits + rng.gumbel(size=weights.shape), tie_rank - 1e6)
    positions = top_k(key, k)
    shifted = np.where(positive, weights, 0.0)  # softmax(log w) numerators are the weights themselves
    chosen = np.take_along_axis(shifted, positions, axis=1)
    remaining = shifted.sum(axis=1, keepdims=True) - np.cumsum(chosen, axis=1) + chosen
    sampled = chosen > 0
    propensity = np.where(sampled, np.divide(chosen, remaining, out=np.ones_like(chosen), where=remaining > 0), 1.0)
    return positions, propensity


def _by_weight_then(weights: F64, tie_rank: F64) -> F64:
    """A score ordering by weight, then by tie rank, exactly: dense weight rank * M + tie rank."""
    cols = weights.shape[1]
    order = np.argsort(weights, axis=1, kind="stable")
    sorted_w = np.take_along_axis(weights, order, axis=1)
    dense = np.concatenate((np.zeros((len(weights), 1)), np.cumsum(np.diff(sorted_w, axis=1) > 0, axis=1)), axis=1)
    rank = np.empty_like(dense)
    np.put_along_axis(rank, order, dense, axis=1)
    score: F64 = rank * cols + tie_rank
    return score
