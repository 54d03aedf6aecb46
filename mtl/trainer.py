"""Training loop for the multi-task models: AdamW, warm-up + cosine schedule, early stopping, exact resume.

Determinism: the model is built after `torch.manual_seed(config.seed)` by the caller (`train_model`
does it), each epoch's shuffle comes from its own generator seeded by (seed, epoch), and the global
RNG (dropout) is saved in every checkpoint. So a run killed after epoch k and resumed from its
checkpoint ends with exactly the weights of an uninterrupted run (tests/mtl/test_trainer.py).

Checkpoints are plain tensors and numbers saved with `torch.save` and loaded with
`torch.load(weights_only=True)`: resuming never executes pickled code.

Data-parallel training (`ecorank train --ray-workers N`, experiments/scale/train.py) runs this same loop in
every worker with a `DataParallel`: each replica steps on its own shard, gradients are averaged across
replicas before the optimizer step, and rank 0 alone validates and decides early stopping for all.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from mtl.data import EncodedBatch
from mtl.losses import predict_head
from mtl.models.blocks import MultiTaskModel
from mtl.weighting import TaskWeighting, WeightingMethod, pcgrad

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
# Metrics where higher is better; every other monitored quantity is minimized.
HIGHER_IS_BETTER = frozenset({"auc", "auc_purchase", "normalized_gini", "spearman"})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    schedule: Literal["cosine", "constant"] = "cosine"
    task_weighting: WeightingMethod = "equal"
    task_weights: tuple[tuple[str, float], ...] = ()  # for "fixed": (head, weight) pairs
    monitor: str = "loss"  # validation "loss" (equal-weighted sum of head losses) or "<head>.<metric>"
    patience: int = 3  # epochs without improvement of `monitor` before stopping
    grad_clip: float | None = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} = {getattr(self, name)}; expected an integer >= 1")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr = {self.lr}; expected a positive learning rate")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("TrainConfig.warmup_steps and weight_decay must be >= 0; received "
                             f"{self.warmup_steps} and {self.weight_decay}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig.schedule = {self.schedule!r}; expected 'cosine' or 'constant'")


@dataclass(frozen=True)
class BatchStream:
    """Training data that does not fit in memory: `batches(epoch)` reads it afresh each epoch (e.g.
    `mtl.data.iter_batches` over Parquet row groups, shuffled with a per-epoch seed); `rows` sizes the
    learning-rate schedule."""

    batches: Callable[[int], Iterable[EncodedBatch]]
    rows: int


@dataclass(frozen=True)
class DataParallel:
    """This process as replica `rank` of `world_size` data-parallel replicas; torch.distributed is initialized
    (Ray Train does it). `module` is the model wrapped in DistributedDataParallel, which averages the model's
    gradients during backward; the rest (task-weighting parameters, PCGrad's per-task gradients, the train
    loss, the stop decision) goes through the collectives below."""

    module: nn.Module
    rank: int
    world_size: int

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: Tensor) -> None:
        """In place: the element-wise sum over all replicas."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def mean_(self, tensor: Tensor) -> None:
        """In place: the element-wise mean over all replicas."""
        self.sum_(tensor)
        tensor /= self.world_size

    def from_chief(self, flag: bool) -> bool:
        """Rank 0's `flag` on every replica, so all of them stop after the same epoch."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.broadcast(value, src=0)
        return bool(value.item())


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def monitor_direction(monitor: str) -> Literal["min", "max"]:
    metric = monitor.rsplit(".", 1)[-1]
    return "max" if metric in HIGHER_IS_BETTER else "min"


class Trainer:
    """Fits one model on encoded train data, validating every epoch; `checkpoint_dir` enables resume.

    With `parallel`, this process is one data-parallel replica: it trains on its own data, and only rank 0
    validates, keeps the history and the best weights, and returns a meaningful TrainResult."""

    def __init__(self, model: MultiTaskModel, config: TrainConfig, *, checkpoint_dir: Path | None = None,
                 progress: bool = True, parallel: DataParallel | None = None) -> None:
        self.model = model
        self.config = config
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.parallel = parallel
        self.is_chief = parallel is None or parallel.is_chief
        self.weighting = TaskWeighting(heads=[h.name for h in model.heads], method=config.task_weighting,
                                       fixed=dict(config.task_weights))
        # Weight decay on the model only: uncertainty log-variances are free parameters.
        self.optimizer = torch.optim.AdamW([
            {"params": list(model.parameters()), "weight_decay": config.weight_decay},
            {"params": list(self.weighting.parameters()), "weight_decay": 0.0},
        ], lr=config.lr)
        self.direction = monitor_direction(config.monitor)

    # ------------------------------------------------------------------------------------------
    def fit(self, train: EncodedBatch | BatchStream, val: EncodedBatch, *,
            on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
        """Train for up to config.epochs, resuming from the checkpoint in `checkpoint_dir` if there is one.

        `train` is encoded tensors in memory, or a BatchStream for data larger than memory. A data-parallel
        replica passes its own shard as a BatchStream whose `rows` counts every replica's rows, with
        config.batch_size the global batch, so the learning-rate schedule is the one of a single process.
        """
        cfg = self.config
        rows = train.rows if isinstance(train, BatchStream) else len(train)
        steps_per_epoch = math.ceil(rows / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _schedule(cfg, total_steps=cfg.epochs * steps_per_epoch))
        state = _FitState(best_value=math.inf if self.direction == "min" else -math.inf)
        if self.checkpoint_dir is not None and (self.checkpoint_dir / CHECKPOINT).exists():
            state = self._restore(scheduler)
        bar = tqdm(total=cfg.epochs, initial=state.epoch, desc="train", unit="epoch", disable=not self.progress,
                   leave=False)
        for epoch in range(state.epoch, cfg.epochs):
            train_loss = self._train_epoch(train, epoch, scheduler)
            stop = self._end_epoch(epoch, train_loss, val, state, scheduler, on_epoch_end) if self.is_chief else False
            if self.parallel is not None:
                stop = self.parallel.from_chief(stop)
            bar.update(1)
            if state.history:
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{state.history[-1]['loss']:.4f}")
            if stop:
                break
        bar.close()
        if state.best_model is not None:
            self.model.load_state_dict(state.best_model)
        return TrainResult(best_epoch=state.best_epoch, best_value=state.best_value, history=state.history,
                           stopped_early=state.stopped_early)

    def _end_epoch(self, epoch: int, train_loss: float, val: EncodedBatch, state: _FitState,
                   scheduler: torch.optim.lr_scheduler.LambdaLR,
                   on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> bool:
        """Validate, keep the best weights, checkpoint; True when early stopping says stop."""
        cfg = self.config
        row: dict[str, float] = {"epoch": float(epoch), "train_loss": train_loss,
                                 "lr": float(scheduler.get_last_lr()[0]),
                                 **{f"weight.{k}": v for k, v in self.weighting.weights().items()}}
        row.update(self.evaluate(val))
        state.history.append(row)
        value = row[cfg.monitor] if cfg.monitor in row else _missing_monitor(cfg.monitor, row)
        if _improved(value, state.best_value, self.direction):
            state.best_value, state.best_epoch, state.stale = value, epoch, 0
            state.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            state.stale += 1
        state.epoch = epoch + 1
        stop = state.stale >= cfg.patience
        state.stopped_early = stop and state.epoch < cfg.epochs
        self._save(state, scheduler)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        return stop

    def _train_epoch(self, train: EncodedBatch | BatchStream, epoch: int,
                     scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
        cfg = self.config
        self.model.train()
        # The DDP wrapper averages gradients in backward. PCGrad needs each task's gradient averaged before
        # its surgery instead, which one averaged gradient cannot give: it runs the bare model and averages
        # the per-task gradients itself (_pcgrad_backward).
        forward = self.parallel.module if self.parallel is not None and cfg.task_weighting != "pcgrad" else self.model
        total, rows = 0.0, 0
        for batch in self._epoch_batches(train, epoch):
            outputs, _ = forward(dense=batch.dense, categorical=batch.categorical)
            losses = self.model.head_losses(outputs, labels=batch.labels, masks=batch.masks)
            self.optimizer.zero_grad(set_to_none=True)
            if cfg.task_weighting == "pcgrad":
                self._pcgrad_backward(losses, step=scheduler.last_epoch)
            else:
                self.weighting(losses).backward()
                if self.parallel is not None and self.weighting.log_vars.grad is not None:
                    self.parallel.mean_(self.weighting.log_vars.grad)  # outside DDP: average by hand
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            scheduler.step()
            total += float(torch.stack(list(losses.values())).sum().detach()) * len(batch)
            rows += len(batch)
        if self.parallel is not None:  # the train loss over every replica's rows
            sums = torch.tensor([total, float(rows)], dtype=torch.float64)
            self.parallel.sum_(sums)
            total, rows = float(sums[0]), int(sums[1])
        return total / max(rows, 1)

    def _epoch_batches(self, train: EncodedBatch | BatchStream, epoch: int) -> Iterable[EncodedBatch]:
        if isinstance(train, BatchStream):
            yield from train.batches(epoch)
            return
        cfg = self.config
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        for start in range(0, len(train), cfg.batch_size):
            yield _rows(train, order[start: start + cfg.batch_size])

    def _pcgrad_backward(self, losses: Mapping[str, Tensor], *, step: int) -> None:
        """Set .grad of every model parameter to the PCGrad combination of the per-head gradients."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        flat = []
        for loss in losses.values():  # T backward passes: PCGrad costs about T times a plain step
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                   for g, p in zip(grads, params, strict=True)]))
        stacked = torch.stack(flat)  # (T, P)
        if self.parallel is not None:
            self.parallel.mean_(stacked)  # each task's gradient over the global batch, as in one process
        # The projection order is random, from a generator seeded per (seed, step): runs stay reproducible
        # (and every replica draws the same order, so their combined gradients agree).
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        combined = pcgrad(stacked, generator=generator)  # (P,)
        offset = 0
        for p in params:
            p.grad = combined[offset: offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    @torch.inference_mode()
    def evaluate(self, data: EncodedBatch, *, batch_size: int = 8192) -> dict[str, float]:
        """Validation loss (equal-weighted sum of head losses) and per-head metrics as "<head>.<metric>"."""
        from mtl.metrics import HEAD_METRIC_NAMES, evaluate_heads

        self.model.eval()
        outputs: dict[str, list[Tensor]] = {h.name: [] for h in self.model.heads}
        for start in range(0, len(data), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(data)))
            batch = _rows(data, idx)
            out, _ = self.model(dense=batch.dense, categorical=batch.categorical)
            for name, value in out.items():
                outputs[name].append(value)
        merged = {name: torch.cat(parts) for name, parts in outputs.items()}
        losses = self.model.head_losses(merged, labels=data.labels, masks=data.masks)
        result = {"loss": float(torch.stack(list(losses.values())).sum())}
        result.update({f"loss.{name}": float(value) for name, value in losses.items()})
        predictions = {h.name: predict_head(h, merged[h.name]).numpy() for h in self.model.heads}
        # A diverged model predicts inf/NaN: report NaN metrics for that head (never an improvement).
        finite = [h for h in self.model.heads if np.isfinite(predictions[h.name]).all()]
        metrics = evaluate_heads(finite, labels={k: v.numpy() for k, v in data.labels.items()},
                                 predictions=predictions, masks={k: v.numpy() for k, v in data.masks.items()})
        for head in self.model.heads:
            values = metrics.get(head.name, dict.fromkeys(HEAD_METRIC_NAMES[head.kind], math.nan))
            result.update({f"{head.name}.{metric}": float(value) for metric, value in values.items()})
        return result

    # ------------------------------------------------------------------------------------------
    def _save(self, state: _FitState, scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": self.model.state_dict(), "weighting": self.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(), "state": state.to_dict(), "best_model": state.best_model,
            "config": _jsonable(asdict(self.config)),
        }
        tmp = self.checkpoint_dir / (CHECKPOINT + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, self.checkpoint_dir / CHECKPOINT)  # atomic: a kill never leaves half a checkpoint
        (self.checkpoint_dir / HISTORY).write_text(json.dumps(state.history, indent=1))

    def _restore(self, scheduler: torch.optim.lr_scheduler.LambdaLR) -> _FitState:
        assert self.checkpoint_dir is not None
        payload = torch.load(self.checkpoint_dir / CHECKPOINT, weights_only=True)
        saved = payload["config"]
        if {k: v for k, v in saved.items() if k != "epochs"} != {
                k: v for k, v in _jsonable(asdict(self.config)).items() if k != "epochs"}:
            raise ValueError(f"the checkpoint in {self.checkpoint_dir} was made with a different TrainConfig "
                             f"({saved}); resume with the same settings (only epochs may grow) or use a new "
                             "checkpoint directory")
        self.model.load_state_dict(payload["model"])
        self.weighting.load_state_dict(payload["weighting"])
        self.optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"])
        return _FitState.from_dict(payload["state"], best_model=payload["best_model"])


