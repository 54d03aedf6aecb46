"""Batch scoring: a table of candidates in, the serving engine's answer for every candidate out.

    scorer = BatchScorer(core, surface="content")       # core: the RankingCore `ecorank serve` uses
    scores = scorer.score(table)                          # a pyarrow Table or pandas DataFrame
    summary = score_parquet(Path("candidates/"), Path("scores/"), scorer)   # `ecorank score`

Columns in: the `ecorank rank` convention (serving/client.py ID_COLUMNS: item_id, creator_id, cluster_id,
original) and the model's feature columns in any order, plus `request_id` (the schema's group column) when
the table holds many requests; other columns are ignored. Columns out, one row per candidate, in the
input's row order: the id columns, the four heads (gmv, prosperity, risk, complaint), the blended utility
before prices (`utility`), and, with a request id, the traffic `weight` (each request's sum to 1) and the
`rank` within the request (0 = first).

With a request id, every chunk goes through `RankingCore.rank`: the same validation, model, blend, prices
and allocation as the gRPC server, many requests per call (`RankInput.request`). Allocation is per request,
so a request's candidates are never split across chunks: rows are sorted by request id, then item id, and a
request joins the chunk in which it starts, so a chunk holds about `batch_size` candidates and never part
of a request. The answers do not depend on the input's row order. Without a request id there is nothing to allocate:
the model and the blend run on chunks of `batch_size` rows. No Ray here: experiments/scale/score.py runs
this same scorer in Ray Data actors.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray
from tqdm import tqdm

from fairness.blend import HeadPredictions, blend
from fairness.planner import TrafficPlan
from fairness.policy import HEADS, FairnessPolicy
from mtl.bundle import Bundle
from mtl.data import DataError
from serving.client import ID_COLUMNS
from serving.core import InvalidRequest, RankingCore, RankInput

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]

REQUEST_COLUMN = "request_id"  # the ecorank schema's group column: one ranking request
UTILITY_COLUMN = "utility"
# Candidates per engine call. Many requests per call amortize the model's and the solver's fixed costs:
# 64-feature MMoE, 100-candidate requests, 1 torch thread: 100k candidates/s one request per call, about
# 250k/s with 10-50 requests per call (measured here, 2026-12-05).
DEFAULT_BATCH_SIZE = 8_192


class BatchInputError(ValueError):
    """The table cannot be scored; the message names what was received, what was expected and the fix."""


@dataclass(frozen=True)
class EngineParts:
    """What a RankingCore is built from, as plain picklable values: a Ray actor builds its own core from them
    (a core holds a lock and cannot be shipped itself)."""

    bundle: Bundle
    policy: FairnessPolicy
    plan: TrafficPlan | None = None

    def core(self) -> RankingCore:
        return RankingCore(self.bundle, self.policy, plan=self.plan)


@dataclass(frozen=True)
class ScoreSummary:
    rows: int
    per_request: bool  # a request id column: weights and ranks too
    requests: int | None  # None: not counted (the Ray path does not gather the ids)
    seconds: float
    files: tuple[Path, ...]
    model_version: str
    plan_version: int


class BatchScorer:
    """Scores tables of candidates with one RankingCore, `batch_size` candidates (whole requests) per call."""

    def __init__(self, core: RankingCore, *, surface: str = "content", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise BatchInputError(f"batch_size: received {batch_size}; expected a positive number of candidates "
                                  f"per engine call (default {DEFAULT_BATCH_SIZE})")
        if surface not in core.limits.surfaces:
            raise BatchInputError(f"surface: received {surface!r}; expected one of {list(core.limits.surfaces)} "
                                  "(the surfaces the engine serves)")
        self.core = core
        self.surface = surface
        self.batch_size = batch_size

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.core.state.feature_names

    def check_schema(self, schema: pa.Schema) -> bool:
        """Raise BatchInputError unless the columns can be scored; True when there is a request id column.

        Checked on names and types only, so the Ray driver can check a whole directory before reading it.
        """
        names = set(schema.names)
        missing = [c for c in (*ID_COLUMNS, *self.feature_names) if c not in names]
        if missing:
            raise BatchInputError(
                f"candidates: missing columns {missing}; expected {list(ID_COLUMNS)}, the model's features "
                f"{list(self.feature_names)} and optionally {REQUEST_COLUMN!r} (received columns "
                f"{schema.names}). Rename or add the columns; `ecorank rank` takes the same layout")
        kinds = {c: schema.field(c).type for c in (*ID_COLUMNS, *self.feature_names)}
        wrong = [f"{c} ({kinds[c]})" for c in ID_COLUMNS[:3] if not pa.types.is_integer(kinds[c])]
        wrong += [f"{c} ({kinds[c]})" for c in ("original", *self.feature_names) if not _is_number(kinds[c])]
        if wrong:
            raise BatchInputError(f"candidates: columns of the wrong type: {', '.join(wrong)}; expected integer ids, "
                                  "a boolean or 0/1 `original` and numeric features. Cast them before scoring")
        return REQUEST_COLUMN in names

    @staticmethod
    def id_columns(*, per_request: bool) -> list[str]:
        return [*ID_COLUMNS[:3], *([REQUEST_COLUMN] if per_request else [])]

    @staticmethod
    def output_columns(*, per_request: bool) -> list[str]:
        return [*BatchScorer.id_columns(per_request=per_request), *HEADS, UTILITY_COLUMN,
                *(["weight", "rank"] if per_request else [])]

    def score(self, candidates: pa.Table | pd.DataFrame, *, progress: bool = False) -> pa.Table:
        """One output row per candidate, in the input's order (columns: the module docstring)."""
        table = (pa.Table.from_pandas(candidates, preserve_index=False) if isinstance(candidates, pd.DataFrame)
                 else candidates)
        per_request = self.check_schema(table.schema)
        for name in (*ID_COLUMNS, *([REQUEST_COLUMN] if per_request else [])):
            if table.column(name).null_count:
                raise BatchInputError(f"{name}: received {table.column(name).null_count} missing values; expected "
                                      "a value in every row. Drop those rows or fill them in")
        if table.num_rows == 0:
            return self._empty(table, per_request=per_request)
        features = _matrix(table, self.feature_names)
        outputs = (self._allocate(table, features, progress=progress) if per_request
                   else self._predict(features, progress=progress))
        ids = {c: table.column(c) for c in self.id_columns(per_request=per_request)}
        return pa.table({**ids, **{name: pa.array(values) for name, values in outputs.items()}})

    # ---------------------------------------------------------------- with a request id: rank

    def _allocate(self, table: pa.Table, features: NDArray[np.float32], *, progress: bool) -> dict[str, NDArray[Any]]:
        n = table.num_rows
        order, request = _group_requests(table)
        counts = np.bincount(request)  # (R,) candidates per request; score() returns early on no rows
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # a request joins the chunk in which it starts: chunks of about batch_size, never part of a request
        chunk_of = starts[:-1] // self.batch_size
        edges = np.concatenate([[0], np.flatnonzero(np.diff(chunk_of)) + 1, [len(counts)]]).astype(np.int64)
        items, creators = _int64(table, "item_id"), _int64(table, "creator_id")
        clusters, original = _int64(table, "cluster_id"), np.asarray(table.column("original").to_numpy(), bool)
        out = {**{h: np.empty(n) for h in HEADS}, UTILITY_COLUMN: np.empty(n), "weight": np.empty(n),
               "rank": np.empty(n, np.int64)}
        bar = tqdm(total=n, unit="cand", disable=not progress, desc="scoring")
        for first, last in itertools.pairwise(edges):
            lo, hi = int(starts[first]), int(starts[last])
            rows = order[lo:hi]  # input positions, request by request
            local = request[lo:hi] - first
            x = RankInput(request_id=f"batch:{first}-{last - 1}", surface=self.surface, item_ids=items[rows],
                          creator_ids=creators[rows], cluster_ids=clusters[rows], original=original[rows],
                          features=features[rows], request=local, explain=True)
            try:
                ranked = self.core.rank(x)
            except InvalidRequest as err:
                raise self._which_request(table, x, rows, err) from None
            assert ranked.explanation is not None  # asked for: the utility before prices
            for head in HEADS:
                out[head][rows] = ranked.predictions[head]
            out[UTILITY_COLUMN][rows] = ranked.explanation.base_utility
            out["weight"][rows] = ranked.weights
            # ranking lists the chunk's requests in order, each highest first: its position minus the position
            # where the candidate's request begins is the rank within the request
            position = np.empty(hi - lo, np.int64)
            position[ranked.ranking] = np.arange(hi - lo)
            out["rank"][rows] = position - (starts[first:last] - lo)[local]
            bar.update(hi - lo)
        bar.close()
        return out

    def _which_request(self, table: pa.Table, x: RankInput, rows: I64, err: InvalidRequest) -> BatchInputError:
        """The first request of a rejected chunk that the engine rejects on its own, by its request id."""
        assert x.request is not None
        bounds = np.flatnonzero(np.diff(x.request)) + 1
        for part in np.split(np.arange(len(rows)), bounds):
            one = RankInput(request_id=x.request_id, surface=x.surface, item_ids=x.item_ids[part],
                            creator_ids=x.creator_ids[part], cluster_ids=x.cluster_ids[part],
                            original=x.original[part], features=x.features[part])
            try:
                self.core.validate(one)
            except InvalidRequest as alone:
                request_id = table.column(REQUEST_COLUMN)[int(rows[part[0]])].as_py()
                return BatchInputError(f"request_id {request_id!r} ({len(part)} candidates, first at input row "
                                       f"{int(rows[part[0]])}) cannot be ranked: {alone}")
        return BatchInputError(f"requests {x.request_id} cannot be ranked together: {err}")

    # ---------------------------------------------------------------- without: predict and blend

    def _predict(self, features: NDArray[np.float32], *, progress: bool) -> dict[str, NDArray[Any]]:
        n = len(features)
        engine = self.core.state.engine_for(self.surface)
        weights = engine.blend_weights()
        out = {**{h: np.empty(n) for h in HEADS}, UTILITY_COLUMN: np.empty(n)}
        for lo in tqdm(range(0, n, self.batch_size), disable=not progress, desc="scoring", unit="batch"):
            hi = min(lo + self.batch_size, n)
            try:
                predictions = self.core.predict(features[lo:hi])
            except DataError as err:
                raise BatchInputError(f"rows {lo}-{hi - 1}: {err}") from None
            for head in HEADS:
                out[head][lo:hi] = predictions[head]
            heads = HeadPredictions(**{h: predictions[h] for h in HEADS})
            # the engine's own blend (FairnessEngine.allocate computes the same sum, in the same order)
            out[UTILITY_COLUMN][lo:hi] = blend(heads, weights, gmv_scale=engine.policy.blend.gmv_scale)
        return out

    def _empty(self, table: pa.Table, *, per_request: bool) -> pa.Table:
        ids = self.id_columns(per_request=per_request)
        fields = [table.schema.field(c) for c in ids]
        fields += [pa.field(c, pa.int64() if c == "rank" else pa.float64())
                   for c in self.output_columns(per_request=per_request)[len(ids):]]
        return pa.schema(fields).empty_table()


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))


