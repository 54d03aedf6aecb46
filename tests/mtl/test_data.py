from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from experiments.config import load_scenario
from experiments.simulator.runner import run_experiment
from mtl.data import (
    DataError,
    EncodedBatch,
    FeatureStats,
    categorical_ids,
    encode,
    fnv1a_64,
    hash_ids,
    iter_batches,
    read_table,
    split_by_group,
    validate,
)
from mtl.schema import Schema, load_schema

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
CENSUS = DATA / "census_income_sample"
ALI = DATA / "ali_ccp_sample"


@pytest.fixture(scope="module")
def impressions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real simulator impressions.parquet: S4 tiny, 6 rounds (one row group each), the explore policy."""
    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", "run.rounds=6"])
    out = tmp_path_factory.mktemp("impressions")
    run_experiment(config, policies=["explore"], seeds=[0], out=out, quiet=True)
    return out / "impressions.parquet"


def _sorted_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.lexsort(matrix.T[::-1])]


# --------------------------------------------------------------------------------------------------
# Public benchmark samples


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_census_sample_reads_validates_and_encodes(split: str) -> None:
    schema = load_schema("census_income")
    path = CENSUS / f"census_income_{split}_sample.csv"
    table = read_table(path, schema=schema)
    validate(table, schema)
    stats = FeatureStats.fit(table, schema)
    batch = encode(table, schema, stats)
    raw = pd.read_csv(path)
    n = len(raw)
    assert batch.dense.shape == (n, 7)
    assert batch.dense.dtype == torch.float32
    assert batch.categorical.shape == (n, 32)
    assert batch.categorical.dtype == torch.int64
    # The wiring: each head's labels are exactly its CSV column.
    np.testing.assert_array_equal(batch.labels["income"].numpy(), raw["income"].to_numpy(np.float32))
    np.testing.assert_array_equal(batch.labels["marital"].numpy(), raw["marital status"].to_numpy(np.float32))
    assert not np.array_equal(raw["income"].to_numpy(), raw["marital status"].to_numpy())
    assert all(m.all() for m in batch.masks.values())
    # Label-encoded value v -> id v + 1, always inside the declared buckets.
    education = [c.name for c in schema.categorical].index("education")
    np.testing.assert_array_equal(batch.categorical[:, education].numpy(), raw["education"].to_numpy() + 1)
    buckets = torch.tensor([c.buckets for c in schema.input_spec().categorical])
    assert bool((batch.categorical >= 1).all())
    assert bool((batch.categorical < buckets).all())
    # Standardized with the table's own statistics.
    age = (raw["age"].to_numpy() - raw["age"].mean()) / raw["age"].std(ddof=0)
    np.testing.assert_allclose(batch.dense[:, 0].numpy(), age, atol=1e-5)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_ali_ccp_sample_reads_validates_and_encodes(split: str) -> None:
    schema = load_schema("ali_ccp")
    path = ALI / f"ali_ccp_{split}_sample.csv"
    table = read_table(path, schema=schema)
    validate(table, schema)
    batch = encode(table, schema, FeatureStats.fit(table, schema))
    raw = pd.read_csv(path)
    n = len(raw)
    assert (batch.dense.shape, batch.categorical.shape) == ((n, 8), (n, 23))
    np.testing.assert_array_equal(batch.labels["click"].numpy(), raw["click"].to_numpy(np.float32))
    np.testing.assert_array_equal(batch.labels["purchase"].numpy(), raw["purchase"].to_numpy(np.float32))
    item = [c.name for c in schema.categorical].index("205")
    np.testing.assert_array_equal(batch.categorical[:, item].numpy(), raw["205"].to_numpy() + 1)
    buckets = torch.tensor([c.buckets for c in schema.input_spec().categorical])
    assert bool((batch.categorical >= 1).all())
    assert bool((batch.categorical < buckets).all())
    # Constant columns (D109_14 in the sample) hit the std floor and encode to ~0, not inf / NaN.
    assert torch.isfinite(batch.dense).all()
    assert float(batch.dense[:, 0].abs().max()) < 1e-3


def test_ali_ccp_with_a_click_mask_masks_purchase_by_click() -> None:
    data = load_schema("ali_ccp").to_dict()
    data["heads"][1]["mask"] = "click"
    schema = Schema.from_dict(data)
    table = read_table(ALI / "ali_ccp_train_sample.csv", schema=schema)
    batch = encode(table, schema, FeatureStats.fit(table, schema))
    raw = pd.read_csv(ALI / "ali_ccp_train_sample.csv")
    np.testing.assert_array_equal(batch.masks["purchase"].numpy(), raw["click"].to_numpy() > 0)
    assert batch.masks["click"].all()


def test_a_miswired_label_fails_the_check() -> None:
    data = load_schema("census_income").to_dict()
    data["heads"][0]["label"], data["heads"][1]["label"] = "marital status", "income"  # swapped
    schema = Schema.from_dict(data)
    table = read_table(CENSUS / "census_income_train_sample.csv", schema=schema)
    batch = encode(table, schema, FeatureStats.fit(table, schema))
    raw = pd.read_csv(CENSUS / "census_income_train_sample.csv")
    assert not np.array_equal(batch.labels["income"].numpy(), raw["income"].to_numpy(np.float32))


def test_read_table_accepts_every_source_kind(tmp_path: Path) -> None:
    schema = load_schema("census_income")
    csv = CENSUS / "census_income_val_sample.csv"
    reference = read_table(csv, schema=schema)
    frame = pd.read_csv(csv)
    parquet = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(frame.iloc[:10], preserve_index=False), folder / "a.parquet")
    pq.write_table(pa.Table.from_pandas(frame.iloc[10:], preserve_index=False), folder / "b.parquet")
    sources: list[Any] = [parquet, str(folder), frame, {c: frame[c].to_numpy() for c in frame.columns},
                          pa.Table.from_pandas(frame, preserve_index=False)]
    stats = FeatureStats.fit(reference, schema)
    expected = encode(reference, schema, stats)
    for source in sources:
        table = read_table(source, schema=schema)
        assert table.column_names == schema.columns()
        batch = encode(table, schema, stats)
        torch.testing.assert_close(batch.dense, expected.dense)
        torch.testing.assert_close(batch.categorical, expected.categorical)
    assert read_table(csv).num_columns == 41  # without a schema: everything
    other = tmp_path / "rows.json"
    other.write_text("{}")
    with pytest.raises(DataError, match="expected one of"):
        read_table(other)
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "missing.parquet")


# --------------------------------------------------------------------------------------------------
# The simulator's impressions


def test_ecorank_impressions_read_validate_encode(impressions: Path) -> None:
    schema = load_schema("ecorank")
    table = read_table(impressions, schema=schema)
    validate(table, schema)
    stats = FeatureStats.fit(table, schema)
    batch = encode(table, schema, stats)
    raw = pq.read_table(impressions)
    n = raw.num_rows
    assert n > 0
    assert len(batch) == n
    assert batch.dense.shape == (n, 12)
    assert batch.categorical.shape == (n, 0)
    assert set(batch.labels) == {"gmv", "prosperity", "risk", "complaint"}
    for head in schema.heads:
        np.testing.assert_array_equal(batch.labels[head.name].numpy(),
                                      raw.column(head.label).to_numpy().astype(np.float32))
    np.testing.assert_allclose(batch.dense.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(batch.dense.std(0, unbiased=False).numpy(), 1.0, atol=1e-3)
    price = [f.name for f in schema.dense].index("price")
    log_price = np.log1p(raw.column("price").to_numpy().astype(np.float64))
    np.testing.assert_allclose(batch.dense[:, price].numpy(), (log_price - log_price.mean()) / log_price.std(),
                               atol=1e-4)


def test_split_by_group_keeps_requests_whole(impressions: Path) -> None:
    schema = load_schema("ecorank")
    table = read_table(impressions, schema=schema)
    train, val, test = split_by_group(table, schema, seed=3)
    assert train.num_rows + val.num_rows + test.num_rows == table.num_rows
    ids = [set(part.column("request_id").to_pylist()) for part in (train, val, test)]
    assert not ids[0] & ids[1]
    assert not ids[0] & ids[2]
    assert not ids[1] & ids[2]
    assert ids[0] | ids[1] | ids[2] == set(table.column("request_id").to_pylist())
    n_groups = len(ids[0] | ids[1] | ids[2])
    assert [len(i) for i in ids] == [round(0.8 * n_groups), round(0.9 * n_groups) - round(0.8 * n_groups),
                                     n_groups - round(0.9 * n_groups)]
    again = split_by_group(table, schema, seed=3)
    assert all(a.equals(b) for a, b in zip((train, val, test), again, strict=True))
    # Row order does not matter, only the seed and the set of groups.
    reversed_table = table.take(pa.array(np.arange(table.num_rows)[::-1]))
    assert set(split_by_group(reversed_table, schema, seed=3)[1].column("request_id").to_pylist()) == ids[1]
    assert set(split_by_group(table, schema, seed=4)[1].column("request_id").to_pylist()) != ids[1]


def test_split_without_group_splits_rows() -> None:
    schema = load_schema("census_income")
    table = read_table(CENSUS / "census_income_train_sample.csv", schema=schema)
    parts = split_by_group(table, schema, fractions=(0.5, 0.25, 0.25), seed=0)
    assert [p.num_rows for p in parts] == [40, 20, 20]
    with pytest.raises(ValueError, match="expected three non-negative numbers summing to 1"):
        split_by_group(table, schema, fractions=(0.8, 0.3, 0.1), seed=0)


def test_iter_batches_yields_every_row_once(impressions: Path) -> None:
    schema = load_schema("ecorank")
    table = read_table(impressions, schema=schema)
    stats = FeatureStats.fit(table, schema)
    full = encode(table, schema, stats)
    assert pq.ParquetFile(impressions).num_row_groups > 1
    expected = _sorted_rows(np.column_stack([full.dense.numpy(), full.labels["gmv"].numpy()]))

    ordered = list(iter_batches(impressions, schema, stats, batch_size=256, shuffle=False))
    assert all(isinstance(b, EncodedBatch) for b in ordered)
    assert [len(b) for b in ordered[:-1]] == [256] * (len(ordered) - 1)
    torch.testing.assert_close(torch.cat([b.dense for b in ordered]), full.dense)

    def shuffled(seed: int) -> list[EncodedBatch]:
        return list(iter_batches(impressions, schema, stats, batch_size=256, shuffle=True, seed=seed,
                                 buffer_rows=1000))

    first = shuffled(1)
    assert sum(len(b) for b in first) == table.num_rows
    assert [len(b) for b in first[:-1]] == [256] * (len(first) - 1)
    got = np.column_stack([torch.cat([b.dense for b in first]).numpy(), torch.cat([b.labels["gmv"]
                                                                                   for b in first]).numpy()])
    np.testing.assert_array_equal(_sorted_rows(got), expected)  # the same rows, each exactly once
    assert not torch.equal(torch.cat([b.dense for b in first]), full.dense)
    torch.testing.assert_close(torch.cat([b.dense for b in shuffled(1)]), torch.cat([b.dense for b in first]))
    assert not torch.equal(torch.cat([b.dense for b in shuffled(2)]), torch.cat([b.dense for b in first]))


def test_feature_stats_round_trip_and_streaming_fit(impressions: Path) -> None:
    schema = load_schema("ecorank")
    table = read_table(impressions, schema=schema)
    stats = FeatureStats.fit(table, schema)
    restored = FeatureStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert restored == stats
    streamed = FeatureStats.fit_batches(pq.ParquetFile(impressions).iter_batches(batch_size=500), schema)
    np.testing.assert_allclose(streamed.mean, stats.mean, rtol=1e-9)
    np.testing.assert_allclose(streamed.std, stats.std, rtol=1e-9)
    census = load_schema("census_income")
    with pytest.raises(DataError, match="refit"):
        encode(read_table(CENSUS / "census_income_val_sample.csv", schema=census), census, stats)
    with pytest.raises(DataError, match="expected"):
        FeatureStats.from_dict({"features": [{"name": "x"}]})


# --------------------------------------------------------------------------------------------------
# Data errors


def _ecorank_frame(impressions: Path) -> pd.DataFrame:
    frame: pd.DataFrame = pq.read_table(impressions).to_pandas()
    return frame


def _errors(frame: pd.DataFrame | dict[str, Any]) -> str:
    with pytest.raises(DataError) as info:
        validate(read_table(frame), load_schema("ecorank"))
    return str(info.value)


def test_missing_column_is_named_with_a_suggestion(impressions: Path) -> None:
    frame = _ecorank_frame(impressions).rename(columns={"price": "prices"})
    message = _errors(frame)
    assert "'price'" in message
    assert "did you mean 'prices'" in message
    assert "expected" in message
    assert "received columns" in message
    with pytest.raises(DataError, match="missing column 'price'"):
        read_table(frame, schema=load_schema("ecorank"))


def test_string_in_a_numeric_column(impressions: Path) -> None:
    frame = _ecorank_frame(impressions)
    frame["affinity"] = frame["affinity"].astype(str)
    message = _errors(frame)
    assert "dense feature 'affinity'" in message
    assert "received dtype" in message
    assert "string" in message
    assert "expected a numeric column" in message


def test_nan_and_inf_in_a_feature(impressions: Path) -> None:
    frame = _ecorank_frame(impressions)
    columns = {c: frame[c].to_numpy().copy() for c in frame.columns}
    columns["quality_signal"][[7, 9]] = [np.nan, np.inf]
    message = _errors(columns)
    assert "dense feature 'quality_signal'" in message
    assert "received nan at row 7" in message
    assert "2 offending rows" in message
    assert "expected finite values" in message


def test_negative_gmv(impressions: Path) -> None:
    frame = _ecorank_frame(impressions)
    frame.loc[11, "gmv"] = -2.5
    message = _errors(frame)
    assert "label 'gmv' of head 'gmv' (ziln)" in message
    assert "received -2.5 at row 11" in message
    assert "expected values >= 0" in message


def test_binary_label_outside_zero_one(impressions: Path) -> None:
    frame = _ecorank_frame(impressions)
    frame.loc[4, "risk"] = 2
    message = _errors(frame)
    assert "label 'risk' of head 'risk' (binary)" in message
    assert "received 2 at row 4" in message
    assert "expected 0 or 1" in message


def test_all_problems_are_reported_together(impressions: Path) -> None:
    frame = _ecorank_frame(impressions)
    frame.loc[4, "risk"] = 2
    frame.loc[5, "complaint"] = -1
    frame.loc[6, "price"] = -3.0  # log1p needs > -1
    with pytest.raises(DataError) as info:
        validate(read_table(frame), load_schema("ecorank"))
    assert len(info.value.problems) == 3
    assert "price" in str(info.value)
    assert 'transform = "log1p"' in str(info.value)


def test_null_group_and_float_integer_buckets_are_rejected() -> None:
    schema = Schema.from_dict({
        "name": "toy", "group": "g",
        "categorical": [{"name": "c", "embedding_dim": 2, "integer_buckets": 4}],
        "heads": [{"name": "y", "kind": "regression", "label": "y", "allow_negative": True}],
    })
    table = read_table({"c": np.array([0.0, 1.0]), "y": np.array([-1.0, 2.0]), "g": pa.array([1, None])})
    with pytest.raises(DataError) as info:
        validate(table, schema)
    message = str(info.value)
    assert "categorical feature 'c': received dtype double" in message
    assert "expected an integer column" in message
    assert "group column 'g': received null at row 1" in message
    assert "label 'y'" not in message  # allow_negative


# --------------------------------------------------------------------------------------------------
# Categorical ids


def test_fnv1a_matches_the_published_test_vectors() -> None:
    assert fnv1a_64(["", "a", "foobar"]).tolist() == [0xCBF29CE484222325, 0xAF63DC4C8601EC8C, 0x85944171F73967E8]


def test_hash_ids_are_fixed() -> None:
    # Fixed numbers: the same in every process and on every platform (Python's hash() is salted per process).
    assert hash_ids(["a", "foobar", "", "ecorank", "42", "héllo"], 1000).tolist() == [233, 25, 771, 828, 893, 212]
    assert hash_ids(["user_1", "user_2"], 100003).tolist() == [42193, 3774]
    assert hash_ids(pa.array(["a", None, "a"]), 1000).tolist() == [233, 0, 233]
    assert hash_ids(pa.array([42, None]), 1000).tolist() == [893, 0]  # ints hash by their string form
    chunked = pa.chunked_array([["a", "foobar"], [None, "a"]])
    assert hash_ids(chunked, 1000).tolist() == [233, 25, 0, 233]
    with pytest.raises(ValueError, match="expected >= 2"):
        hash_ids(["a"], 1)


def test_categorical_ids_per_encoding() -> None:
    schema = Schema.from_dict({
        "name": "toy",
        "categorical": [
            {"name": "colour", "embedding_dim": 2, "vocabulary": ["red", "green"]},
            {"name": "code", "embedding_dim": 2, "vocabulary": [7, 9]},
            {"name": "user", "embedding_dim": 2, "hash_buckets": 1000},
            {"name": "level", "embedding_dim": 2, "integer_buckets": 3},
        ],
        "heads": [{"name": "y", "kind": "binary", "label": "y"}],
    })
    table = read_table({
        "colour": pa.array(["green", "blue", None, "red", "red"]),
        "code": np.array([9, 7, 8, 9, 9]),
        "user": pa.array(["a", "foobar", None, "a", ""]),
        "level": pa.array([0, 2, 3, -1, None], type=pa.int64()),
        "y": np.array([0, 1, 0, 1, 1]),
    })
    validate(table, schema)
    batch = encode(table, schema, FeatureStats.fit(table, schema))
    assert batch.dense.shape == (5, 0)
    assert batch.categorical.tolist() == [[2, 2, 233, 1], [0, 1, 25, 3], [0, 0, 0, 0], [1, 2, 233, 0],
                                          [1, 2, 771, 0]]
    assert categorical_ids(table.column("level"), schema.categorical[3]).dtype == np.int64
