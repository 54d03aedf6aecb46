"""The closed loop end to end on the tiny config: every promised file, same seed same result, no leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from experiments.cli import main
from experiments.config import ConfigError
from experiments.loop.config import load_loop
from experiments.loop.plots import plot_all
from experiments.loop.report import PLOTS
from experiments.loop.run import run_loop
from experiments.policies.estimates import CANDIDATE_SIGNALS
from fairness.planner import load_plan
from fairness.policy import load_policy
from mtl.bundle import load_bundle
from serving.core import RankingCore
from tests.experiments.simulator.test_story import HIDDEN

TINY = load_loop("tiny")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`ecorank loop tiny` through the command line, once for the module."""
    out = tmp_path_factory.mktemp("loop") / "tiny"
    code = main(["loop", "tiny", "--out", str(out), "--quiet"])
    assert code == 0
    return out, (out / "report.md").read_text()


def test_the_report_folder_holds_every_promised_file(tiny_run: tuple[Path, str]) -> None:
    out, report = tiny_run
    for name in ("report.md", "manifest.json", "config.toml", "runs.parquet", "rounds.parquet", "accounts.parquet",
                 "summary.csv", "sweep.parquet", "goals.csv"):
        assert (out / name).is_file(), name
    for file, caption in PLOTS:
        png = out / "plots" / file
        assert png.read_bytes()[:4] == b"\x89PNG", file
        assert f"(plots/{file})" in report, file  # the report embeds every plot
        assert caption in report
    for scenario in TINY.scenarios:
        assert (out / "logs" / f"{scenario}.parquet").is_file()
    for model in TINY.training.models:
        assert (out / "models" / model / "bundle.json").is_file()
    assert (out / "plans" / "v000001" / "manifest.json").is_file()
    assert report.startswith("# ecorank closed loop: tiny")
    assert "## Headline: ecorank against GMV-only ranking (P0)" in report
    assert "## Goals:" in report


def test_the_manifest_records_seeds_versions_and_git(tiny_run: tuple[Path, str]) -> None:
    manifest = json.loads((tiny_run[0] / "manifest.json").read_text())
    assert manifest["evaluation_seeds"] == TINY.seeds
    assert manifest["logging_seeds"] == TINY.logging.seeds
    assert manifest["config"]["name"] == "tiny"
    assert len(manifest["git_sha"]) == 40 or manifest["git_sha"] == "unknown"
    for package in ("numpy", "torch", "cvxpy", "pyarrow"):
        assert manifest["packages"][package] != "not installed", package
    assert manifest["log_rows"] == sum(pq.ParquetFile(p).metadata.num_rows for p in (tiny_run[0] / "logs").glob("*"))
    assert manifest["command"][:3] == ["ecorank", "loop", "tiny"] or manifest["command"][0] == "ecorank"


def test_every_policy_meets_every_scenario_and_seed_with_cis_against_p0(tiny_run: tuple[Path, str]) -> None:
    out = tiny_run[0]
    runs = pd.read_parquet(out / "runs.parquet")
    expected = {(s, p, seed) for s in TINY.scenarios for p in TINY.policies for seed in TINY.seeds}
    assert set(zip(runs["scenario"], runs["policy"], runs["seed"], strict=True)) == expected
    p0 = runs[runs["policy"] == "p0"]
    assert np.allclose(p0["gmv_rel"], 1.0)
    summary = pd.read_csv(out / "summary.csv")
    ecorank = summary[(summary["policy"] == "ecorank") & (summary["metric"] == "gini_account")]
    assert len(ecorank) == len(TINY.scenarios)
    assert (ecorank["ci_low"] <= ecorank["delta"]).all()
    assert (ecorank["delta"] <= ecorank["ci_high"]).all()
    assert summary.loc[summary["policy"] == "p0", "ci_low"].isna().all()
    sweep = pd.read_parquet(out / "sweep.parquet")
    assert set(sweep["family"]) == {k.family for k in TINY.sweep.knobs}
    assert len(sweep) == sum(len(k.values) for k in TINY.sweep.knobs) * len(TINY.sweep_seeds)
    goals = pd.read_csv(out / "goals.csv")
    assert {"S1", "S2", "S3", "S4"} <= set(goals["scenario"])


