"""Model bundle: everything serving needs to turn feature rows into calibrated head predictions.

A bundle is a directory:

    model.pt       the model's state_dict (tensors only; loaded with torch.load(weights_only=True))
    bundle.json    format, model name and architecture, schema (+ fingerprint), feature statistics,
                   calibrators per binary head, metrics, training config, ecorank version, and the
                   content hash of both files

Loading never executes pickled code, checks the content hash, and refuses a bundle whose schema
differs from the one the caller expects.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from mtl.calibration import Calibrator, calibrator_from_dict
from mtl.data import DataError, FeatureStats, Source, encode_features, read_table
from mtl.losses import predict_head
from mtl.models import build_model
from mtl.models.blocks import MultiTaskModel
from mtl.schema import Schema

FORMAT = "ecorank-mtl-bundle/1"
WEIGHTS = "model.pt"
MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle is missing, corrupt, tampered with, or does not match the expected schema."""


@dataclass
class Bundle:
    model_name: str
    model: MultiTaskModel
    schema: Schema
    stats: FeatureStats
    calibrators: dict[str, Calibrator] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # content hash, set when saved or loaded

    def predict(self, data: Source, *, calibrated: bool = True, threads: int | None = None,
                batch_size: int = 65_536) -> dict[str, NDArray[np.float64]]:
        """Per-head predictions for the rows of `data` (Parquet/CSV path, pyarrow Table, DataFrame, dict).

        Binary heads give probabilities (calibrated unless `calibrated=False`), ZILN heads expected
        amounts, regression heads values. Runs under torch.inference_mode; `threads` sets
        torch's intra-op threads for the call (restored afterwards).
        """
        table = read_table(data, schema=self.schema, features_only=True)
        dense, categorical = encode_features(table, self.schema, self.stats)
        return self._forward(dense, categorical, calibrated=calibrated, threads=threads, batch_size=batch_size)

    def predict_dense(self, features: NDArray[np.floating[Any]], *, calibrated: bool = True,
                      threads: int | None = None) -> dict[str, NDArray[np.float64]]:
        """`predict` for a (N, n_dense) matrix in schema order, without building a table (the serving path).

        Same transforms, standardization and calibration as `predict` (bit-identical results, tested); only
        for schemas without categorical features. Raises DataError for log1p features at or below -1.
        """
        if self.schema.categorical:
            raise BundleError(f"predict_dense: bundle {self.version} has categorical features "
                              f"{[c.name for c in self.schema.categorical]}; use predict() with a table")
        n_dense = len(self.schema.dense)
        if features.ndim != 2 or features.shape[1] != n_dense:
            raise DataError([f"features: received shape {features.shape}; expected (rows, {n_dense}) in the "
                             f"order {[d.name for d in self.schema.dense]}"], source="predict_dense")
        x = np.asarray(features, dtype=np.float64)
        if not np.isfinite(x).all():
            row, col = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
            raise DataError([f"dense feature {self.schema.dense[col].name!r}: received {x[row, col]} at row {row}; "
                             "expected finite values. Impute missing values first"], source="predict_dense")
        log = [j for j, d in enumerate(self.schema.dense) if d.transform == "log1p"]
        if log:
            block = x[:, log]
            bad = block <= -1
            if bad.any():
                problems = []
                for k in np.flatnonzero(bad.any(axis=0)):
                    rows = np.flatnonzero(bad[:, k])
                    name = self.schema.dense[log[k]].name
                    problems.append(f"dense feature {name!r}: received {block[rows[0], k]} at row {int(rows[0])} "
                                    f"({len(rows)} offending rows of {len(x)}); expected values > -1 for "
                                    'transform = "log1p"')
                raise DataError(problems, source="predict_dense")
            x = x.copy()
            x[:, log] = np.log1p(block)
        self.stats.check(self.schema)
        dense = (x - np.asarray(self.stats.mean)) / np.asarray(self.stats.std)  # (N, n_dense)
        return self._forward(torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
                             torch.zeros((len(x), 0), dtype=torch.int64), calibrated=calibrated, threads=threads)

    def _forward(self, dense: torch.Tensor, categorical: torch.Tensor, *, calibrated: bool, threads: int | None,
                 batch_size: int = 65_536) -> dict[str, NDArray[np.float64]]:
        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            if self.model.training:  # eval() walks every module: 0.3 ms a call on the MMoE
                self.model.eval()
            parts: dict[str, list[NDArray[np.float64]]] = {h.name: [] for h in self.model.heads}
            with torch.inference_mode():
                for start in range(0, len(dense), batch_size):
                    outputs, _ = self.model(dense=dense[start: start + batch_size],
                                            categorical=categorical[start: start + batch_size])
                    for head in self.model.heads:
                        parts[head.name].append(predict_head(head, outputs[head.name]).double().numpy())
        finally:
            torch.set_num_threads(previous)
        predictions = {name: np.concatenate(chunks) if chunks else np.zeros(0) for name, chunks in parts.items()}
        if calibrated:
            for name, calibrator in self.calibrators.items():
                predictions[name] = calibrator.transform(predictions[name])
        return predictions


