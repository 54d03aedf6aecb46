"""The model sweep: every point of its space builds, and a smoke sweep on the session's local Ray saves a
servable best bundle and resumes from its storage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.tune.model_sweep import SPACE, model_of
from fairness.policy import load_policy
from mtl.bundle import load_bundle
from mtl.models import build_model
from mtl.schema import load_schema
from serving.core import RankingCore
from tests.bundles import explore_impressions


@pytest.mark.parametrize("model", SPACE["model"])
@pytest.mark.parametrize("width", SPACE["width"])
def test_every_point_of_the_space_builds_a_model(model: str, width: int) -> None:
    schema = load_schema("ecorank")
    for n_experts in SPACE["n_experts"]:
        for levels in SPACE["levels"]:
            name, overrides = model_of({"model": model, "width": width, "n_experts": n_experts, "levels": levels})
            built = build_model(name, inputs=schema.input_spec(), heads=schema.heads, overrides=overrides)
            assert sum(p.numel() for p in built.parameters()) > 0


@pytest.fixture(scope="module")
def impressions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return explore_impressions(tmp_path_factory, rounds=12, seed=7)


def test_smoke_sweep_saves_a_servable_best_bundle_and_resumes(ray_session: None, impressions: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    assert main(["tune", "model", "--data", str(impressions), "--out", str(out), "--smoke-test"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 2
    assert set(trials["model"]) <= set(SPACE["model"])
    assert trials["finished"].any()
    assert (trials["best_val_loss"] > 0).all()
    best = trials[trials["finished"]].sort_values("best_val_loss").iloc[0]
    bundle = load_bundle(out / "best_bundle")
    assert bundle.model_name == model_of(best.to_dict())[0]
    core = RankingCore(bundle, load_policy())  # the server accepts it: four heads, dense features
    assert core.state.bundle.version == bundle.version
    # the same command again finds the finished sweep in its storage and reports the same trials
    assert main(["tune", "model", "--data", str(impressions), "--out", str(out), "--smoke-test"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "trials.csv"), trials)


def test_bad_sweep_arguments_say_what_to_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "model", "--data", str(tmp_path / "missing.parquet"), "--smoke-test"]) == 2
    assert "does not exist; expected impressions" in capsys.readouterr().err
