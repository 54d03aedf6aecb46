"""The trainer on real simulator impressions: learning, exact resume after a kill, early stopping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl.data import EncodedBatch, FeatureStats, encode, read_table, split_by_group
from mtl.models import build_model
from mtl.models.blocks import MultiTaskModel
from mtl.schema import load_schema
from mtl.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[EncodedBatch, EncodedBatch]:
    from experiments.config import load_scenario
    from experiments.simulator.runner import run_experiment

    out = tmp_path_factory.mktemp("impressions")
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", "run.rounds=12"])
    run_experiment(config, policies=["explore"], seeds=[0], out=out, quiet=True)
    schema = load_schema("ecorank")
    table = read_table(out / "impressions.parquet", schema=schema)
    train, val, _ = split_by_group(table, schema, fractions=(0.7, 0.3, 0.0), seed=0)
    stats = FeatureStats.fit(train, schema)
    return encode(train, schema, stats), encode(val, schema, stats)


def _model(seed: int = 0) -> MultiTaskModel:
    schema = load_schema("ecorank")
    torch.manual_seed(seed)
    return build_model("mmoe", inputs=schema.input_spec(), heads=schema.heads)


class Killed(Exception):
    pass


def test_training_lowers_validation_loss_and_reports_named_head_metrics(data) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    model = _model()
    trainer = Trainer(model, TrainConfig(epochs=6, batch_size=256, patience=10), progress=False)
    before = trainer.evaluate(val)["loss"]
    result = trainer.fit(train, val)
    after = trainer.evaluate(val)["loss"]
    assert after < 0.8 * before, (before, after)
    last = result.history[-1]
    for head in ("prosperity", "risk", "complaint"):
        assert 0.5 < last[f"{head}.auc"] <= 1.0
    assert "gmv.normalized_gini" in last
    assert {f"weight.{h}" for h in ("gmv", "prosperity", "risk", "complaint")} <= set(last)


def test_resume_after_a_kill_gives_the_weights_of_an_uninterrupted_run(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    config = TrainConfig(epochs=4, batch_size=256, patience=10, task_weighting="uncertainty")
    straight = _model()
    Trainer(straight, config, checkpoint_dir=tmp_path / "a", progress=False).fit(train, val)

    def kill(epoch: int, row: dict[str, float]) -> None:
        if epoch == 1:
            raise Killed  # after epoch 1's checkpoint was written

    with pytest.raises(Killed):
        Trainer(_model(), config, checkpoint_dir=tmp_path / "b", progress=False).fit(train, val, on_epoch_end=kill)
    torch.manual_seed(123)  # a different RNG state in the "new process" must not matter
    resumed = _model(seed=99)  # and neither must its fresh initial weights
    result = Trainer(resumed, config, checkpoint_dir=tmp_path / "b", progress=False).fit(train, val)
    assert len(result.history) == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_same_seed_same_history(data) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    config = TrainConfig(epochs=2, batch_size=256)
    first = Trainer(_model(), config, progress=False).fit(train, val).history
    second = Trainer(_model(), config, progress=False).fit(train, val).history
    assert first == second


def test_early_stopping_keeps_the_best_epoch(data) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    model = _model()
    config = TrainConfig(epochs=30, batch_size=128, lr=0.05, warmup_steps=0, schedule="constant", patience=2,
                         monitor="prosperity.auc")
    trainer = Trainer(model, config, progress=False)
    result = trainer.fit(train, val)
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 1 + config.patience
    best = result.history[result.best_epoch]["prosperity.auc"]
    assert best == max(row["prosperity.auc"] for row in result.history)
    assert trainer.evaluate(val)["prosperity.auc"] == pytest.approx(best)  # the best weights are restored


def test_resume_refuses_a_different_config_and_unknown_monitor(data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    Trainer(_model(), TrainConfig(epochs=1, batch_size=256), checkpoint_dir=tmp_path, progress=False).fit(train, val)
    with pytest.raises(ValueError, match="different TrainConfig"):
        Trainer(_model(), TrainConfig(epochs=2, batch_size=128), checkpoint_dir=tmp_path,
                progress=False).fit(train, val)
    with pytest.raises(ValueError, match=r"monitor 'gmv.auc' is not a validation quantity.*'gmv.rmse_log'"):
        Trainer(_model(), TrainConfig(epochs=1, monitor="gmv.auc"), progress=False).fit(train, val)
    with pytest.raises(ValueError, match="expected an integer >= 1"):
        TrainConfig(epochs=0)


def test_pcgrad_training_learns_and_is_reproducible(data) -> None:  # type: ignore[no-untyped-def]
    train, val = data
    config = TrainConfig(epochs=3, batch_size=256, patience=10, task_weighting="pcgrad")
    model = _model()
    trainer = Trainer(model, config, progress=False)
    before = trainer.evaluate(val)["loss"]
    history = trainer.fit(train, val).history
    assert trainer.evaluate(val)["loss"] < 0.8 * before
    assert Trainer(_model(), config, progress=False).fit(train, val).history == history