def _int64(table: pa.Table, name: str) -> I64:
    return np.asarray(table.column(name).to_numpy(), np.int64)


def _matrix(table: pa.Table, names: Sequence[str]) -> NDArray[np.float32]:
    """(rows, features) float32, row-major, in the model's order (missing values become NaN, which the
    engine rejects naming the feature)."""
    out = np.empty((table.num_rows, len(names)), np.float32)
    for j, name in enumerate(names):
        out[:, j] = table.column(name).to_numpy()
    return out


def _group_requests(table: pa.Table) -> tuple[I64, I64]:
    """(order, request): the rows sorted by request id, then item id, and the request index 0..R-1 of each row
    in that order.

    Sorted, not just grouped: the engine then sees the same candidates in the same order however the rows
    arrive (Ray's shuffle hands over a request's rows in any order, and the model's float32 result for a row
    can differ in the last bit with the row's position in the batch).
    """
    order = pc.sort_indices(table.select([REQUEST_COLUMN, "item_id"]),
                            sort_keys=[(REQUEST_COLUMN, "ascending"), ("item_id", "ascending")])
    # sorted ids: the codes in order of first appearance count the requests up from 0
    codes = pc.dictionary_encode(table.column(REQUEST_COLUMN).take(order).combine_chunks()).indices
    return np.asarray(order.to_numpy(), np.int64), np.asarray(codes.to_numpy(), np.int64)


