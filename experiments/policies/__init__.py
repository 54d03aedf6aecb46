"""Ranking policies for the simulator, and the registry that builds them by name."""

from __future__ import annotations

from collections.abc import Callable

from experiments.config import ConfigError, ScenarioConfig
from experiments.policies.base import Policy, Slate
from experiments.policies.baselines import (
    BlendPolicy,
    ExplorationPolicy,
    GmvOnlyPolicy,
    OraclePolicy,
    RandomPolicy,
)
from experiments.policies.engine import EnginePolicy
from experiments.policies.fairco import FairCoPolicy
from experiments.policies.floors import AccountFloorsPolicy
from experiments.policies.pmmf import PMMFPolicy

POLICIES: dict[str, tuple[str, Callable[[ScenarioConfig], Policy]]] = {
    "random": ("uniformly random slates (reference)", lambda config: RandomPolicy()),
    "p0": ("GMV-only: rank by estimated expected GMV", GmvOnlyPolicy),
    "p1": ("fixed-weight blend of GMV, prosperity, risk and complaint estimates", BlendPolicy),
    "explore": ("Plackett-Luce logging policy around P1, logs propensities", ExplorationPolicy),
    "oracle": ("P1 blend on ground truth (reference upper bound)", OraclePolicy),
    "fairco": ("FairCo (Morik et al. 2020): P1 + controller on per-account exposure/merit debt", FairCoPolicy),
    "pmmf": ("P-MMF (Xu et al. 2023): P1 minus per-account dual prices toward max-min exposure", PMMFPolicy),
    "floors": ("FairRec-style per-account exposure floors, then P1 (not cluster aware)", AccountFloorsPolicy),
    "ecorank": ("the ecorank engine: blend + traffic plan + price controller + per-request allocator (cluster "
                "aware)", EnginePolicy),
}


def make_policy(name: str, config: ScenarioConfig) -> Policy:
    key = name.strip().lower()
    if key not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; expected one of {sorted(POLICIES)}. "
                          "`ecorank policies` describes them.")
    return POLICIES[key][1](config)


__all__ = ["POLICIES", "Policy", "Slate", "make_policy"]