def test_the_exported_model_and_plan_are_servable(tiny_run: tuple[Path, str]) -> None:
    out = tiny_run[0]
    core = RankingCore(load_bundle(out / "models" / TINY.training.serve), load_policy(),
                       plan=load_plan(out / "plans" / "v000001"))
    assert core.state.plan_version == 1
    plan = core.state.plan
    assert plan is not None
    assert len(plan.creators) > 0


def test_models_read_only_observable_signals_and_logs_hold_no_hidden_state(tiny_run: tuple[Path, str]) -> None:
    out = tiny_run[0]
    for model in TINY.training.models:
        bundle = load_bundle(out / "models" / model)
        assert {d.name for d in bundle.schema.dense} <= CANDIDATE_SIGNALS
        assert not bundle.schema.categorical
    columns = set(pq.read_schema(out / "logs" / "S4.parquet").names)
    assert not columns & HIDDEN


def test_the_same_seeds_give_the_same_results_in_any_number_of_workers(tmp_path: Path) -> None:
    overrides = {"scenarios": ["S3"], "policies": ["p0", "ecorank", "floors"], "logging.rounds": 8,
                 "training.models": ["mmoe"], "training.epochs": 1, "sweep.scenarios": [], "sweep.knobs": []}
    first = run_loop(load_loop("tiny", overrides={**overrides, "jobs": 1}), tmp_path / "a", progress=False)
    second = run_loop(load_loop("tiny", overrides={**overrides, "jobs": 2}), tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(first.evaluation.runs.drop(columns="seconds"),
                                  second.evaluation.runs.drop(columns="seconds"))
    pd.testing.assert_frame_equal(first.evaluation.rounds, second.evaluation.rounds)
    assert (tmp_path / "a" / "models" / "mmoe" / "model.pt").read_bytes() == \
        (tmp_path / "b" / "models" / "mmoe" / "model.pt").read_bytes()
    assert first.headline == second.headline


def test_bad_configs_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="expected 'p0' first"):
        load_loop("tiny", overrides={"policies": ["p1", "p0"]})
    with pytest.raises(ConfigError, match="expected disjoint seeds"):
        load_loop("tiny", overrides={"logging.seeds": [0]})
    with pytest.raises(ConfigError, match=r"training\.serve"):
        load_loop("tiny", overrides={"training.serve": "ple", "training.models": ["mmoe"]})
    with pytest.raises(ConfigError, match="unknown key"):
        load_loop("tiny", overrides={"seedz": [1, 2]})
    with pytest.raises(ConfigError, match="unknown loop config 'nope'; expected one of"):
        load_loop("nope")
    out = tmp_path / "bad"
    assert main(["loop", "tiny", "--out", str(out), "--set", "sweep.knobs=[{family='ecorank', key='planner.kappa', "
                 "values=[0.5]}]"]) == 2
    assert "sweep knob ecorank planner.kappa=0.5" in capsys.readouterr().err
    assert not out.exists()  # nothing was simulated or written


def test_plots_are_drawn_from_the_run_files_alone(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    out = tiny_run[0]
    paths = plot_all(rounds=pd.read_parquet(out / "rounds.parquet"), accounts=pd.read_parquet(out / "accounts.parquet"),
                     runs=pd.read_parquet(out / "runs.parquet"), sweep=pd.read_parquet(out / "sweep.parquet"),
                     out=tmp_path, burn_in=4)
    assert sorted(paths) == sorted(file for file, _ in PLOTS)


def test_ecorank_report_rewrites_a_finished_loop_from_its_files(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    out, report = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("logs", "models"))
    shutil.rmtree(copy / "plots")
    (copy / "report.md").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.md").read_text() == report  # the same numbers give the same report
    assert sorted(p.name for p in (copy / "plots").iterdir()) == sorted(file for file, _ in PLOTS)
    assert main(["report", str(tmp_path / "nothing")]) == 2