def save_bundle(bundle: Bundle, path: Path) -> str:
    """Write the bundle directory (atomically per file); return its version (content hash)."""
    path.mkdir(parents=True, exist_ok=True)
    torch.save(bundle.model.state_dict(), path / (WEIGHTS + ".tmp"))
    (path / (WEIGHTS + ".tmp")).replace(path / WEIGHTS)
    manifest = {
        "format": FORMAT,
        "model": {"name": bundle.model_name, "architecture": _architecture(bundle.model)},
        "schema": bundle.schema.to_dict(),
        "schema_fingerprint": bundle.schema.fingerprint(),
        "feature_stats": bundle.stats.to_dict(),
        "calibration": {name: c.to_dict() for name, c in bundle.calibrators.items()},
        "metrics": bundle.metrics,
        "train_config": bundle.train_config,
        "ecorank_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest["version"] = _content_hash(path / WEIGHTS, manifest)
    (path / (MANIFEST + ".tmp")).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (path / (MANIFEST + ".tmp")).replace(path / MANIFEST)
    bundle.version = str(manifest["version"])
    return bundle.version


def load_bundle(path: Path, *, expected_schema: Schema | None = None) -> Bundle:
    """Load and verify a bundle; with `expected_schema`, refuse one trained on a different schema."""
    manifest_path, weights_path = path / MANIFEST, path / WEIGHTS
    if not manifest_path.is_file() or not weights_path.is_file():
        raise BundleError(f"{path} is not a model bundle: expected {MANIFEST} and {WEIGHTS} in it. "
                          "Create one with `ecorank train ... --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"{manifest_path} is not valid JSON ({err}); the bundle is corrupt, re-export it") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: received bundle format {manifest.get('format')!r}; expected {FORMAT!r}")
    recorded = manifest.pop("version", None)
    actual = _content_hash(weights_path, manifest)
    if recorded != actual:
        raise BundleError(f"{path}: content hash {actual} does not match the recorded version {recorded}; the "
                          "weights or manifest changed after export. Re-export the bundle")
    schema = Schema.from_dict(manifest["schema"])
    if expected_schema is not None and expected_schema.fingerprint() != schema.fingerprint():
        raise BundleError(
            f"{path} was trained on schema {schema.name!r} (fingerprint {schema.fingerprint()[:12]}); expected "
            f"{expected_schema.name!r} (fingerprint {expected_schema.fingerprint()[:12]}). Features or heads "
            "differ: retrain on the expected schema or pass the bundle's own schema")
    model = build_model(manifest["model"]["name"], inputs=schema.input_spec(), heads=schema.heads,
                        overrides=manifest["model"]["architecture"])
    state = torch.load(weights_path, weights_only=True)  # tensors only: never executes pickled code
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BundleError(f"{weights_path} does not fit the recorded architecture: {err}") from None
    model.eval()
    return Bundle(model_name=manifest["model"]["name"], model=model, schema=schema,
                  stats=FeatureStats.from_dict(manifest["feature_stats"]),
                  calibrators={k: calibrator_from_dict(v) for k, v in manifest["calibration"].items()},
                  metrics=manifest["metrics"], train_config=manifest["train_config"], version=str(recorded))


def _architecture(model: MultiTaskModel) -> dict[str, Any]:
    """The model config's knobs (everything but inputs and heads, which the schema determines)."""
    config = asdict(model.config)  # type: ignore[call-overload]
    config.pop("inputs")
    config.pop("heads")
    result: dict[str, Any] = json.loads(json.dumps(config))  # tuples -> lists, as JSON will return them
    return result


def _content_hash(weights: Path, manifest: dict[str, Any]) -> str:
    digest = hashlib.sha256(weights.read_bytes())
    digest.update(json.dumps(manifest, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _version() -> str:
    try:
        return metadata.version("ecorank")
    except metadata.PackageNotFoundError:
        return "unknown"
