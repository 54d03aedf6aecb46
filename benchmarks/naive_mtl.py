"""The "what not to do" baseline for `benchmarks/mtl.py`: a naive but correct MTL training and inference path.

It uses the same model classes (SharedBottom, MMoE, PLE) with the same parameters, and differs from the
`mtl` path in exactly three ways, each a common habit that costs time and buys nothing:

(a) experts run one at a time: `naive_copy` swaps every `BatchedExperts` for a `LoopExperts`, whose
    forward is `BatchedExperts.forward_loop` (E small matmuls and E Python iterations per layer instead
    of one batched matmul). Only the copy changes; no class or global is patched.
(b) data goes through a per-row `torch.utils.data.Dataset` that returns one example at a time as a dict
    of tensors, batched by `DataLoader(batch_size=...)` with the default `collate_fn`, which indexes
    every row and stacks every field (B x 10 tensor indexings and 10 `torch.stack` calls per batch for
    the ecorank schema) instead of slicing the encoded tensors.
(c) predictions are gathered with `.tolist()` into Python lists of floats, then turned into numpy.

Everything else (optimizer, loss, train/eval modes, `torch.inference_mode`) is the same, so the ratios
`benchmarks/mtl.py` prints measure these three choices alone. Never use this module outside benchmarks.
"""

from __future__ import annotations

import copy
from typing import Any, TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mtl.data import EncodedBatch
from mtl.models import MultiTaskModel
from mtl.models.blocks import BatchedExperts

__all__ = ["LoopExperts", "Row", "RowDataset", "naive_copy", "naive_loader", "naive_predict", "naive_train_step"]

# One example as the Dataset returns it, and a batch as the default collate_fn builds it (the same keys,
# each tensor with a leading batch dimension): {"dense", "categorical", "labels": {head}, "masks": {head}}.
Row: TypeAlias = dict[str, Any]


class LoopExperts(BatchedExperts):
    """BatchedExperts computed one expert at a time (`forward_loop`); same parameters, same outputs."""

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_loop(x)  # (B, D) -> (B, E, H)

    @classmethod
    def like(cls, experts: BatchedExperts) -> LoopExperts:
        """A LoopExperts of the same shape as `experts`, holding a copy of its parameters."""
        hidden = tuple(int(w.shape[2]) for w in experts.weights)  # each weight is (E, I, O)
        loop = cls(n_experts=experts.n_experts, in_dim=int(experts.weights[0].shape[1]), hidden=hidden,
                   dropout=experts.dropout.p)
        loop.load_state_dict(experts.state_dict())
        return loop


def naive_copy(model: MultiTaskModel) -> MultiTaskModel:
    """A deep copy of `model` with every BatchedExperts replaced by an equal LoopExperts; `model` is untouched."""
    naive = copy.deepcopy(model)
    names = [name for name, module in naive.named_modules() if isinstance(module, BatchedExperts)]
    for name in names:
        parent, _, child = name.rpartition(".")  # e.g. "levels.0.task_experts" and "2"
        experts = naive.get_submodule(name)
        assert isinstance(experts, BatchedExperts)
        setattr(naive.get_submodule(parent), child, LoopExperts.like(experts))  # ModuleList keys are "0", "1", ...
    return naive


class RowDataset(Dataset[Row]):
    """One example at a time, as a dict of 0-d / 1-d tensors (the per-sample style to avoid)."""

    def __init__(self, data: EncodedBatch) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Row:
        return {
            "dense": self.data.dense[index],  # (n_dense,)
            "categorical": self.data.categorical[index],  # (n_categorical,)
            "labels": {head: values[index] for head, values in self.data.labels.items()},  # head -> ()
            "masks": {head: values[index] for head, values in self.data.masks.items()},  # head -> ()
        }


def naive_loader(data: EncodedBatch, *, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader[Row]:
    """DataLoader over RowDataset with the default collate_fn, in the main process (num_workers=0)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(RowDataset(data), batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                      generator=generator)


def naive_train_step(model: MultiTaskModel, batch: Row, optimizer: torch.optim.Optimizer) -> float:
    """One optimizer step on a collated batch; returns the loss as a float (benchmarks/mtl.py does the same)."""
    _, loss = model(dense=batch["dense"], categorical=batch["categorical"], labels=batch["labels"],
                    masks=batch["masks"])
    assert loss is not None  # labels were given
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def naive_predict(model: MultiTaskModel, candidates: EncodedBatch, *, batch_size: int) -> dict[str, NDArray[Any]]:
    """Per-head predictions (N,) for every candidate: rows collated by a DataLoader, gathered with .tolist()."""
    gathered: dict[str, list[float]] = {head.name: [] for head in model.heads}
    with torch.inference_mode():
        for batch in naive_loader(candidates, batch_size=batch_size, shuffle=False):
            predictions = model.predict(dense=batch["dense"], categorical=batch["categorical"])  # head -> (B,)
            for name, values in predictions.items():
                gathered[name].extend(values.tolist())
    return {name: np.asarray(values) for name, values in gathered.items()}
