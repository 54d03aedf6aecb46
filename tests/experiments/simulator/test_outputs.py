"""Every file of the run folder exists and has the documented schema."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from experiments.simulator import impressions as imp
from experiments.simulator.measure import SUMMARY_METRICS
from experiments.simulator.runner import Experiment
from experiments.summary import SUMMARY_COLUMNS

ROUND_COLUMNS = {"policy", "seed", "round", "gmv", "complaints_per_purchase", "complaints_per_1k", "gini_account",
                 "gini_operator", "top1_share", "entropy", "original_share", "piracy_leakage", "sybil_share",
                 "risk_share", "merit_disparity", "user_utility", "active_share", "exits_unprofitable",
                 "exits_unviable", "detector_recall"}


def test_run_folder_holds_every_output(tiny_experiment: Experiment) -> None:
    names = {p.name for p in tiny_experiment.out.iterdir()}
    assert names == {"manifest.json", "rounds.parquet", "accounts.parquet", "runs.parquet", "summary.csv",
                     "rounds.png", "impressions.parquet"}
    png = (tiny_experiment.out / "rounds.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 20_000  # a real, non-empty figure


def test_manifest_records_config_seeds_versions_and_sha(tiny_experiment: Experiment) -> None:
    manifest = json.loads((tiny_experiment.out / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1]
    assert manifest["policies"] == ["p0", "p1", "random", "oracle", "explore"]
    assert manifest["scenario"]["id"] == "S4"
    assert manifest["config"]["users"]["n_users"] == 200
    assert {"numpy", "pandas", "pyarrow", "pydantic"} <= set(manifest["packages"])
    assert manifest["git_sha"]
    impression_rows = pq.ParquetFile(tiny_experiment.out / "impressions.parquet").metadata.num_rows
    assert manifest["outputs"]["impression_rows"] == impression_rows


def test_rounds_and_runs_tables(tiny_experiment: Experiment) -> None:
    rounds = pd.read_parquet(tiny_experiment.out / "rounds.parquet")
    assert set(rounds.columns) >= ROUND_COLUMNS
    assert len(rounds) == 5 * 2 * 20
    runs = pd.read_parquet(tiny_experiment.out / "runs.parquet")
    assert {"gmv_rel", *SUMMARY_METRICS} <= set(runs.columns)
    assert np.allclose(runs.loc[runs.policy == "p0", "gmv_rel"], 1.0)


def test_accounts_snapshots(tiny_experiment: Experiment) -> None:
    accounts = pd.read_parquet(tiny_experiment.out / "accounts.parquet")
    assert sorted(accounts["round"].unique()) == [9, 19]
    assert set(accounts["type"]) <= {"original", "low_effort", "reuploader", "matrix"}
    assert set(accounts["exit_cause"]) <= {"alive", "unprofitable", "unviable"}
    last = accounts[accounts["round"] == 19]
    assert ((last["died"] < 0) == (last["exit_cause"] == "alive")).all()


def test_summary_csv_has_every_metric_with_cis(tiny_experiment: Experiment) -> None:
    summary = pd.read_csv(tiny_experiment.out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert set(summary["metric"]) == {"gmv_rel", *SUMMARY_METRICS}
    reference = summary[summary.policy == "p0"]
    assert (reference["delta"] == 0).all()
    assert reference["ci_low"].isna().all()
    gmv = summary[(summary.policy == "random") & (summary.metric == "gmv")].iloc[0]
    assert gmv.ci_low <= gmv.delta <= gmv.ci_high


def test_impressions_schema_labels_and_propensities(tiny_experiment: Experiment) -> None:
    path = tiny_experiment.out / "impressions.parquet"
    assert pq.read_schema(path).remove_metadata().equals(imp.SCHEMA.remove_metadata())
    table = pd.read_parquet(path)
    assert set(table["policy"]) == {"p0", "p1", "random", "oracle", "explore"}
    assert table.groupby(["policy", "seed", "request_id"]).size().eq(10).all()
    assert (table["gmv"] >= 0).all()
    assert (table.loc[table.purchase == 0, "gmv"] == 0).all()
    for label in ("click", "purchase", "prosperity", "risk", "complaint"):
        assert set(table[label].unique()) <= {0, 1}
    assert not (table.prosperity.astype(bool) & ~table.click.astype(bool)).any()
    assert ((table.propensity > 0) & (table.propensity <= 1)).all()
    deterministic = table[table.policy.isin(["p0", "p1", "oracle"])]
    assert (deterministic.propensity == 1.0).all()
    random = table[table.policy == "random"]
    assert np.allclose(random.propensity, 1.0 / (50 - random.position + 1))
    explore = table[table.policy == "explore"]
    assert explore.propensity.lt(1.0).any()


def test_risk_labels_track_violations_with_noise(tiny_experiment: Experiment) -> None:
    table = pd.read_parquet(tiny_experiment.out / "impressions.parquet")
    original = table["originality"] > 0.8
    assert table.loc[~original, "risk"].mean() > table.loc[original, "risk"].mean() + 0.3
