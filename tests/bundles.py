"""Simulator data for tests that need it: S4 tiny exploration impressions, and a small MMoE trained on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.config import load_scenario
from experiments.simulator.runner import run_experiment
from mtl.schema import load_schema
from mtl.train import train_bundle
from mtl.trainer import TrainConfig


def explore_impressions(tmp_path_factory: pytest.TempPathFactory, *, rounds: int, seed: int = 0) -> Path:
    """impressions.parquet of S4 tiny (every account type) under the exploration policy."""
    logs = tmp_path_factory.mktemp("explore_logs")
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=explore", f"run.rounds={rounds}"])
    run_experiment(config, policies=["explore"], seeds=[seed], out=logs, quiet=True)
    return logs / "impressions.parquet"


def small_bundle(tmp_path_factory: pytest.TempPathFactory, *, rounds: int, epochs: int, seed: int = 0) -> Path:
    """Exploration impressions of S4 tiny -> an MMoE bundle on the `ecorank` schema."""
    impressions = explore_impressions(tmp_path_factory, rounds=rounds, seed=seed)
    out = tmp_path_factory.mktemp("bundle")
    train_bundle(data=impressions, schema=load_schema("ecorank"), model_name="mmoe", out=out,
                 config=TrainConfig(epochs=epochs, batch_size=256, patience=epochs), progress=False)
    return out
