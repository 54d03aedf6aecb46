"""`ecorank score --ray` on the session's local Ray writes the same scores as `ecorank score` in this process:
requests split across input files and Ray blocks are shuffled back together whole; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from experiments.cli import main
from fairness.planner import load_plan, plan_traffic, save_plan, synthetic_inputs
from fairness.policy import load_policy
from mtl.bundle import load_bundle
from serving.batch import REQUEST_COLUMN, synthetic_candidates
from tests.bundles import small_bundle
from tests.scores import assert_same_scores


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle, plan) folders."""
    bundle = small_bundle(tmp_path_factory, rounds=8, epochs=1)
    plan = save_plan(plan_traffic(synthetic_inputs(300, np.random.default_rng(0)), load_policy(), version=3),
                     tmp_path_factory.mktemp("plans"))
    return bundle, plan


@pytest.fixture(scope="module")
def candidates(engine: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 3 Parquet files, 40 requests x 50 candidates in random row order (requests span files)."""
    bundle, plan = engine
    table = synthetic_candidates(load_plan(plan).creators, [d.name for d in load_bundle(bundle).schema.dense],
                                 requests=40, per_request=50, rng=np.random.default_rng(5))
    folder = tmp_path_factory.mktemp("candidates")
    for k, lo in enumerate(range(0, table.num_rows, 700)):
        pq.write_table(table.slice(lo, 700), folder / f"part-{k}.parquet")
    return folder


def _score(engine: tuple[Path, Path], data: Path, out: Path, *extra: str) -> pa.Table:
    bundle, plan = engine
    assert main(["score", "--data", str(data), "--out", str(out), "--bundle", str(bundle), "--plan", str(plan),
                 "--batch-size", "300", "--quiet", *extra]) == 0
    keys = [(REQUEST_COLUMN, "ascending"), ("item_id", "ascending")]
    table = pq.read_table(out)
    return table.sort_by(keys if REQUEST_COLUMN in table.column_names else [("item_id", "ascending")])


def test_ray_scoring_equals_in_process_scoring(ray_session: None, engine: tuple[Path, Path], candidates: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    here = _score(engine, candidates, tmp_path / "here")
    assert "scored 2,000 candidates in 40 requests in this process" in capsys.readouterr().out
    on_ray = _score(engine, candidates, tmp_path / "ray", "--ray", "--workers", "2")
    assert "scored 2,000 candidates on Ray Data" in capsys.readouterr().out

    assert here.num_rows == on_ray.num_rows == 2_000
    assert on_ray.column_names == here.column_names
    assert_same_scores(on_ray, here)  # whole requests, the same engine; other chunks, so float32 noise
    weights = here.group_by(REQUEST_COLUMN).aggregate([("weight", "sum")]).column("weight_sum").to_numpy()
    np.testing.assert_allclose(weights, 1.0, rtol=1e-9)
    assert len(list((tmp_path / "ray").glob("*.parquet"))) >= 1


def test_ray_scoring_without_request_id_predicts_the_same(ray_session: None, engine: tuple[Path, Path],
                                                          candidates: Path, tmp_path: Path) -> None:
    data = tmp_path / "no-requests.parquet"
    pq.write_table(pq.read_table(candidates).drop_columns([REQUEST_COLUMN]), data)
    here = _score(engine, data, tmp_path / "here")
    on_ray = _score(engine, data, tmp_path / "ray", "--ray", "--workers", "2")
    assert "weight" not in here.column_names
    assert_same_scores(on_ray, here)


def test_bad_score_input_exits_2_and_says_what_to_fix(ray_session: None, engine: tuple[Path, Path],
                                                      candidates: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bundle, plan = engine
    base = ["score", "--bundle", str(bundle), "--plan", str(plan), "--quiet"]
    broken = tmp_path / "broken.parquet"
    pq.write_table(pq.read_table(candidates).drop_columns(["original"]), broken)
    for extra in ([], ["--ray"]):
        assert main([*base, "--data", str(broken), "--out", str(tmp_path / f"out{len(extra)}"), *extra]) == 2
        assert "missing columns ['original']" in capsys.readouterr().err
    assert main([*base, "--data", str(candidates), "--out", str(candidates)]) == 2  # would mix with the input
    assert "a folder that is not empty" in capsys.readouterr().err
    assert main([*base, "--data", str(candidates), "--out", str(tmp_path / "x"), "--num-cpus", "2"]) == 2
    assert "are for --ray" in capsys.readouterr().err
    assert main([*base, "--data", str(candidates), "--out", str(tmp_path / "y"), "--bundle", str(tmp_path)]) == 2
    assert "bundle" in capsys.readouterr().err


def test_too_few_cpus_for_the_actors_and_ray_data_is_refused(ray_session: None, engine: tuple[Path, Path],
                                                             candidates: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bundle, plan = engine
    # the session's Ray has 4 CPUs: 2 actors x 2 threads plus Ray Data's tasks would wait forever
    assert main(["score", "--data", str(candidates), "--out", str(tmp_path / "out"), "--bundle", str(bundle),
                 "--plan", str(plan), "--ray", "--workers", "2", "--threads", "2", "--quiet"]) == 2
    assert "--workers 2 x --threads 2: the Ray cluster has 4 CPUs; expected at least 5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
