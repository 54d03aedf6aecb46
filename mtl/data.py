"""Columnar data pipeline: read a table, validate it against a schema, encode it into tensors, split it.

    table = read_table("impressions.parquet", schema=schema)   # Parquet file or folder, CSV, DataFrame, dict, Table
    validate(table, schema)                                     # DataError naming column, received, expected
    train, val, test = split_by_group(table, schema, seed=0)    # whole groups (schema.group) per split
    stats = FeatureStats.fit(train, schema)                     # dense mean / std after the transform
    batch = encode(train, schema, stats)                        # EncodedBatch of torch tensors
    for batch in iter_batches(path, schema, stats, batch_size=4096, shuffle=True, seed=0): ...

Everything is vectorized with pyarrow.compute and numpy; no Python loop runs per row. Categorical ids:
`integer_buckets = N` maps a value v in [0, N) to v + 1 and anything else (>= N, negative such as -1 for
"none", null) to 0; `vocabulary` maps a value's string form to its position + 1 (unknown -> 0);
`hash_buckets = N` maps a value's string form (pyarrow's cast to string, so 5 and "5" agree) to
1 + FNV-1a-64(UTF-8 bytes) mod (N - 1), null -> 0. FNV-1a is fixed and byte-wise, so ids are the same in
every process and on every platform (unlike Python's salted `hash()`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch
from numpy.typing import NDArray

from mtl.schema import CategoricalFeature, Schema

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv",)
STD_FLOOR = 1e-6
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)

Source: TypeAlias = str | Path | pd.DataFrame | pa.Table | pa.RecordBatch | Mapping[str, Any]


class DataError(ValueError):
    """Data does not fit its schema; each problem names the column, what was received and what was expected."""

    def __init__(self, problems: Sequence[str], *, source: str = "table") -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = f"{source}: {self.problems[0]}"
        else:
            message = f"{source}: {len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready tensors for N rows; labels and masks are keyed by head name."""

    dense: torch.Tensor  # (N, n_dense) float32, standardized
    categorical: torch.Tensor  # (N, n_categorical) int64, ids in [0, buckets)
    labels: dict[str, torch.Tensor]  # head -> (N,) float32
    masks: dict[str, torch.Tensor]  # head -> (N,) bool: the head trains on the row

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def to(self, device: torch.device | str) -> EncodedBatch:
        return EncodedBatch(
            dense=self.dense.to(device), categorical=self.categorical.to(device),
            labels={k: v.to(device) for k, v in self.labels.items()},
            masks={k: v.to(device) for k, v in self.masks.items()},
        )


# --------------------------------------------------------------------------------------------------
# Reading


def read_table(source: Source, *, schema: Schema | None = None, features_only: bool = False) -> pa.Table:
    """Read a Parquet file, a folder of Parquet files, a CSV file, a DataFrame, a dict of arrays or a Table.

    With a schema, only its columns are returned (in `schema.columns()` order), a missing column fails
    here with the full list of what the source holds, and CSV columns of hashed / vocabulary features
    are read as strings (so "007" stays "007"). `features_only` reads just the feature columns (for
    prediction, where there are no labels).
    """
    columns = (schema.feature_columns() if features_only else schema.columns()) if schema else []
    label = _describe(source)
    if isinstance(source, pa.Table):
        table = source
    elif isinstance(source, pa.RecordBatch):
        table = pa.Table.from_batches([source])
    elif isinstance(source, pd.DataFrame):
        table = pa.Table.from_pandas(source, preserve_index=False)
    elif isinstance(source, Mapping):
        try:
            table = pa.table({str(k): v for k, v in source.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
            raise DataError([f"received a dict that pyarrow cannot turn into a table ({err}); expected equal-length "
                             "1-d arrays or lists, one per column"], source=label) from None
    elif isinstance(source, str | Path):
        return _read_path(Path(source), schema, columns)
    else:
        raise DataError([f"received {type(source).__name__}; expected a path to a Parquet file, a folder of Parquet "
                         "files or a CSV file, a pandas DataFrame, a dict of numpy arrays or a pyarrow Table"],
                        source="read_table")
    if schema is None:
        return table
    _check_columns(table.column_names, columns, schema, source=label)
    return table.select(columns)


def _read_path(path: Path, schema: Schema | None, columns: list[str]) -> pa.Table:
    label = str(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in PARQUET_SUFFIXES)
        if not files:
            raise DataError([f"received a folder without {'/'.join(PARQUET_SUFFIXES)} files; expected a folder of "
                             "Parquet files. Fix: point at the files' folder or at one file"], source=label)
        dataset = pads.dataset([str(f) for f in files], format="parquet")
        if schema is None:
            return dataset.to_table()
        _check_columns(dataset.schema.names, columns, schema, source=label)
        return dataset.to_table(columns=columns)
    if not path.is_file():
        raise DataError(["file not found; expected an existing Parquet file, Parquet folder or CSV file"], source=label)
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if schema is None:
            return pq.read_table(path)
        _check_columns(pq.read_schema(path).names, columns, schema, source=label)
        return pq.read_table(path, columns=columns)
    if suffix in CSV_SUFFIXES:
        as_text = {c.name: pa.string() for c in (schema.categorical if schema else ()) if c.encoding != "integer"}
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=as_text))
        if schema is None:
            return table
        _check_columns(table.column_names, columns, schema, source=label)
        return table.select(columns)
    raise DataError([f"received a file with suffix {suffix!r}; expected one of "
                     f"{[*PARQUET_SUFFIXES, *CSV_SUFFIXES]}. Fix: convert it to Parquet or CSV"], source=label)


