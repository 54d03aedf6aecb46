"""Training jobs end to end, bundles (round trip, safety, schema check) and the train / evaluate CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mtl.bundle import BundleError, load_bundle
from mtl.schema import load_schema
from mtl.train import train_bundle
from mtl.trainer import TrainConfig

CENSUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "census_income_sample"


@pytest.fixture(scope="module")
def impressions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from experiments.config import load_scenario
    from experiments.simulator.runner import run_experiment

    out = tmp_path_factory.mktemp("sim")
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", "run.rounds=30"])
    run_experiment(config, policies=["explore"], seeds=[0], out=out, quiet=True)
    return out / "impressions.parquet"


@pytest.fixture(scope="module")
def bundle_dir(impressions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    train_bundle(data=impressions, schema=load_schema("ecorank"), model_name="mmoe", out=out,
                 config=TrainConfig(epochs=12, batch_size=256, patience=4), progress=False)
    return out


def test_bundle_holds_everything_and_round_trips_exactly(bundle_dir: Path, impressions: Path) -> None:
    assert {p.name for p in bundle_dir.iterdir()} >= {"model.pt", "bundle.json", "metrics.json", "checkpoints"}
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    assert {"schema", "schema_fingerprint", "feature_stats", "calibration", "metrics", "version"} <= set(manifest)
    assert set(manifest["calibration"]) <= {"prosperity", "risk", "complaint"}  # binary heads only
    bundle = load_bundle(bundle_dir, expected_schema=load_schema("ecorank"))
    again = load_bundle(bundle_dir)
    predictions = bundle.predict(impressions)
    assert predictions.keys() == {"gmv", "prosperity", "risk", "complaint"}
    for name, values in again.predict(impressions).items():
        assert np.array_equal(values, predictions[name]), name
    for name in ("prosperity", "risk", "complaint"):
        assert np.all((predictions[name] >= 0) & (predictions[name] <= 1))
    assert np.all(predictions["gmv"] >= 0)


def test_predict_accepts_tables_frames_and_dicts_without_labels(bundle_dir: Path, impressions: Path) -> None:
    bundle = load_bundle(bundle_dir)
    features = bundle.schema.feature_columns()
    table = pq.read_table(impressions, columns=features).slice(0, 1000)
    frame = table.to_pandas()
    arrays = {c: frame[c].to_numpy() for c in features}
    from_table = bundle.predict(table, threads=1)
    for other in (bundle.predict(frame), bundle.predict(arrays)):
        for name, values in other.items():
            assert np.allclose(values, from_table[name]), name
    assert len(from_table["risk"]) == 1000
    raw = bundle.predict(table, calibrated=False)
    assert not np.array_equal(raw["risk"], from_table["risk"])  # calibration was applied


def test_predict_dense_equals_predict_on_a_table(bundle_dir: Path, impressions: Path) -> None:
    from mtl.data import DataError

    bundle = load_bundle(bundle_dir)
    names = [d.name for d in bundle.schema.dense]
    frame = pd.read_parquet(impressions, columns=names)
    by_table = bundle.predict(frame)
    by_matrix = bundle.predict_dense(frame.to_numpy(np.float64))
    for head, values in by_table.items():
        assert np.array_equal(by_matrix[head], values), head  # the same numbers, bit for bit
    bad = frame.to_numpy(np.float64).copy()
    bad[3, names.index("account_age")] = -2.0  # a log1p feature
    with pytest.raises(DataError, match=r"'account_age': received -2.0 at row 3 \(1 offending rows"):
        bundle.predict_dense(bad)
    with pytest.raises(DataError, match=r"received shape \(5, 3\); expected \(rows, 12\)"):
        bundle.predict_dense(np.zeros((5, 3)))


def test_bundle_refuses_tampering_a_wrong_schema_and_a_non_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"trained on schema 'ecorank'.*expected 'census_income'"):
        load_bundle(bundle_dir, expected_schema=load_schema("census_income"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.pt", "bundle.json"):
        (copy / name).write_bytes((bundle_dir / name).read_bytes())
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["feature_stats"]["count"] += 1  # any edit after export
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not match the recorded version"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="is not a model bundle"):
        load_bundle(tmp_path)


def test_learned_model_beats_a_constant_predictor_on_every_head(bundle_dir: Path) -> None:
    """On the held-out test split: a constant predictor has AUC 0.5 on every binary head and normalized Gini 0
    on GMV (it cannot rank); the model must beat both clearly."""
    metrics = json.loads((bundle_dir / "metrics.json").read_text())["test"]
    for head in ("prosperity", "risk", "complaint"):
        assert metrics[head]["auc"] > 0.6, (head, metrics[head])
    assert metrics["gmv"]["normalized_gini"] > 0.2, metrics["gmv"]


def test_train_and_evaluate_cli(impressions: Path, tmp_path: Path) -> None:
    out = tmp_path / "ple"
    run = [sys.executable, "-m", "experiments.cli"]
    trained = subprocess.run([*run, "train", "--data", str(impressions), "--model", "ple", "--out", str(out),
                              "--epochs", "2", "--quiet", "--model-set", "levels=1"],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "test split, calibrated" in trained.stdout
    assert "risk" in trained.stdout
    evaluated = subprocess.run([*run, "evaluate", "--bundle", str(out), "--data", str(impressions), "--json"],
                               capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert set(report["metrics"]) == {"gmv", "prosperity", "risk", "complaint"}
    assert report["version"] == json.loads((out / "bundle.json").read_text())["version"]


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--data", "nope.parquet", "--out", "x"], "file not found"),
    (["train", "--data", "{census}", "--out", "x"], "missing columns"),
    (["train", "--data", "{census}", "--schema", "census_income", "--out", "x", "--model-set", "n_expert=3"],
     "n_experts"),
    (["train", "--data", "{census}", "--schema", "nope", "--out", "x"], "census_income"),
    (["evaluate", "--bundle", "nowhere", "--data", "{census}"], "is not a model bundle"),
])
def test_train_and_evaluate_bad_input_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    census = str(CENSUS / "census_income_train_sample.csv")
    argv = [a.replace("{census}", census) if "{census}" in a else (str(tmp_path / a) if a == "x" else a)
            for a in args]
    result = subprocess.run([sys.executable, "-m", "experiments.cli", *argv], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_census_schema_trains_through_the_cli(tmp_path: Path) -> None:
    """The same code trains another schema: census income (income and marital-status heads)."""
    frame = pd.concat([pd.read_csv(CENSUS / f"census_income_{s}_sample.csv") for s in ("train", "val", "test")])
    data = tmp_path / "census.parquet"
    frame.to_parquet(data)
    result = subprocess.run([sys.executable, "-m", "experiments.cli", "train", "--data", str(data), "--schema",
                             "census_income", "--model", "mmoe", "--out", str(tmp_path / "b"), "--epochs", "3",
                             "--batch-size", "32", "--quiet", "--calibration", "temperature"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert {"income", "marital"} <= set(json.loads((tmp_path / "b" / "metrics.json").read_text())["test"])


def test_streaming_training_reads_row_groups_and_makes_a_working_bundle(impressions: Path, tmp_path: Path) -> None:
    """--stream: the training file is read by row group each epoch (no full load); val/test are separate files."""
    from mtl.data import read_table, split_by_group

    schema = load_schema("ecorank")
    train, val, test = split_by_group(read_table(impressions, schema=schema), schema, fractions=(0.8, 0.1, 0.1),
                                      seed=0)
    paths = {}
    for name, table in (("train", train), ("val", val), ("test", test)):
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(table, paths[name], row_group_size=2_000)  # many row groups to stream through
    assert pq.ParquetFile(paths["train"]).num_row_groups > 3
    out = tmp_path / "streamed"
    result = subprocess.run([sys.executable, "-m", "experiments.cli", "train", "--stream", "--data",
                             str(paths["train"]), "--val", str(paths["val"]), "--test", str(paths["test"]),
                             "--epochs", "3", "--batch-size", "512", "--out", str(out), "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    bundle = load_bundle(out, expected_schema=schema)
    assert bundle.metrics["rows"] == {"train": train.num_rows, "validation": val.num_rows, "test": test.num_rows}
    assert bundle.train_config["streaming"] is True
    assert bundle.metrics["test"]["risk"]["auc"] > 0.6
    assert len(bundle.predict(paths["test"])["gmv"]) == test.num_rows


def test_stream_flags_are_checked(impressions: Path, tmp_path: Path) -> None:
    run = [sys.executable, "-m", "experiments.cli", "train", "--data", str(impressions), "--out", str(tmp_path)]
    for extra, message in ((["--stream"], "--stream needs --val and --test"),
                           (["--val", str(impressions)], "--val and --test are for --stream")):
        result = subprocess.run([*run, *extra], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert message in result.stderr
