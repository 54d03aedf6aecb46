"""Batch scoring of a Parquet directory on Ray Data with the serving engine (`ecorank score --ray`).

    read_parquet(data) -> repartition by request_id -> map_batches(one RankingCore per actor) -> write_parquet(out)

Each actor of an `ActorPoolStrategy(size=workers)` pool builds one RankingCore from the same bundle, policy
and plan (shipped once as `EngineParts`) and scores every batch it is given with `serving.batch.BatchScorer`,
the scorer `ecorank score` runs in-process: the output equals in-process scoring (tested). Batches are
pyarrow tables, read, handed to the actor and written without a pandas conversion.

Allocation is per request, so a batch must never hold part of a request, and `map_batches(batch_size=N)`
cuts blocks at any row. The fastest correct way found: a hash repartition on `request_id` (every request's
rows land in one block, which the shuffle's reduce never splits), then `map_batches(batch_size=None)`, which
hands each whole block to an actor; the actor cuts it into chunks of whole requests itself. That is how
Ray's own `groupby(...).map_groups` keeps groups whole, minus its per-group UDF call: the engine ranks
thousands of candidates of many requests in one call, not one request per call. Without a request id
column nothing is allocated, so there is no shuffle and batches are any `batch_size` rows.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import ray
import ray.data
from ray.data.context import ShuffleStrategy

from experiments.scale.cluster import DATA_CPUS, require_cpus
from serving.batch import (
    REQUEST_COLUMN,
    BatchInputError,
    BatchScorer,
    EngineParts,
    ScoreSummary,
    check_exists,
    prepare_out,
)

# Rows per block after the shuffle: 100,000 rows of 64 float features are about 30 MB, small enough for
# the object store to hold a few per actor, large enough that the per-block overhead is noise.
ROWS_PER_BLOCK = 100_000


@dataclass(frozen=True)
class RayScoring:
    """What to run: the engine, the surface, candidates per engine call and the actor pool's size."""

    parts: EngineParts
    surface: str = "content"
    batch_size: int = 8_192
    workers: int = 2
    threads: int = 1  # torch threads per actor, and the CPU slots each actor holds

    @property
    def cpus_needed(self) -> int:
        """CPU slots the Ray cluster must have: the actors' and one for Ray Data's tasks."""
        return self.workers * self.threads + DATA_CPUS


class _ScoreActor:
    """One RankingCore per actor, built once and reused for every batch the actor gets."""

    def __init__(self, parts: EngineParts, surface: str, batch_size: int, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.scorer = BatchScorer(parts.core(), surface=surface, batch_size=batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.scorer.score(batch)


def score_parquet_ray(data: Path, out: Path, job: RayScoring, *, progress: bool = False) -> ScoreSummary:
    """Score a Parquet file or folder on the running Ray (experiments.tune.ray_adapter.start) into `out`."""
    started = time.perf_counter()
    if job.workers < 1:
        raise BatchInputError(f"workers: received {job.workers}; expected at least 1 actor")
    check_exists(data)
    require_cpus(job.cpus_needed, received=f"--workers {job.workers} x --threads {job.threads}",
                 holders="each actor holds --threads CPU slots", fewer="fewer workers or threads",
                 error=BatchInputError)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    # Ray Data's INFO lines (execution plans, "finished in") still go to its log files; the console gets
    # this command's own summary
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    checker = BatchScorer(job.parts.core(), surface=job.surface, batch_size=job.batch_size)
    ds = ray.data.read_parquet(str(data))
    schema = ds.schema()
    if schema is None:
        raise BatchInputError(f"--data: {str(data)!r} holds no Parquet rows; expected candidates")
    per_request = checker.check_schema(pa.schema([pa.field(n, t) for n, t in zip(schema.names, schema.types,
                                                                                  strict=True)]))
    rows = ds.count()  # from the files' footers: no data read
    prepare_out(out)
    if per_request:
        ds = _whole_requests(ds, blocks=max(job.workers, math.ceil(rows / ROWS_PER_BLOCK)))
    scored = ds.map_batches(_ScoreActor, batch_size=None if per_request else job.batch_size,
                            batch_format="pyarrow", zero_copy_batch=True,
                            compute=ray.data.ActorPoolStrategy(size=job.workers),
                            fn_constructor_kwargs={"parts": job.parts, "surface": job.surface,
                                                   "batch_size": job.batch_size, "threads": job.threads},
                            num_cpus=job.threads)
    scored.write_parquet(str(out))
    state = checker.core.state
    return ScoreSummary(rows=rows, per_request=per_request, requests=None, seconds=time.perf_counter() - started,
                        files=tuple(sorted(out.glob("*.parquet"))), model_version=state.bundle.version,
                        plan_version=state.plan_version)


def _whole_requests(ds: ray.data.Dataset, *, blocks: int) -> ray.data.Dataset:
    """Blocks that each hold whole requests: the shuffle `groupby(...).map_groups` itself relies on."""
    strategy = ds.context.shuffle_strategy
    if strategy in (ShuffleStrategy.HASH_SHUFFLE, ShuffleStrategy.SHUFFLE_V2):
        # the reduce side concatenates each hash partition into one block and never splits it
        return ds.repartition(blocks, keys=[REQUEST_COLUMN])
    return ds.sort(REQUEST_COLUMN)  # range partitions: equal keys fall in one block