def _describe(source: object) -> str:
    if isinstance(source, str | Path):
        return str(source)
    return type(source).__name__


# --------------------------------------------------------------------------------------------------
# Validation


def validate(table: pa.Table, schema: Schema, *, source: str = "table") -> None:
    """Raise DataError listing every problem: missing columns, wrong dtypes, null / NaN / inf, bad labels."""
    problems = _problems(table, schema, include_group=True)
    if problems:
        raise DataError(problems, source=source)


def _problems(table: pa.Table, schema: Schema, *, include_group: bool, include_labels: bool = True) -> list[str]:
    if not include_labels:
        required = schema.feature_columns()
    else:
        required = schema.columns() if include_group else schema.feature_columns() + schema.label_columns()
    problems = _missing_columns(table.column_names, required, schema)
    present = set(table.column_names)
    problems += _dense_problems(table, schema)
    for feature in schema.categorical:
        if feature.name in present:
            problems += _categorical_problems(table.column(feature.name), feature)
    for head in schema.head_configs if include_labels else ():
        if head.label not in present:
            continue
        role = f"label {head.label!r} of head {head.name!r} ({head.kind})"
        column = table.column(head.label)
        if not _is_numeric(column.type):
            problems.append(_dtype_problem(role, column, "a numeric column (0/1 for binary heads)"))
            continue
        values = _float64(column)
        problems += _value_problem(role, column, ~np.isfinite(values), values, "finite values (no null, NaN, inf)")
        finite = np.isfinite(values)
        if head.kind == "binary":
            problems += _value_problem(role, column, finite & (values != 0) & (values != 1), values,
                                       "0 or 1. Fix: binarize the label (e.g. label > 0)")
        elif not head.allow_negative:
            problems += _value_problem(role, column, finite & (values < 0), values,
                                       "values >= 0. Fix: correct the data, or set allow_negative = true on a "
                                       "regression head")
    if include_group and schema.group is not None and schema.group in present:
        column = table.column(schema.group)
        if column.null_count:
            nulls = _null_mask(column)
            problems += _value_problem(f"group column {schema.group!r}", column, nulls, None,
                                       "no nulls (every row needs a group). Fix: fill or drop those rows")
    return problems


def _dense_problems(table: pa.Table, schema: Schema) -> list[str]:
    problems: list[str] = []
    present = set(table.column_names)
    for feature in schema.dense:
        if feature.name not in present:
            continue
        role = f"dense feature {feature.name!r}"
        column = table.column(feature.name)
        if not _is_numeric(column.type):
            problems.append(_dtype_problem(role, column, "a numeric column (int, float or bool). Fix: cast it, or "
                                                         "declare it under [[categorical]]"))
            continue
        values = _float64(column)
        bad = ~np.isfinite(values)
        problems += _value_problem(role, column, bad, values, "finite values (no null, NaN, inf). Fix: impute or "
                                                               "drop those rows")
        if feature.transform == "log1p":
            problems += _value_problem(role, column, ~bad & (values <= -1), values,
                                       "values > -1 for transform = \"log1p\". Fix: use transform = \"none\"")
    return problems


