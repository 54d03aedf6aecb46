"""Reference ranking policies: random, P0 GMV-only, P1 fixed blend, oracle, and the exploration logger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.config import ScenarioConfig
from experiments.policies.base import F64, Slate, deterministic_slate, normalized, plackett_luce_slate
from experiments.policies.estimates import policy_heads
from experiments.simulator.observation import Observation, Truth


@dataclass(frozen=True)
class BlendWeights:
    gmv: float
    prosperity: float
    risk: float
    complaint: float

    @staticmethod
    def from_config(config: ScenarioConfig) -> BlendWeights:
        p = config.policies
        return BlendWeights(gmv=p.blend_gmv, prosperity=p.blend_prosperity, risk=p.blend_risk,
                            complaint=p.blend_complaint)

    def utility(self, *, gmv: F64, prosperity: F64, risk: F64, complaint: F64) -> F64:
        """Blend of per-request normalized heads: GMV and prosperity rewarded, risk and complaints penalized."""
        return (self.gmv * normalized(gmv) + self.prosperity * normalized(prosperity)
                - self.risk * normalized(risk) - self.complaint * normalized(complaint))


class RandomPolicy:
    """Uniformly random slates: the no-information reference."""

    name = "random"
    uses_ground_truth = False

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        return plackett_luce_slate(np.zeros(obs.candidates.shape), obs.n_slots, rng)


class GmvOnlyPolicy:
    """P0: rank by estimated expected GMV per impression, the platform default this project challenges."""

    name = "p0"
    uses_ground_truth = False

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        return deterministic_slate(policy_heads(obs.candidates, self.config).gmv, obs.n_slots)


class BlendPolicy:
    """P1: fixed-weight multi-objective blend of the four estimated heads."""

    name = "p1"
    uses_ground_truth = False

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        self.weights = BlendWeights.from_config(config)

    def scores(self, obs: Observation) -> F64:
        heads = policy_heads(obs.candidates, self.config)
        return self.weights.utility(gmv=heads.gmv, prosperity=heads.prosperity, risk=heads.risk,
                                    complaint=heads.complaint)

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        return deterministic_slate(self.scores(obs), obs.n_slots)


class ExplorationPolicy(BlendPolicy):
    """Logging policy: Plackett-Luce sampling around the P1 blend, with logged propensities."""

    name = "explore"

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        logits = self.scores(obs) / self.config.policies.explore_temperature
        return plackett_luce_slate(logits, obs.n_slots, rng)


class OraclePolicy:
    """Reference upper bound: the P1 blend computed on ground-truth expectations."""

    name = "oracle"
    uses_ground_truth = True

    def __init__(self, config: ScenarioConfig) -> None:
        self.weights = BlendWeights.from_config(config)

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        if truth is None:
            raise ValueError("the oracle policy needs ground truth; the runner passes it when uses_ground_truth")
        p_buy = truth.p_click * truth.p_purchase
        scores = self.weights.utility(gmv=p_buy * truth.price, prosperity=truth.p_click * truth.p_engage,
                                      risk=truth.violation.astype(float), complaint=p_buy * truth.p_complaint)
        return deterministic_slate(scores, obs.n_slots)
