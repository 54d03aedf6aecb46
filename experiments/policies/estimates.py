"""The four heads a learned policy ranks with: a trained bundle's predictions, or an observable estimator.

`policy_heads` is what the policies call: when the scenario names a trained bundle
(`policies.heads_bundle`, as the closed loop does after training on logged impressions) the heads are
that model's calibrated predictions from the candidates' observable signals; otherwise `estimate_heads`.

`estimate_heads` is the stand-in for a trained multi-task model.

The four heads of ecorank (expected GMV, prosperity, risk, complaint) estimated per impression at
the top slot from what a policy may see. Click, purchase and engagement use the simulator's response
model structure fed with *observable, noisy* inputs (the quality signal instead of true quality, no
gaming, the average price sensitivity): a well-specified model that still cannot see hidden state.
Complaint rates are the creator's own empirical rates shrunk toward the population rate, so they are
learned from the policy's own impressions (Chaney et al.'s confounded loop, on purpose). Risk comes from the
originality score and detected duplicate or operator clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from experiments.config import ScenarioConfig
from experiments.policies.base import F64
from experiments.simulator.observation import Candidates

if TYPE_CHECKING:  # torch loads only when a bundle is configured
    from mtl.bundle import Bundle

# What a model may read per candidate: the observable signals, never the ids.
CANDIDATE_SIGNALS = frozenset(Candidates.__dataclass_fields__) - {"item", "account", "dup_cluster", "operator_cluster"}


@dataclass(frozen=True)
class Heads:
    """The four ranking heads per candidate, all (R, M)."""

    gmv: F64  # expected GMV per impression
    prosperity: F64  # probability of healthy engagement
    risk: F64  # probability the impression is a governance violation
    complaint: F64  # probability of a complaint


@dataclass(frozen=True)
class HeadEstimates(Heads):
    """Per-impression estimates at the top slot, all (R, M): gmv = p_click * p_purchase * price, prosperity =
    p_click * p_engage, complaint = p_click * p_purchase * complaints per purchase."""

    p_click: F64
    p_purchase: F64  # | click


def policy_heads(candidates: Candidates, config: ScenarioConfig) -> Heads:
    """The heads a learned policy ranks with: the configured bundle's predictions, else `estimate_heads`."""
    path = config.policies.heads_bundle
    if not path:
        return estimate_heads(candidates, config)
    bundle = cached_bundle(path)
    predictions = bundle.predict_dense(observed_features(candidates, bundle))
    shape = candidates.shape
    return Heads(**{name: predictions[name].reshape(shape) for name in ("gmv", "prosperity", "risk", "complaint")})


@lru_cache(maxsize=4)
def cached_bundle(path: str) -> Bundle:
    """A bundle loaded once per process and path (each simulation worker loads its own), checked to read only
    signals the simulator observes."""
    from mtl.bundle import load_bundle

    bundle = load_bundle(Path(path))
    names = [d.name for d in bundle.schema.dense]
    missing = [name for name in names if name not in CANDIDATE_SIGNALS]
    if missing or bundle.schema.categorical:
        raise ValueError(f"bundle {path} reads features {missing or [c.name for c in bundle.schema.categorical]} "
                         f"that a policy does not observe; expected dense features among {sorted(CANDIDATE_SIGNALS)}. "
                         "Train on impressions.parquet with the built-in 'ecorank' schema")
    return bundle


def observed_features(candidates: Candidates, bundle: Bundle) -> NDArray[np.float32]:
    """(R * M, F) float32 in the bundle's feature order, request by request."""
    columns = [getattr(candidates, d.name).ravel() for d in bundle.schema.dense]
    return np.stack(columns, axis=1).astype(np.float32)


def _sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def estimate_heads(candidates: Candidates, config: ScenarioConfig) -> HeadEstimates:
    r = config.response
    c = candidates
    q = c.quality_signal
    p_click = _sigmoid(r.click_intercept + r.click_affinity * c.affinity + r.click_quality * q
                       + r.click_popularity * np.log1p(c.popularity))
    p_purchase = _sigmoid(r.purchase_intercept + r.purchase_quality * q + r.purchase_affinity * c.affinity
                          - (np.log(c.price) - r.price_reference))
    p_engage = _sigmoid(r.engage_intercept + r.engage_quality * q + r.engage_affinity * c.affinity)
    # Empirical Bayes: a creator's complaints per purchase shrunk toward the rate over all candidates,
    # so a newcomer starts at the population average (the configured prior only before any purchase).
    purchases = float(c.account_purchases.sum())
    prior = float(c.account_complaints.sum()) / purchases if purchases > 0 else config.policies.complaint_prior
    k = config.policies.prior_strength
    complaint_rate = (c.account_complaints + k * prior) / (c.account_purchases + k)
    detected = (c.dup_cluster >= 0) | (c.operator_cluster >= 0)
    risk = np.maximum(1.0 - c.originality, np.where(detected, config.policies.detected_risk, 0.0))
    # Track record: the creator's GMV per impression, shrunk toward the rate over all candidates.
    population_rate = float(c.account_gmv.sum()) / max(float(c.account_impressions.sum()), 1.0)
    shrink = config.policies.history_prior_impressions
    record = (c.account_gmv + shrink * population_rate) / (c.account_impressions + shrink)
    multiplier = (record / population_rate) ** config.policies.history_weight if population_rate > 0 else 1.0
    return HeadEstimates(
        p_click=p_click, p_purchase=p_purchase, gmv=p_click * p_purchase * c.price * multiplier,
        prosperity=p_click * p_engage, risk=risk, complaint=p_click * p_purchase * complaint_rate,
    )
