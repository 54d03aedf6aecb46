"""One training job, data to bundle: read, validate, split by group, standardize, train, calibrate, evaluate, save.

This is what `ecorank train` runs; the pieces live in data.py, trainer.py, calibration.py and bundle.py.
Calibration is fitted on the validation split and judged on the held-out test split, which neither
training nor calibration saw. Distributed training (experiments/scale/train.py) uses the same steps:
`prepare_splits` before, `new_model` and the Trainer in every worker, `package_bundle` after.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl.bundle import Bundle, save_bundle
from mtl.calibration import CalibrationMethod, Calibrator, fit_calibrator
from mtl.data import (
    EncodedBatch,
    FeatureStats,
    Source,
    encode,
    iter_batches,
    parquet_files,
    read_table,
    split_by_group,
    validate,
)
from mtl.metrics import evaluate_heads
from mtl.models import build_model
from mtl.models.blocks import MultiTaskModel
from mtl.schema import Schema
from mtl.trainer import BatchStream, TrainConfig, Trainer, TrainResult

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class Splits:
    """Validated data split by group, and the feature statistics fitted on its training part."""

    train: pa.Table
    val: pa.Table
    test: pa.Table
    stats: FeatureStats


def prepare_splits(data: Source, *, schema: Schema, seed: int,
                   fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Splits:
    """Read and validate `data`, split it by group with `seed` (none of the splits may be empty), fit the
    dense statistics on the training split."""
    table = read_table(data, schema=schema)
    validate(table, schema, source=str(data) if isinstance(data, str | Path) else "data")
    train, val, test = split_by_group(table, schema, fractions=fractions, seed=seed)
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if part.num_rows == 0:
            raise ValueError(f"the {name} split is empty ({table.num_rows} rows, fractions {tuple(fractions)}); "
                             "pass more data or larger split fractions")
    return Splits(train=train, val=val, test=test, stats=FeatureStats.fit(train, schema))


def new_model(model_name: str, *, schema: Schema, seed: int,
              overrides: Mapping[str, Any] | None = None) -> MultiTaskModel:
    """The untrained model, its weights drawn after `torch.manual_seed(seed)`: the same in every process."""
    torch.manual_seed(seed)
    return build_model(model_name, inputs=schema.input_spec(), heads=schema.heads, overrides=overrides)


def train_bundle(*, data: Source, schema: Schema, model_name: str, out: Path, config: TrainConfig,
                 model_overrides: Mapping[str, Any] | None = None, calibration: CalibrationMethod = "isotonic",
                 fractions: Sequence[float] = (0.8, 0.1, 0.1), progress: bool = True,
                 on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> Bundle:
    """Train `model_name` on `data` and write a bundle to `out` (checkpoints in out/checkpoints).

    `on_epoch_end(epoch, row)` sees each epoch's validation row (loss, per-head metrics), e.g. to report it
    to a hyperparameter sweep that may stop the trial early."""
    splits = prepare_splits(data, schema=schema, seed=config.seed, fractions=fractions)
    return _train_and_package(
        train=encode(splits.train, schema, splits.stats), train_rows=splits.train.num_rows, val=splits.val,
        test=splits.test, schema=schema, stats=splits.stats, model_name=model_name, out=out, config=config,
        model_overrides=model_overrides, calibration=calibration, progress=progress,
        extra_config={"fractions": list(fractions)}, on_epoch_end=on_epoch_end)


def train_bundle_streaming(*, train_path: Path, val_path: Path, test_path: Path, schema: Schema, model_name: str,
                           out: Path, config: TrainConfig, model_overrides: Mapping[str, Any] | None = None,
                           calibration: CalibrationMethod = "isotonic", progress: bool = True) -> Bundle:
    """Like `train_bundle`, for training data larger than memory: the training Parquet file (or folder) is
    read row group by row group every epoch, shuffled through a bounded buffer; feature statistics come
    from one streaming pass. Validation and test come as their own (smaller) files, held in memory."""
    stats = FeatureStats.fit_batches(_record_batches(train_path, columns=[f.name for f in schema.dense]), schema)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(train_path))
    stream = BatchStream(
        batches=lambda epoch: iter_batches(train_path, schema, stats, batch_size=config.batch_size, shuffle=True,
                                           seed=config.seed * 1_000_003 + epoch),
        rows=rows)
    val, test = read_table(val_path, schema=schema), read_table(test_path, schema=schema)
    validate(val, schema, source=str(val_path))
    validate(test, schema, source=str(test_path))
    return _train_and_package(
        train=stream, train_rows=rows, val=val, test=test, schema=schema, stats=stats, model_name=model_name,
        out=out, config=config, model_overrides=model_overrides, calibration=calibration, progress=progress,
        extra_config={"streaming": True, "train": str(train_path), "validation": str(val_path),
                      "test": str(test_path)})


def _train_and_package(*, train: EncodedBatch | BatchStream, train_rows: int, val: pa.Table, test: pa.Table,
                       schema: Schema, stats: FeatureStats, model_name: str, out: Path, config: TrainConfig,
                       model_overrides: Mapping[str, Any] | None, calibration: CalibrationMethod, progress: bool,
                       extra_config: Mapping[str, Any],
                       on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> Bundle:
    """Shared by both jobs: train, then package."""
    model = new_model(model_name, schema=schema, seed=config.seed, overrides=model_overrides)
    trainer = Trainer(model, config, checkpoint_dir=out / "checkpoints", progress=progress)
    result = trainer.fit(train, encode(val, schema, stats), on_epoch_end=on_epoch_end)
    return package_bundle(model, result, model_name=model_name, schema=schema, stats=stats, val=val, test=test,
                          train_rows=train_rows, out=out, config=config, calibration=calibration,
                          extra_config=extra_config)


def package_bundle(model: MultiTaskModel, result: TrainResult, *, model_name: str, schema: Schema,
                   stats: FeatureStats, val: pa.Table, test: pa.Table, train_rows: int, out: Path,
                   config: TrainConfig, calibration: CalibrationMethod, extra_config: Mapping[str, Any]) -> Bundle:
    """A trained model (its best weights loaded) -> calibrated on validation, evaluated on test, saved to `out`."""
    bundle = Bundle(model_name=model_name, model=model, schema=schema, stats=stats,
                    train_config={**asdict(config), **extra_config, "calibration": calibration})
    bundle.calibrators = fit_calibrators(bundle, val, method=calibration)
    bundle.metrics = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "monitor": config.monitor,
        "best_value": result.best_value,  # of the monitored validation quantity, at best_epoch
        "rows": {"train": train_rows, "validation": val.num_rows, "test": test.num_rows},
        "validation": evaluate_bundle(bundle, val),
        "test": evaluate_bundle(bundle, test),
        "test_uncalibrated": evaluate_bundle(bundle, test, calibrated=False),
    }
    save_bundle(bundle, out)
    (out / METRICS_FILE).write_text(json.dumps(bundle.metrics, indent=2) + "\n")
    return bundle


def fine_tune(bundle: Bundle, data: Source, *, config: TrainConfig, calibration: CalibrationMethod = "isotonic",
              validation_fraction: float = 0.2) -> Bundle:
    """Continue training a copy of `bundle`'s model on new data (warm start), then recalibrate; in memory.

    The feature statistics stay the bundle's, so inputs are encoded exactly as the model was trained on;
    the data is split by group into training and `validation_fraction` for early stopping and the new
    calibrators. The returned bundle is versioned `<old version>+ft<rows>` until saved. This is how a
    policy retrains on its own impressions inside a simulation (experiments/policies/engine.py).
    """
    schema = bundle.schema
    table = read_table(data, schema=schema)
    validate(table, schema, source=str(data) if isinstance(data, str | Path) else "data")
    train, val, _ = split_by_group(table, schema, fractions=(1.0 - validation_fraction, validation_fraction, 0.0),
                                   seed=config.seed)
    if train.num_rows == 0 or val.num_rows == 0:
        raise ValueError(f"fine_tune: received {table.num_rows} rows, which split into {train.num_rows} training and "
                         f"{val.num_rows} validation rows; expected both non-empty. Pass more data")
    torch.manual_seed(config.seed)
    model = copy.deepcopy(bundle.model)
    Trainer(model, config, progress=False).fit(encode(train, schema, bundle.stats), encode(val, schema, bundle.stats))
    tuned = Bundle(model_name=bundle.model_name, model=model.eval(), schema=schema, stats=bundle.stats,
                   train_config={**bundle.train_config, "fine_tuned": asdict(config)},
                   version=f"{bundle.version}+ft{table.num_rows}")
    tuned.calibrators = fit_calibrators(tuned, val, method=calibration)
    tuned.metrics = {"fine_tune_rows": {"train": train.num_rows, "validation": val.num_rows},
                     "validation": evaluate_bundle(tuned, val)}
    return tuned


def fit_calibrators(bundle: Bundle, val: pa.Table, *, method: CalibrationMethod) -> dict[str, Calibrator]:
    """One calibrator per binary head, fitted on its (masked) validation rows; heads with one class are skipped."""
    if method == "none":
        return {}
    raw = bundle.predict(val, calibrated=False)
    calibrators: dict[str, Calibrator] = {}
    for head in bundle.schema.heads:
        if head.kind != "binary":
            continue
        labels = np.asarray(val.column(head.label).to_numpy(zero_copy_only=False), dtype=np.float64)
        rows = _mask(val, head.mask)
        if len(np.unique(labels[rows])) < 2:
            continue  # nothing to calibrate against; the head keeps raw probabilities
        calibrators[head.name] = fit_calibrator(method, raw[head.name][rows], labels[rows])
    return calibrators


def evaluate_bundle(bundle: Bundle, table: pa.Table, *, calibrated: bool = True) -> dict[str, dict[str, float]]:
    """Per-head metrics of the bundle's predictions on a labelled table, keyed by head name."""
    predictions = bundle.predict(table, calibrated=calibrated)
    labels = {h.name: np.asarray(table.column(h.label).to_numpy(zero_copy_only=False), dtype=np.float64)
              for h in bundle.schema.heads}
    masks = {h.name: _mask(table, h.mask) for h in bundle.schema.heads}
    return evaluate_heads(bundle.schema.heads, labels=labels, predictions=predictions, masks=masks)


def _record_batches(path: Path, *, columns: list[str]) -> Iterator[pa.RecordBatch]:
    for file in parquet_files(path):
        yield from pq.ParquetFile(file).iter_batches(columns=columns)


def _mask(table: pa.Table, column: str | None) -> np.ndarray:
    if column is None:
        return np.ones(table.num_rows, dtype=bool)
    return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64) > 0