def _categorical_problems(column: pa.ChunkedArray, feature: CategoricalFeature) -> list[str]:
    role = f"categorical feature {feature.name!r}"
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if feature.encoding == "integer":
        if not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            return [_dtype_problem(role, column, "an integer column for integer_buckets. Fix: cast it to int "
                                                 "(nulls are fine), or use hash_buckets / vocabulary")]
        return []
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_boolean(kind) or pa.types.is_floating(kind)):
        return [_dtype_problem(role, column, "a string, integer, bool or float column (hashed / looked up by its "
                                             "string form). Fix: cast it to string")]
    return []


def _missing_columns(available: Sequence[str], required: Sequence[str], schema: Schema) -> list[str]:
    have = set(available)
    missing = [c for c in required if c not in have]
    if not missing:
        return []
    shown = list(available) if len(available) <= 40 else [*available[:40], f"... {len(available) - 40} more"]
    what = ", ".join(f"{name!r} ({_role(name, schema)}){_did_you_mean(name, available)}" for name in missing)
    return [f"missing column{'s' if len(missing) > 1 else ''} {what}; expected every column the schema "
            f"{schema.name!r} names, received columns {shown}. Fix: rename the columns or change the schema"]


def _check_columns(available: Sequence[str], required: Sequence[str], schema: Schema, *, source: str) -> None:
    problems = _missing_columns(available, required, schema)
    if problems:
        raise DataError(problems, source=source)


def _role(name: str, schema: Schema) -> str:
    roles = ["dense feature" for f in schema.dense if f.name == name]
    roles += ["categorical feature" for c in schema.categorical if c.name == name]
    roles += [f"label of head {h.name!r}" for h in schema.head_configs if h.label == name]
    roles += [f"mask of head {h.name!r}" for h in schema.head_configs if h.mask == name]
    if schema.group == name:
        roles.append("group")
    return ", ".join(roles)


def _is_numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype))


def _float64(column: pa.ChunkedArray) -> NDArray[np.float64]:
    """Values as float64 with nulls as NaN (a fresh, writable array)."""
    values = pc.cast(column, pa.float64()).to_numpy()
    out = np.array(values, dtype=np.float64)
    if column.null_count:
        out[_null_mask(column)] = np.nan
    return out


def _null_mask(column: pa.ChunkedArray) -> NDArray[np.bool_]:
    return np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False), dtype=bool)


def _dtype_problem(role: str, column: pa.ChunkedArray, expected: str) -> str:
    example = ""
    if len(column):
        example = f" (e.g. {_python(column[0].as_py())!r} at row 0)"
    return f"{role}: received dtype {column.type}{example}; expected {expected}"


def _value_problem(role: str, column: pa.ChunkedArray, bad: NDArray[np.bool_], values: NDArray[np.float64] | None,
                   expected: str) -> list[str]:
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return []
    first = int(rows[0])
    nulls = _null_mask(column) if column.null_count else None
    is_null = values is None or (nulls is not None and bool(nulls[first]))
    shown = "null" if is_null or values is None else repr(_python(values[first]))
    return [f"{role}: received {shown} at row {first} ({rows.size} offending row{'s' if rows.size > 1 else ''} "
            f"of {len(bad)}; dtype {column.type}); expected {expected}"]