def check_exists(data: Path) -> None:
    if not data.exists():
        raise BatchInputError(f"--data: received {str(data)!r}, which does not exist; expected a Parquet file or "
                              "a folder of Parquet files of candidates")


def read_candidates(data: Path) -> pa.Table:
    """A Parquet file, or a folder of them, as one table."""
    check_exists(data)
    try:
        return pq.read_table(data)
    except (pa.ArrowInvalid, OSError) as err:
        raise BatchInputError(f"--data: could not read {str(data)!r} as Parquet ({err}); expected a Parquet file "
                              "or a folder holding only Parquet files") from None


def prepare_out(out: Path) -> None:
    """Create the output folder; refuse one that already holds files (scores of two runs must not mix)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BatchInputError(f"--out: received {str(out)!r}, which is a file or a folder that is not empty; "
                              "expected a new or empty folder. Pass another path or delete the old scores")
    out.mkdir(parents=True, exist_ok=True)


def score_parquet(data: Path, out: Path, scorer: BatchScorer, *, progress: bool = False) -> ScoreSummary:
    """Score a Parquet file or folder in this process into out/scores.parquet (the whole input in memory)."""
    started = time.perf_counter()
    table = read_candidates(data)
    prepare_out(out)
    scores = scorer.score(table, progress=progress)
    path = out / "scores.parquet"
    pq.write_table(scores, path)
    requests = (len(pc.unique(scores.column(REQUEST_COLUMN))) if REQUEST_COLUMN in scores.schema.names else None)
    state = scorer.core.state
    return ScoreSummary(rows=scores.num_rows, per_request=requests is not None, requests=requests,
                        seconds=time.perf_counter() - started, files=(path,), model_version=state.bundle.version,
                        plan_version=state.plan_version)


def synthetic_candidates(creators: pd.DataFrame, feature_names: Sequence[str], *, requests: int, per_request: int,
                         rng: np.random.Generator) -> pa.Table:
    """`requests` requests of `per_request` candidates of the plan's `creators` (TrafficPlan.creators: columns
    creator, cluster), features uniform on [0, 1), a third originals, rows in random order: a seeded table of
    candidates for demos, tests and benchmarks, in the layout `ecorank score` reads."""
    n = requests * per_request
    if n == 0 or len(creators) == 0:
        raise BatchInputError(f"synthetic_candidates: received {requests} requests x {per_request} candidates over "
                              f"{len(creators)} creators; expected positive counts")
    rows = rng.choice(len(creators), size=n)
    # item ids unique within each request: a permutation of 0..10*per_request-1 per request
    items = np.argsort(rng.random((requests, 10 * per_request)), axis=1)[:, :per_request].ravel()
    shuffled = rng.permutation(n)
    columns: dict[str, Any] = {
        REQUEST_COLUMN: np.repeat(np.arange(requests, dtype=np.int64), per_request)[shuffled],
        "item_id": items.astype(np.int64)[shuffled],
        "creator_id": creators["creator"].to_numpy(np.int64)[rows][shuffled],
        "cluster_id": creators["cluster"].to_numpy(np.int64)[rows][shuffled],
        "original": (rng.random(n) < 1 / 3)[shuffled]}
    features = rng.random((n, len(feature_names)), dtype=np.float32)[shuffled]
    columns.update({name: features[:, j] for j, name in enumerate(feature_names)})
    return pa.table(columns)
