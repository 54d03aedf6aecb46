"""Metrics of a simulated marketplace: per round (`round_metrics`) and per run (`run_metrics`).

Evaluation may use ground truth (true operators, account types, quality); policies never see it.
Exposure is position-weighted (examination 1/log2(k+1)); an impression is one shown slot. The
exposure-fairness formulas live in `fairness.metrics` and are shared with the rest of ecorank.
Definitions: docs/simulator.md#metrics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator.state import (
    BAD_TYPES,
    COHORT_NAMES,
    EXIT_NAMES,
    EXIT_UNPROFITABLE,
    EXIT_UNVIABLE,
    F64,
    MATRIX,
    NEWCOMER,
    REUPLOADER,
    TYPE_NAMES,
    World,
)
from experiments.simulator.story import RoundRecord
from fairness import metrics as fm

NAN = float("nan")


def present_accounts(world: World, start: int, end: int) -> np.ndarray:
    """Accounts alive at some point of rounds [start, end]."""
    acc = world.accounts
    n = acc.n
    return np.flatnonzero((acc.born[:n] <= end) & ((acc.died[:n] < 0) | (acc.died[:n] >= start)))


def round_metrics(world: World, config: ScenarioConfig, record: RoundRecord) -> dict[str, float]:
    acc, items = world.accounts, world.items
    t = record.round
    start = max(0, t - config.run.window + 1)
    who = present_accounts(world, start, t)
    window = acc.exposure_hist[who, start: t + 1].sum(axis=1)
    burn_in = config.run.burn_in
    panel = present_accounts(world, burn_in, burn_in) if t >= burn_in else np.zeros(0, np.int64)
    resp = record.responses
    clicks, purchases = float(resp.click.sum()), float(resp.purchase.sum())
    complaints, gmv = float(resp.complaint.sum()), float(resp.gmv.sum())
    impressions = float(record.shown.size)
    requests = len(record.retrieved.user)

    item_exposure = record.item_exposure
    total = float(item_exposure.sum())
    copies = items.is_copy
    source_rows = np.flatnonzero(np.isin(items.id, items.source[copies]))
    copy_exposure = float(item_exposure[copies].sum())
    leaked_from = float(item_exposure[source_rows].sum())
    exposure_by_account = np.pad(record.account_exposure, (0, acc.n - len(record.account_exposure)))  # + entrants
    sybil = world.operators.n_accounts[acc.operator[: acc.n]] >= 2
    entrants = record.entrants
    exits_now = acc.died[: acc.n] == t
    bad_alive = acc.alive & np.isin(acc.type[: acc.n], (REUPLOADER, MATRIX))  # the adaptive ones
    has_merit = len(who) and bool(window.sum() > 0)
    return {
        "round": float(t),
        "requests": float(requests),
        "active_share": requests / world.users.n,
        "impressions": impressions,
        "clicks": clicks,
        "purchases": purchases,
        "complaints": complaints,
        "gmv": gmv,
        "complaints_per_purchase": complaints / purchases if purchases else NAN,
        "complaints_per_1k": 1000.0 * complaints / impressions if impressions else NAN,
        "user_utility": float(record.user_value.mean()) if requests else NAN,
        "gini_account": fm.gini(window) if len(who) else NAN,
        "gini_operator": fm.cluster_gini(window, acc.operator[who]) if len(who) else NAN,
        # Panel: the accounts alive when measurement starts (end of burn-in), followed for the rest of the
        # run, departed ones included with the exposure they (no longer) get: the lock-in view.
        "gini_panel": fm.gini(acc.exposure_hist[panel, start: t + 1].sum(axis=1)) if len(panel) else NAN,
        # Cumulative: lifetime exposure of every account that has existed, departed ones included.
        "gini_account_cumulative": fm.gini(acc.exposure[: acc.n]),
        "gini_operator_cumulative": fm.cluster_gini(acc.exposure[: acc.n], acc.operator[: acc.n]),
        "top1_share": fm.top_share(window, fraction=config.metrics.top_fraction) if len(who) else NAN,
        "entropy": fm.exposure_entropy(window) if len(who) else NAN,
        "merit_disparity": fm.merit_disparity(window, acc.mean_quality[who], acc.cohort[who]) if has_merit else NAN,
        "original_share": float(item_exposure[items.is_original].sum()) / total if total else NAN,
        "piracy_leakage": copy_exposure / (copy_exposure + leaked_from) if copy_exposure + leaked_from else NAN,
        "sybil_share": fm.share_of(exposure_by_account, sybil) if exposure_by_account.sum() else NAN,
        "risk_share": float(item_exposure[items.violation].sum()) / total if total else NAN,
        "accounts_alive": float(acc.alive.sum()),
        "operators_alive": float(len(np.unique(acc.operator[: acc.n][acc.alive]))),
        "entrants": float(len(entrants)),
        "bad_entrants": float(np.isin(acc.type[entrants], BAD_TYPES).sum()),
        "exits_unprofitable": float((exits_now & (acc.exit_cause[: acc.n] == EXIT_UNPROFITABLE)).sum()),
        "exits_unviable": float((exits_now & (acc.exit_cause[: acc.n] == EXIT_UNVIABLE)).sum()),
        "detector_recall": world.detector.recall,
        "audit_miss_share": record.audit_miss_share,
        "mean_obfuscation": float(acc.obfuscation[: acc.n][bad_alive].mean()) if bad_alive.any() else NAN,
    }


# Summary metrics of a run and how they aggregate the post-burn-in rounds.
MEAN_OF_ROUNDS = ("active_share", "user_utility", "gini_account", "gini_operator", "top1_share", "entropy",
                  "merit_disparity", "original_share", "piracy_leakage", "sybil_share", "risk_share")
SUMMARY_METRICS = (
    "gmv", "gmv_per_round", "complaints_per_purchase", "complaints_per_1k", *MEAN_OF_ROUNDS, "gini_trend",
    "gini_panel_trend", "gini_cumulative_final", "mobility", "newcomer_survival", "rounds_to_milestone",
    "milestone_share", "exits_unprofitable", "exits_unviable", "bad_entry_share", "accounts_final",
)
# Which way is better, for readers of the summary table ("+" higher, "-" lower; counts are neutral).
DIRECTION = {
    **dict.fromkeys(("gmv", "gmv_per_round", "gmv_rel", "active_share", "user_utility", "entropy", "original_share",
                     "mobility", "newcomer_survival", "milestone_share"), "+"),
    **dict.fromkeys(("complaints_per_purchase", "complaints_per_1k", "gini_account", "gini_operator", "top1_share",
                     "merit_disparity", "piracy_leakage", "sybil_share", "risk_share", "gini_trend", "gini_panel_trend",
                     "gini_cumulative_final", "rounds_to_milestone", "bad_entry_share"), "-"),
}


def run_metrics(world: World, config: ScenarioConfig, rounds: list[dict[str, float]]) -> dict[str, float]:
    """One row per run: the post-burn-in aggregates of the round metrics plus creator-lifecycle metrics."""
    burn_in, horizon = config.run.burn_in, config.metrics.survival_horizon
    after = [r for r in rounds if r["round"] >= burn_in]
    col = {key: np.array([r[key] for r in after]) for key in after[0]}
    out: dict[str, float] = {
        "gmv": float(col["gmv"].sum()),
        "gmv_per_round": float(col["gmv"].mean()),
        "complaints_per_purchase": _ratio(col["complaints"].sum(), col["purchases"].sum()),
        "complaints_per_1k": 1000.0 * _ratio(col["complaints"].sum(), col["impressions"].sum()),
    }
    for key in MEAN_OF_ROUNDS:
        out[key] = _nanmean(col[key])
    out["gini_trend"] = gini_trend(col["gini_account"])
    out["gini_panel_trend"] = gini_trend(col["gini_panel"])
    out["gini_cumulative_final"] = float(col["gini_account_cumulative"][-1])
    out["mobility"] = mobility(world, config)
    survival, to_milestone, reached = newcomer_outcomes(world, config, horizon)
    out.update(newcomer_survival=survival, rounds_to_milestone=to_milestone, milestone_share=reached)
    out["exits_unprofitable"] = float(col["exits_unprofitable"].sum())
    out["exits_unviable"] = float(col["exits_unviable"].sum())
    out["bad_entry_share"] = _ratio(col["bad_entrants"].sum(), col["entrants"].sum())
    out["accounts_final"] = float(world.accounts.alive.sum())
    return out


def gini_trend(series: F64) -> float:
    """Lock-in: change of the window Gini over the post-burn-in horizon, from a least-squares line
    (slope x number of rounds), which is far less noisy than comparing two end windows."""
    rounds = np.arange(len(series), dtype=float)
    finite = np.isfinite(series)
    if finite.sum() < 5:
        return NAN
    slope = np.polyfit(rounds[finite], series[finite], 1)[0]
    return float(slope * len(series))


def mobility(world: World, config: ScenarioConfig) -> float:
    """Mean Spearman correlation of window-exposure ranks at t and t + lag (accounts alive at both)."""
    acc = world.accounts
    lag, w, rounds = config.metrics.mobility_lag, config.run.window, world.round
    values = []
    for t in range(config.run.burn_in + w - 1, rounds - lag, w):
        later = t + lag
        both = np.flatnonzero((acc.born[: acc.n] <= t - w + 1)
                              & ((acc.died[: acc.n] < 0) | (acc.died[: acc.n] > later)))
        if len(both) < 3:
            continue
        now = acc.exposure_hist[both, t - w + 1: t + 1].sum(axis=1)
        then = acc.exposure_hist[both, later - w + 1: later + 1].sum(axis=1)
        rho = fm.spearman(now, then)
        if math.isfinite(rho):
            values.append(rho)
    # Mobility is 1 - rank persistence, so that higher means a more open marketplace.
    return 1.0 - float(np.mean(values)) if values else NAN


def newcomer_outcomes(world: World, config: ScenarioConfig, horizon: int) -> tuple[float, float, float]:
    """Newcomers who entered after burn-in with `horizon` rounds to go: survival share, median rounds to
    the impressions milestone (among those who reached it within the horizon), share reaching it."""
    acc = world.accounts
    n = acc.n
    cohort = np.flatnonzero((acc.cohort[:n] == NEWCOMER) & (acc.born[:n] >= config.run.burn_in)
                            & (acc.born[:n] + horizon <= world.round - 1))
    if len(cohort) == 0:
        return NAN, NAN, NAN
    born = acc.born[cohort]
    survived = (acc.died[cohort] < 0) | (acc.died[cohort] > born + horizon)
    offsets = np.arange(horizon + 1)
    columns = np.minimum(born[:, None] + offsets[None, :], world.round - 1)
    cumulative = np.cumsum(np.take_along_axis(acc.impressions_hist[cohort], columns, axis=1), axis=1)
    reached = cumulative[:, -1] >= config.metrics.impressions_milestone
    first = np.argmax(cumulative >= config.metrics.impressions_milestone, axis=1)
    median = float(np.median(first[reached])) if reached.any() else NAN
    return float(survived.mean()), median, float(reached.mean())


def account_snapshot(world: World, round_: int) -> dict[str, Any]:
    """Columns of accounts.parquet for every account that has existed, at the end of `round_`."""
    acc = world.accounts
    n = acc.n
    return {
        "round": np.full(n, round_, np.int32),
        "account": np.arange(n, dtype=np.int64),
        "operator": acc.operator[:n].copy(),
        "type": np.asarray(TYPE_NAMES)[acc.type[:n]],
        "cohort": np.asarray(COHORT_NAMES)[acc.cohort[:n]],
        "born": acc.born[:n].astype(np.int32),
        "died": acc.died[:n].astype(np.int32),
        "exit_cause": np.asarray(EXIT_NAMES)[acc.exit_cause[:n]],
        "mean_quality": acc.mean_quality[:n].copy(),
        "popularity": acc.popularity[:n].copy(),
        "satisfaction": acc.satisfaction[:n].copy(),
        "obfuscation": acc.obfuscation[:n].copy(),
        "detected_cluster": acc.detected_cluster[:n].copy(),
        "impressions": acc.impressions[:n].copy(),
        "exposure": acc.exposure[:n].copy(),
        "clicks": acc.clicks[:n].copy(),
        "purchases": acc.purchases[:n].copy(),
        "complaints": acc.complaints[:n].copy(),
        "gmv": acc.gmv[:n].copy(),
    }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else NAN


def _nanmean(values: F64) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else NAN