def _python(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------------------------------
# Dense statistics


@dataclass(frozen=True)
class FeatureStats:
    """Per dense feature mean and std after its transform, fitted on training data (std floored at 1e-6)."""

    names: tuple[str, ...]
    transforms: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    count: int

    @classmethod
    def fit(cls, table: pa.Table, schema: Schema) -> FeatureStats:
        return cls.fit_batches([table], schema)

    @classmethod
    def fit_batches(cls, batches: Iterable[pa.Table | pa.RecordBatch], schema: Schema) -> FeatureStats:
        """Fit from a stream of tables or record batches (bounded memory), merging per-batch moments."""
        n_dense = len(schema.dense)
        count = 0
        mean = np.zeros(n_dense)
        m2 = np.zeros(n_dense)  # sum of squared deviations (Chan et al. parallel update)
        for batch in batches:
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            problems = _missing_columns(table.column_names, [f.name for f in schema.dense], schema)
            problems += _dense_problems(table, schema)
            if problems:
                raise DataError(problems, source="FeatureStats.fit")
            x = _dense_matrix(table, schema)  # (n, n_dense)
            n = x.shape[0]
            if n == 0:
                continue
            batch_mean = x.mean(axis=0)
            batch_m2 = ((x - batch_mean) ** 2).sum(axis=0)
            delta = batch_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + batch_m2 + delta**2 * (count * n / total)
            count = total
        if count == 0:
            raise DataError(["received 0 rows; expected a non-empty training table to fit dense statistics on"],
                            source="FeatureStats.fit")
        std = np.maximum(np.sqrt(m2 / count), STD_FLOOR)
        return cls(names=tuple(f.name for f in schema.dense), transforms=tuple(f.transform for f in schema.dense),
                   mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std), count=count)

    def check(self, schema: Schema) -> None:
        """Raise DataError unless these statistics were fitted for the schema's dense features."""
        expected = [(f.name, f.transform) for f in schema.dense]
        received = list(zip(self.names, self.transforms, strict=True))
        if received != expected:
            raise DataError([f"received statistics for dense features {received}; expected {expected} (schema "
                             f"{schema.name!r}). Fix: refit with FeatureStats.fit(train_table, schema)"],
                            source="FeatureStats")

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "features": [
            {"name": n, "transform": t, "mean": m, "std": s}
            for n, t, m, s in zip(self.names, self.transforms, self.mean, self.std, strict=True)]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureStats:
        try:
            features = list(data["features"])
            stats = cls(names=tuple(str(f["name"]) for f in features),
                        transforms=tuple(str(f["transform"]) for f in features),
                        mean=tuple(float(f["mean"]) for f in features), std=tuple(float(f["std"]) for f in features),
                        count=int(data["count"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError([f"received {dict(data)!r} (problem: {err!r}); expected {{'count': int, 'features': "
                             "[{'name', 'transform', 'mean', 'std'}, ...]}} as written by FeatureStats.to_dict"],
                            source="FeatureStats.from_dict") from None
        bad = [n for n, m, s in zip(stats.names, stats.mean, stats.std, strict=True)
               if not (math.isfinite(m) and math.isfinite(s) and s > 0)]
        if bad:
            raise DataError([f"features {bad}: received a non-finite mean or a std <= 0; expected finite means and "
                             "positive stds. Fix: refit the statistics"], source="FeatureStats.from_dict")
        return stats


def _dense_matrix(table: pa.Table, schema: Schema) -> NDArray[np.float64]:
    """(N, n_dense) float64 after each feature's transform, before standardization."""
    columns = []
    for feature in schema.dense:
        values = _float64(table.column(feature.name))
        columns.append(np.log1p(values) if feature.transform == "log1p" else values)
    if not columns:
        return np.zeros((table.num_rows, 0))
    return np.stack(columns, axis=1)


# --------------------------------------------------------------------------------------------------
# Encoding


def encode(table: pa.Table, schema: Schema, stats: FeatureStats, *, check: bool = True) -> EncodedBatch:
    """Tensors for every row of `table`; with `check` (default) the table is validated first (no group needed)."""
    if check:
        problems = _problems(table, schema, include_group=False)
        if problems:
            raise DataError(problems, source="encode")
    dense, categorical = encode_features(table, schema, stats, check=False)
    labels = {h.name: torch.from_numpy(_float64(table.column(h.label)).astype(np.float32))
              for h in schema.head_configs}
    masks = {h.name: (torch.from_numpy(_float64(table.column(h.mask)) > 0) if h.mask
                      else torch.ones(table.num_rows, dtype=torch.bool))
             for h in schema.head_configs}
    return EncodedBatch(dense=dense, categorical=categorical, labels=labels, masks=masks)


def encode_features(table: pa.Table, schema: Schema, stats: FeatureStats, *,
                    check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs only (no labels needed): dense (N, n_dense) float32, categorical (N, n_cat) int64."""
    if check:
        problems = _problems(table, schema, include_group=False, include_labels=False)
        if problems:
            raise DataError(problems, source="encode_features")
    stats.check(schema)
    dense = (_dense_matrix(table, schema) - np.asarray(stats.mean)) / np.asarray(stats.std)  # (N, n_dense)
    ids = [categorical_ids(table.column(c.name), c) for c in schema.categorical]
    categorical = np.stack(ids, axis=1) if ids else np.zeros((table.num_rows, 0), dtype=np.int64)  # (N, n_cat)
    return (torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(categorical, dtype=np.int64)))


def categorical_ids(column: pa.ChunkedArray | pa.Array, feature: CategoricalFeature) -> NDArray[np.int64]:
    """(N,) int64 ids in [0, feature.buckets); 0 = out of vocabulary / missing."""
    if feature.encoding == "integer":
        assert feature.integer_buckets is not None
        values = np.asarray(pc.fill_null(pc.cast(column, pa.int64()), -1).to_numpy(), dtype=np.int64)
        in_range = (values >= 0) & (values < feature.integer_buckets)
        return np.where(in_range, values + 1, 0).astype(np.int64)
    text = pc.cast(column, pa.string())
    if feature.encoding == "hash":
        assert feature.hash_buckets is not None
        return hash_ids(text, feature.hash_buckets)
    assert feature.vocabulary is not None
    vocabulary = pa.array([str(v) for v in feature.vocabulary], type=pa.string())
    position = pc.fill_null(pc.index_in(text, value_set=vocabulary), -1)
    return np.asarray(position.to_numpy(), dtype=np.int64) + 1


def hash_ids(values: pa.Array | pa.ChunkedArray | Sequence[str | None], buckets: int) -> NDArray[np.int64]:
    """Stable ids 1 + FNV-1a-64(utf-8) mod (buckets - 1); null -> 0. Hashes each distinct value once."""
    if buckets < 2:
        raise ValueError(f"buckets: received {buckets}; expected >= 2 (bucket 0 is reserved for missing)")
    array = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], type=pa.string())
    encoded = pc.cast(array, pa.string()).dictionary_encode()  # distinct values + per-row index (null stays null)
    distinct_ids = (fnv1a_64(encoded.dictionary) % np.uint64(buckets - 1) + np.uint64(1)).astype(np.int64)
    lookup = np.append(distinct_ids, np.int64(0))  # index len(distinct) = null -> 0
    index = pc.fill_null(encoded.indices, len(distinct_ids)).to_numpy()
    return lookup[np.asarray(index, dtype=np.int64)]


def fnv1a_64(values: pa.Array | Sequence[str]) -> NDArray[np.uint64]:
    """64-bit FNV-1a of each string's UTF-8 bytes, vectorized over strings (one numpy step per byte position)."""
    array = values if isinstance(values, pa.Array) else pa.array(values, type=pa.string())
    array = pc.cast(array, pa.large_string())  # int64 offsets
    n = len(array)
    if array.null_count:
        raise ValueError("fnv1a_64: received nulls; expected strings only (hash_ids maps nulls to 0)")
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset: array.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashes = np.full(n, FNV_OFFSET, dtype=np.uint64)
    for position in range(int(lengths.max(initial=0))):
        active = np.flatnonzero(lengths > position)
        byte = data[starts[active] + position].astype(np.uint64)
        hashes[active] = (hashes[active] ^ byte) * FNV_PRIME  # uint64 arithmetic wraps mod 2**64
    return hashes


# --------------------------------------------------------------------------------------------------
# Splitting and streaming


def split_by_group(table: pa.Table, schema: Schema, *, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                   seed: int) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(train, val, test) with every group (rows sharing `schema.group`) in exactly one split.

    Distinct groups are sorted, shuffled with `seed` and cut at round(cumulative fraction * n_groups), so the
    result depends on the seed and the set of groups, not on row order. Without `schema.group` every row is
    its own group (a plain row split). Rows keep their original order within a split.
    """
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions: received {tuple(fractions)}; expected three non-negative numbers summing to 1 "
                         "(train, val, test), e.g. (0.8, 0.1, 0.1)")
    if schema.group is None:
        inverse = np.arange(table.num_rows)
        n_groups = table.num_rows
    else:
        if schema.group not in table.column_names:
            raise DataError(_missing_columns(table.column_names, [schema.group], schema), source="split_by_group")
        column = table.column(schema.group)
        if column.null_count:
            raise DataError(_value_problem(f"group column {schema.group!r}", column, _null_mask(column), None,
                                           "no nulls (every row needs a group)"), source="split_by_group")
        keys = column.to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, dtype=np.int64)
        distinct, inverse = np.unique(keys, return_inverse=True)
        n_groups = len(distinct)
    rank = np.empty(n_groups, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n_groups)] = np.arange(n_groups)  # group -> place in shuffle
    cuts = np.round(np.cumsum(fractions)[:2] * n_groups).astype(np.int64)
    split_of_row = np.searchsorted(cuts, rank, side="right")[np.asarray(inverse).ravel()]  # 0 train, 1 val, 2 test
    train, val, test = (table.filter(pa.array(split_of_row == k)) for k in range(3))
    return train, val, test


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files to stream: the file itself, or every Parquet file below a folder (sorted)."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.suffix in PARQUET_SUFFIXES) if root.is_dir() else [root]
    if not files or not files[0].is_file():
        raise DataError(["file not found; expected a Parquet file or a folder of Parquet files"], source=str(root))
    return files


def iter_batches(path: str | Path, schema: Schema, stats: FeatureStats, *, batch_size: int, shuffle: bool,
                 seed: int = 0, buffer_rows: int | None = None, drop_last: bool = False) -> Iterator[EncodedBatch]:
    """Stream a Parquet file (or folder of them) as EncodedBatches of `batch_size` rows (the last may be short).

    Reads row group by row group, so files larger than memory work. Without `shuffle` rows come in file
    order. With it, row groups are visited in a seeded random order and pooled into a buffer of
    `buffer_rows` rows (default 16 batches, at least one row group) that is permuted before it is cut
    into batches: memory stays bounded by the buffer plus one row group. Each batch is validated by
    `encode` (row numbers in errors count from the batch start).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: received {batch_size}; expected >= 1")
    files = parquet_files(path)
    readers = [pq.ParquetFile(f) for f in files]
    columns = _unique_names(schema.feature_columns() + schema.label_columns())  # the group is not needed
    for file, reader in zip(files, readers, strict=True):
        problems = _missing_columns(reader.schema_arrow.names, columns, schema)
        if problems:
            raise DataError(problems, source=str(file))
    rng = np.random.default_rng(seed)
    limit = buffer_rows if buffer_rows is not None else 16 * batch_size

    def in_order() -> Iterator[pa.Table]:
        for reader in readers:
            for record_batch in reader.iter_batches(batch_size=batch_size, columns=columns):
                yield pa.Table.from_batches([record_batch])

    def shuffled() -> Iterator[pa.Table]:
        groups = [(r, g) for r in range(len(readers)) for g in range(readers[r].num_row_groups)]
        pool: list[pa.Table] = []
        pooled = 0
        for choice in rng.permutation(len(groups)):
            reader_index, group = groups[int(choice)]
            pool.append(readers[reader_index].read_row_group(group, columns=columns))
            pooled += pool[-1].num_rows
            if pooled >= limit:
                merged = pa.concat_tables(pool)
                yield merged.take(pa.array(rng.permutation(merged.num_rows)))
                pool, pooled = [], 0
        if pooled:
            merged = pa.concat_tables(pool)
            yield merged.take(pa.array(rng.permutation(merged.num_rows)))

    for table in _rebatch(shuffled() if shuffle else in_order(), batch_size, drop_last=drop_last):
        yield encode(table, schema, stats)


def _rebatch(tables: Iterable[pa.Table], batch_size: int, *, drop_last: bool) -> Iterator[pa.Table]:
    """Re-cut a stream of tables into tables of exactly `batch_size` rows (the last may be short)."""
    pending: list[pa.Table] = []
    pending_rows = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        pending.append(table)
        pending_rows += table.num_rows
        if pending_rows < batch_size:
            continue
        merged = pa.concat_tables(pending)
        full = merged.num_rows // batch_size * batch_size
        for start in range(0, full, batch_size):
            yield merged.slice(start, batch_size)
        rest = merged.slice(full)
        pending, pending_rows = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if pending_rows and not drop_last:
        yield pa.concat_tables(pending)


def _unique_names(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))
