"""Adversaries and the detector: the cat-and-mouse of story step 9.

Re-uploaders choose (obfuscation z, copy lag) and matrix operators (z, accounts per operator) by
multiplicative weights on profit, updated every `update_every` rounds. The detector finds a copy or
a matrix link with probability recall * (1 - penalty * z); its recall drifts down with the
obfuscation of new bad items and, at every retraining, recovers toward the target in proportion to
the share of bad content an audit found undetected.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from experiments.config import ScenarioConfig
from experiments.simulator.state import F64, MATRIX, NONE, REUPLOADER, Detector, Strategies, World


def initial_strategies(config: ScenarioConfig) -> Strategies:
    adv = config.adversaries
    reup = np.array(list(itertools.product(adv.obfuscation_levels, adv.copy_lags)), dtype=float)
    matrix = np.array(list(itertools.product(adv.obfuscation_levels, adv.matrix_sizes)), dtype=float)
    return Strategies(reuploader_arms=reup, reuploader_weights=np.ones(len(reup)),
                      matrix_arms=matrix, matrix_weights=np.ones(len(matrix)))


def sample_reuploader_arms(strategies: Strategies, n: int, rng: np.random.Generator) -> tuple[F64, F64]:
    p = strategies.reuploader_weights / strategies.reuploader_weights.sum()
    arms = strategies.reuploader_arms[rng.choice(len(p), size=n, p=p)]
    return arms[:, 0], arms[:, 1].astype(np.int64)


def sample_matrix_arms(strategies: Strategies, n: int, rng: np.random.Generator) -> tuple[F64, F64]:
    p = strategies.matrix_weights / strategies.matrix_weights.sum()
    arms = strategies.matrix_arms[rng.choice(len(p), size=n, p=p)]
    return arms[:, 0], arms[:, 1].astype(np.int64)


def detection_probability(detector: Detector, config: ScenarioConfig, obfuscation: F64) -> F64:
    return np.clip(detector.recall * (1.0 - config.detector.obfuscation_penalty * obfuscation), 0.0, 1.0)


def drift(world: World, config: ScenarioConfig, new_bad_obfuscation: F64) -> None:
    """The detector was trained on yesterday's tricks: recall decays with today's obfuscation."""
    if len(new_bad_obfuscation):
        world.detector.recall *= 1.0 - config.detector.drift * float(new_bad_obfuscation.mean())


def retrain(world: World, config: ScenarioConfig, rng: np.random.Generator) -> float:
    """Audit live bad content, recover recall, and re-scan what was missed. Return the audit's miss share."""
    items, acc, det = world.items, world.accounts, config.detector
    duplicate = items.is_copy | (acc.type[items.account] == MATRIX)
    matrix_accounts = np.flatnonzero(acc.alive & (acc.type[: acc.n] == MATRIX))
    n_bad = int(duplicate.sum()) + len(matrix_accounts)
    if n_bad == 0:
        return 0.0
    missed_items = duplicate & (items.detected_dup == NONE)
    missed_accounts = matrix_accounts[acc.detected_cluster[matrix_accounts] == NONE]
    miss_share = (int(missed_items.sum()) + len(missed_accounts)) / n_bad
    world.detector.recall += (det.target_recall - world.detector.recall) * min(1.0, det.audit_gain * miss_share)

    rows = np.flatnonzero(missed_items)
    found = rng.random(len(rows)) < detection_probability(world.detector, config, items.obfuscation[rows])
    items.detected_dup[rows[found]] = items.root[rows[found]]
    found = rng.random(len(missed_accounts)) < detection_probability(
        world.detector, config, acc.obfuscation[missed_accounts])
    acc.detected_cluster[missed_accounts[found]] = acc.operator[missed_accounts[found]]
    return miss_share


def update_strategies(world: World, config: ScenarioConfig, round_: int, rng: np.random.Generator) -> None:
    """Multiplicative weights on the mean profit of each arm over the last update period."""
    adv, acc, strat = config.adversaries, world.accounts, world.strategies
    start = max(0, round_ - adv.update_every + 1)
    n = acc.n
    profit = acc.utility_hist[:n, start: round_ + 1].sum(axis=1)
    active_rounds = np.clip(np.minimum(round_, np.where(acc.died[:n] >= 0, acc.died[:n], round_))
                            - np.maximum(start, acc.born[:n]) + 1, 0, None)
    for kind, arms, weights, second in (
        (REUPLOADER, strat.reuploader_arms, strat.reuploader_weights, acc.copy_lag[:n]),
        (MATRIX, strat.matrix_arms, strat.matrix_weights, world.operators.n_accounts[acc.operator[:n]]),
    ):
        mask = (acc.type[:n] == kind) & (active_rounds > 0)
        if not mask.any():
            continue
        arm = _arm_index(arms, acc.obfuscation[:n][mask], second[mask].astype(float))
        per_round = profit[mask] / active_rounds[mask]
        total = np.bincount(arm, weights=per_round, minlength=len(arms))
        count = np.bincount(arm, minlength=len(arms))
        tried = count > 0
        mean = np.divide(total, count, out=np.zeros(len(arms)), where=tried)
        scale = max(float(np.abs(mean[tried]).max()), 1e-9)  # profits in units of the best arm's
        weights *= np.exp(adv.eta * np.where(tried, mean / scale, 0.0))
        weights /= weights.sum()

    # Existing re-uploaders and matrix operators switch their obfuscation (and re-uploaders their lag).
    reup = np.flatnonzero(acc.alive & (acc.type[:n] == REUPLOADER))
    acc.obfuscation[reup], acc.copy_lag[reup] = sample_reuploader_arms(strat, len(reup), rng)
    matrix = np.flatnonzero(acc.alive & (acc.type[:n] == MATRIX))
    ops, inverse = np.unique(acc.operator[matrix], return_inverse=True)
    z, _ = sample_matrix_arms(strat, len(ops), rng)
    acc.obfuscation[matrix] = z[inverse]


def _arm_index(arms: F64, first: F64, second: F64) -> NDArray[np.intp]:
    match = (np.isclose(arms[None, :, 0], first[:, None])) & (np.isclose(arms[None, :, 1], second[:, None]))
    # Accounts whose strategy is not an arm (e.g. planted farms of another size) map to the closest arm.
    distance = np.abs(arms[None, :, 0] - first[:, None]) + np.abs(arms[None, :, 1] - second[:, None])
    index: NDArray[np.intp] = np.where(match.any(axis=1), match.argmax(axis=1), distance.argmin(axis=1))
    return index