@dataclass
class _FitState:
    epoch: int = 0
    best_epoch: int = -1
    best_value: float = math.inf
    stale: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    best_model: dict[str, Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_epoch": self.best_epoch, "best_value": self.best_value,
                "stale": self.stale, "stopped_early": self.stopped_early, "history": self.history}

    @staticmethod
    def from_dict(data: Mapping[str, Any], *, best_model: dict[str, Tensor] | None) -> _FitState:
        return _FitState(epoch=int(data["epoch"]), best_epoch=int(data["best_epoch"]),
                         best_value=float(data["best_value"]), stale=int(data["stale"]),
                         stopped_early=bool(data["stopped_early"]), history=list(data["history"]),
                         best_model=best_model)


def _rows(batch: EncodedBatch, idx: Tensor) -> EncodedBatch:
    return EncodedBatch(dense=batch.dense[idx], categorical=batch.categorical[idx],
                        labels={k: v[idx] for k, v in batch.labels.items()},
                        masks={k: v[idx] for k, v in batch.masks.items()})


def _schedule(config: TrainConfig, *, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then constant or cosine decay to 0 over the remaining steps."""

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _improved(value: float, best: float, direction: Literal["min", "max"]) -> bool:
    if not np.isfinite(value):
        return False
    return value < best if direction == "min" else value > best


def _missing_monitor(monitor: str, row: Mapping[str, float]) -> float:
    options = sorted(k for k in row if k not in ("epoch", "train_loss", "lr") and not k.startswith("weight."))
    raise ValueError(f"monitor {monitor!r} is not a validation quantity; expected 'loss' or one of {options}")


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """asdict() keeps tuples; a loaded checkpoint has lists. Compare like with like."""
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result
