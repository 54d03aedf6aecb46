"""The model sweep, without Ray: its search space, one trial's training, and the results table.

A trial trains one multi-task model (type, experts, levels, widths, learning rate, task weighting drawn
from `SPACE`) on impressions with `mtl.train.train_bundle`, reports the validation loss after every epoch
(ASHA stops the unpromising ones early) and saves its bundle. `experiments/tune/ray_adapter.py` runs the
trials on Ray Tune; everything here is plain Python and runs without Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl.bundle import Bundle

# The search space as plain data: a list is a categorical choice, ("loguniform", low, high) a continuous one.
SPACE: dict[str, Any] = {
    "model": ["mmoe", "ple", "shared_bottom"],
    "n_experts": [2, 4, 8],  # MMoE experts; PLE shared experts
    "levels": [1, 2],  # PLE extraction levels (1 = CGC)
    "width": [32, 64, 128],  # expert width (MMoE, PLE) or the bottom's last width (shared bottom)
    "lr": ("loguniform", 1e-3, 1e-2),
    "task_weighting": ["equal", "uncertainty"],
}


@dataclass(frozen=True)
class ModelSweep:
    data: Path  # impressions: a Parquet file or a folder of them
    samples: int = 12  # trials
    epochs: int = 8  # at most, per trial
    grace_epochs: int = 2  # ASHA never stops a trial before this many epochs
    batch_size: int = 1024
    seed: int = 0
    schema: str = "ecorank"

    @classmethod
    def smoke(cls, data: Path) -> ModelSweep:
        """Two trials of two epochs: the whole path, in seconds (`--smoke-test`, CI)."""
        return cls(data=data, samples=2, epochs=2, grace_epochs=1, batch_size=512)


def model_of(params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A trial's parameters -> (model name, model overrides for `mtl.models.build_model`)."""
    name, width = str(params["model"]), int(params["width"])
    if name == "mmoe":
        return name, {"n_experts": int(params["n_experts"]), "expert_hidden": (width,)}
    if name == "ple":
        return name, {"n_shared_experts": int(params["n_experts"]), "levels": int(params["levels"]),
                      "expert_hidden": (width,)}
    return name, {"bottom_hidden": (2 * width, width)}


def train_trial(params: Mapping[str, Any], sweep: ModelSweep, out: Path,
                report: Callable[[int, dict[str, float]], None]) -> Bundle:
    """Train the trial's model, calling `report(epoch, validation row)` after each epoch; save the bundle."""
    from mtl.schema import load_schema
    from mtl.train import train_bundle
    from mtl.trainer import TrainConfig

    name, overrides = model_of(params)
    config = TrainConfig(epochs=sweep.epochs, batch_size=sweep.batch_size, lr=float(params["lr"]),
                         task_weighting=params["task_weighting"], patience=sweep.epochs, seed=sweep.seed)
    return train_bundle(data=sweep.data, schema=load_schema(sweep.schema), model_name=name, out=out, config=config,
                        model_overrides=overrides, progress=False, on_epoch_end=report)
