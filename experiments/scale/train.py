"""Distributed data-parallel training on Ray Train: what `ecorank train --ray-workers N` runs.

The driver does what one process does before training (`mtl.train.prepare_splits`: read, validate, split by
group with the seed, fit the feature statistics on the training split), writes the training split as N
equal Parquet shards and hands the folder to Ray Data (`ray.data.read_parquet`). A `TorchTrainer` runs N
workers; each reads its shard (`ray.train.get_dataset_shard`), encodes it with the driver's statistics,
builds the same seeded model (`mtl.train.new_model`), wraps it in DDP on gloo (`ray.train.torch.prepare_model`)
and runs the same `mtl.trainer.Trainer` loop as one process, as a `DataParallel` replica. The per-worker
batch is batch_size / N, so the global batch, the steps per epoch and the learning-rate schedule are those
of one process. Rank 0 validates, decides early stopping for every worker and reports the best weights as a
checkpoint; the driver calibrates, evaluates and saves them with `mtl.train.package_bundle`: the same bundle
as `ecorank train`, servable by `ecorank serve`.

What differs from one process, and why results match only within a tolerance (docs/tuning.md): each worker
sees a fixed random half (third, ...) of the training rows, reshuffled within the shard every epoch, where
one process reshuffles all rows; each step averages per-worker losses (masked heads weigh each worker's
masked rows equally rather than pooling them); up to N - 1 training rows are left out so the shards are
equal. The same seed, data and worker count give the same bundle: the shards are written by the driver,
Ray Data keeps their order (`preserve_order`) and every shuffle is seeded.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import ray.train
import torch
from ray.train.torch import TorchConfig, TorchTrainer, prepare_model

from experiments.scale.cluster import DATA_CPUS, require_cpus
from mtl.bundle import Bundle
from mtl.calibration import CalibrationMethod
from mtl.data import EncodedBatch, FeatureStats, Source, encode
from mtl.schema import Schema
from mtl.train import new_model, package_bundle, prepare_splits
from mtl.trainer import BatchStream, DataParallel, TrainConfig, Trainer, TrainResult

TRAIN = "train"  # the Ray dataset's name
RUN_NAME = "ecorank-train"  # Ray Train's run folder under the storage path
WEIGHTS = "model.pt"
RESULT = "result.json"
SHUFFLE_BATCHES = 16  # each worker shuffles its rows through a buffer of this many batches (as mtl.data.iter_batches)


@dataclass(frozen=True)
class _WorkerPlan:
    """Everything a worker needs besides its shard; sent to every worker with the train loop config."""

    schema: Schema
    model_name: str
    model_overrides: Mapping[str, Any] | None
    config: TrainConfig  # batch_size is the global batch
    stats: FeatureStats
    val: pa.Table  # rank 0 validates on it
    worker_batch: int
    shard_rows: int


def check_workers(workers: int, *, batch_size: int) -> None:
    """Reject a worker count that cannot keep the single-process batch (before anything starts)."""
    if workers < 1:
        raise ValueError(f"--ray-workers: received {workers}; expected a positive number of Ray Train workers")
    if batch_size % workers:
        below, above = batch_size // workers * workers, (batch_size // workers + 1) * workers
        raise ValueError(f"--batch-size {batch_size} is not divisible by --ray-workers {workers}: each worker takes "
                         "batch_size / workers rows per step so that the global batch equals the single-process "
                         f"batch. Fix: pass --batch-size {below or above} or {above}, or another worker count")


def train_bundle_distributed(*, data: Source, schema: Schema, model_name: str, out: Path, config: TrainConfig,
                             workers: int, storage: Path, model_overrides: Mapping[str, Any] | None = None,
                             calibration: CalibrationMethod = "isotonic",
                             fractions: Sequence[float] = (0.8, 0.1, 0.1), address: str | None = None,
                             num_cpus: int | None = None) -> Bundle:
    """`mtl.train.train_bundle` on `workers` Ray Train workers; the bundle is written to `out`.

    Ray runs locally unless `address` names a cluster. A local Ray gets `num_cpus` logical CPUs, by default
    the machine's cores but at least workers + 1 (each worker holds one CPU slot for the whole run and Ray
    Data's read tasks need another). `storage` holds the Parquet shards while training and Ray Train's run
    folder (logs, the final checkpoint) afterwards; on a cluster it must be a path every node can read.
    A run starts afresh: it does not resume an earlier one from `storage`.
    """
    check_workers(workers, batch_size=config.batch_size)
    splits = prepare_splits(data, schema=schema, seed=config.seed, fractions=fractions)
    if splits.train.num_rows < workers:
        raise ValueError(f"--ray-workers {workers}: the training split has only {splits.train.num_rows} rows; "
                         "expected at least one per worker. Pass more data or fewer workers")
    # Imported here, not at the top: every worker imports this module, and the sweeps' adapter brings the
    # simulator and the sweep code along (seconds of start-up per worker).
    from experiments.tune.ray_adapter import start

    start(address=address, num_cpus=num_cpus, min_cpus=workers + DATA_CPUS)
    require_cpus(workers + DATA_CPUS, received=f"--ray-workers {workers}",
                 holders=f"{workers} training workers hold one each", fewer="fewer workers")

    storage = storage.resolve()
    shards = storage / "shards"
    shutil.rmtree(storage / RUN_NAME, ignore_errors=True)  # Ray Train would restore a run found there
    shutil.rmtree(shards, ignore_errors=True)
    columns = list(dict.fromkeys(schema.feature_columns() + schema.label_columns()))
    shard_rows = write_shards(splits.train.select(columns), shards, workers=workers, seed=config.seed)
    plan = _WorkerPlan(schema=schema, model_name=model_name, model_overrides=model_overrides, config=config,
                       stats=splits.stats, val=splits.val, worker_batch=config.batch_size // workers,
                       shard_rows=shard_rows)
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"plan": plan},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=False),
        run_config=ray.train.RunConfig(name=RUN_NAME, storage_path=str(storage)),
        # one block per shard file; preserve_order makes Ray Data hand shard k to worker k on every run
        datasets={TRAIN: ray.data.read_parquet(str(shards), override_num_blocks=workers)},
        dataset_config=ray.train.DataConfig(datasets_to_split=[TRAIN],
                                            execution_options=ray.data.ExecutionOptions(preserve_order=True)))
    try:
        result = trainer.fit()
    finally:
        shutil.rmtree(shards, ignore_errors=True)  # a copy of the training split: not kept
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without a checkpoint; its logs are in {storage / RUN_NAME}")
    with result.checkpoint.as_directory() as folder:
        weights = torch.load(Path(folder) / WEIGHTS, weights_only=True)
        train_result = TrainResult(**json.loads((Path(folder) / RESULT).read_text()))
    model = new_model(model_name, schema=schema, seed=config.seed, overrides=model_overrides)
    model.load_state_dict(weights)
    return package_bundle(
        model.eval(), train_result, model_name=model_name, schema=schema, stats=splits.stats, val=splits.val,
        test=splits.test, train_rows=workers * shard_rows, out=out, config=config, calibration=calibration,
        extra_config={"fractions": list(fractions), "ray_workers": workers, "worker_batch_size": plan.worker_batch,
                      "rows_per_worker": shard_rows})


def write_shards(train: pa.Table, folder: Path, *, workers: int, seed: int) -> int:
    """Shuffle the rows with `seed` and write `workers` Parquet files of equal length (the < workers rows
    left over are dropped); return the rows per file."""
    rows = int(train.num_rows) // workers
    order = np.random.default_rng(seed).permutation(train.num_rows)[: rows * workers]
    shuffled = train.take(pa.array(order))
    folder.mkdir(parents=True)
    for rank in range(workers):
        pq.write_table(shuffled.slice(rank * rows, rows), folder / f"part-{rank:05d}.parquet")
    return rows


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the single-process training loop on this worker's shard, as a DDP replica."""
    plan: _WorkerPlan = loop_config["plan"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    model = new_model(plan.model_name, schema=plan.schema, seed=plan.config.seed, overrides=plan.model_overrides)
    parallel = DataParallel(module=prepare_model(model), rank=rank, world_size=world)
    stream = _shard_stream(ray.train.get_dataset_shard(TRAIN), plan, rank=rank, world=world)
    trainer = Trainer(model, plan.config, progress=False, parallel=parallel)
    result = trainer.fit(stream, encode(plan.val, plan.schema, plan.stats))
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if parallel.is_chief:  # the replicas hold the same weights; rank 0 kept the best epoch's
            torch.save(model.state_dict(), Path(folder) / WEIGHTS)
            (Path(folder) / RESULT).write_text(json.dumps(asdict(result)))
            checkpoint = ray.train.Checkpoint.from_directory(folder)
        ray.train.report({"best_epoch": result.best_epoch, "best_value": result.best_value,
                          "epochs_run": len(result.history)}, checkpoint=checkpoint)


def _shard_stream(shard: ray.data.DataIterator, plan: _WorkerPlan, *, rank: int, world: int) -> BatchStream:
    """The worker's shard as a BatchStream: reshuffled every epoch (seeded by seed, epoch and rank), encoded
    with the driver's statistics; `rows` counts every worker's rows so the Trainer's schedule is global."""
    steps = math.ceil(plan.shard_rows / plan.worker_batch)

    def batches(epoch: int) -> Iterator[EncodedBatch]:
        tables = shard.iter_batches(batch_size=plan.worker_batch, batch_format="pyarrow",
                                    local_shuffle_buffer_size=SHUFFLE_BATCHES * plan.worker_batch,
                                    local_shuffle_seed=(plan.config.seed * 1_000_003 + epoch) * world + rank)
        count = 0
        for table in tables:
            count += 1
            yield encode(table, plan.schema, plan.stats)
        if count != steps:  # unequal step counts would leave the other replicas waiting in an all-reduce
            raise RuntimeError(f"worker {rank} ran {count} steps in epoch {epoch}; expected {steps} "
                               f"({plan.shard_rows} rows in batches of {plan.worker_batch})")

    return BatchStream(batches=batches, rows=plan.shard_rows * world)
