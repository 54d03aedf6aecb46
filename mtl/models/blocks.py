"""Pieces shared by every multi-task model: input layer, MLP, batched experts, gate, tower, base class.

Dimensions used in shape comments: B batch, D input width (InputSpec.width), C categorical inputs,
E experts, H hidden width, T tasks (one per head).

`MultiTaskModel` is the contract every model honours (checked for all of them in
tests/mtl/test_models.py):

    outputs, loss = model(dense=..., categorical=..., labels=..., masks=..., task_weights=...)

`outputs[head.name]` is (B, head.output_dim) raw outputs; `loss` is the weighted sum of the per-head
losses of `mtl/losses.py` when labels are given, else None. Labels, masks and weights are keyed by
head name (not label column): the data layer resolves columns and `HeadSpec.mask` into per-head
tensors, so models never see column names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.losses import head_loss, predict_head
from mtl.spec import HEAD_KINDS, HeadSpec, InputSpec

__all__ = [
    "MLP",
    "BatchedExperts",
    "Gate",
    "InputLayer",
    "ModelConfig",
    "MultiTaskModel",
    "Tower",
    "check_dropout",
    "check_heads",
    "check_hidden",
    "check_inputs",
    "check_positive_int",
]


# --- config validation (called from each config's __post_init__) --------------------------------


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; received {value!r}.")


def check_hidden(name: str, value: object, *, allow_empty: bool) -> None:
    """Hidden layer widths: a tuple of positive ints (a list, e.g. from TOML, is rejected: configs are frozen)."""
    widths_ok = isinstance(value, tuple) and all(type(v) is int and v >= 1 for v in value)
    if not widths_ok or (not allow_empty and not value):
        expected = "a tuple of positive ints" + ("" if allow_empty else " with at least one layer")
        raise ValueError(f"{name} must be {expected}, e.g. (64,); received {value!r}.")


def check_dropout(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1); received {value!r}.")


def check_inputs(inputs: object) -> None:
    if not isinstance(inputs, InputSpec):
        raise ValueError(f"inputs must be an InputSpec; received {type(inputs).__name__}.")
    if inputs.width < 1:
        raise ValueError(f"inputs have width 0 ({inputs}); a model needs at least one dense or categorical input.")


def check_heads(heads: object) -> None:
    if not isinstance(heads, tuple) or not heads or not all(isinstance(h, HeadSpec) for h in heads):
        raise ValueError(f"heads must be a non-empty tuple of HeadSpec; received {heads!r}.")
    names = [h.name for h in heads]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"head names must be unique (outputs are keyed by name); duplicated: {duplicates}.")
    for h in heads:
        if h.kind not in HEAD_KINDS:
            raise ValueError(f"head {h.name!r} has kind {h.kind!r}; expected one of {list(HEAD_KINDS)}.")


class ModelConfig(Protocol):
    """What every model config provides, besides its architecture knobs."""

    @property
    def inputs(self) -> InputSpec: ...

    @property
    def heads(self) -> tuple[HeadSpec, ...]: ...


# --- blocks --------------------------------------------------------------------------------------


class InputLayer(nn.Module):
    """Dense floats plus one embedding per categorical input, concatenated: (B, D = spec.width)."""

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        check_inputs(spec)
        self.spec = spec
        self.embeddings = nn.ModuleList(nn.Embedding(c.buckets, c.embedding_dim) for c in spec.categorical)

    def forward(self, dense: Tensor, categorical: Tensor) -> Tensor:
        n_dense, n_cat = self.spec.n_dense, len(self.spec.categorical)
        batch = dense.shape[0] if dense.ndim >= 1 else -1
        if dense.ndim != 2 or dense.shape[1] != n_dense or not dense.is_floating_point():
            raise ValueError(
                f"dense has shape {tuple(dense.shape)} and dtype {dense.dtype}; expected (batch, {n_dense}) "
                f"floating point (InputSpec.n_dense = {n_dense}). Check the schema's dense columns."
            )
        if categorical.shape != (batch, n_cat) or categorical.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"categorical has shape {tuple(categorical.shape)} and dtype {categorical.dtype}; expected "
                f"({batch}, {n_cat}) int64 ids, one column per InputSpec.categorical entry "
                "(shape (batch, 0) when there are none)."
            )
        # Ids are trusted to lie in [0, buckets): checking would cost a device sync per step, and
        # nn.Embedding raises on an out-of-range id anyway.
        embedded = [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]  # C x (B, embedding_dim)
        return torch.cat([dense, *embedded], dim=1)  # (B, D)


class MLP(nn.Module):
    """Linear -> ReLU -> Dropout per hidden width; the identity when `hidden` is empty."""

    def __init__(self, *, in_dim: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = width
        self.net = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class BatchedExperts(nn.Module):
    """E expert MLPs of identical shape, computed together: (B, D) -> (B, E, H = hidden[-1]).

    Layer l holds weight (E, in_l, out_l) and bias (E, out_l), so all experts run as one batched
    matmul per layer instead of E small matmuls and E Python-level module calls.
    Each expert slice is initialised as nn.Linear would be: U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, *, n_experts: int, in_dim: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        check_positive_int("n_experts", n_experts)
        check_hidden("expert hidden", hidden, allow_empty=False)
        self.n_experts = n_experts
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width in hidden:
            bound = 1.0 / math.sqrt(in_dim)
            self.weights.append(nn.Parameter(torch.empty(n_experts, in_dim, width).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_experts, width).uniform_(-bound, bound)))
            in_dim = width
        self.out_dim = in_dim
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # B batch, D input width, E experts, I / O a layer's input / output width, H = last O.
        # Expert-major (E, B, .) inside, so each layer is one baddbmm (bias + batched matmul); it
        # measured 1.2-1.6x faster (forward + backward, CPU) than einsum "bi,eio->beo" / "bei,eio->beo".
        h: Tensor = x.expand(self.n_experts, *x.shape)  # (E, B, D), a view: no copy
        for w, b in zip(self.weights, self.biases, strict=True):
            h = torch.baddbmm(b.unsqueeze(1), h, w)  # (E, 1, O) + (E, B, I) @ (E, I, O) -> (E, B, O)
            h = self.dropout(F.relu(h))
        return h.transpose(0, 1)  # (B, E, H), a view

    def forward_loop(self, x: Tensor) -> Tensor:
        """Reference path: one expert at a time with the same parameters. For tests and benchmarks only."""
        outputs = []
        for e in range(self.n_experts):
            h = x  # (B, D)
            for w, b in zip(self.weights, self.biases, strict=True):
                h = self.dropout(F.relu(h @ w[e] + b[e]))  # (B, I) @ (I, O) -> (B, O)
            outputs.append(h)
        return torch.stack(outputs, dim=1)  # E x (B, H) -> (B, E, H)


class Gate(nn.Module):
    """Softmax mixture weights over experts: (B, D) -> (B, E), each row sums to 1.

    The linear layer keeps its bias: a learnable prior over experts, on top of the paper's softmax(W x).
    """

    def __init__(self, *, in_dim: int, n_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, n_experts)

    def forward(self, x: Tensor) -> Tensor:
        # softmax over dim 0 of the (E, B) transpose: the same numbers, but torch's CPU softmax over a short
        # last dim measured 0.08 ms at B = 1,000, E = 4, against 0.013 ms down the long one
        return torch.softmax(self.linear(x).t(), dim=0).t()  # (B, E), a view


def mix(weights: Tensor, experts: Tensor) -> Tensor:
    """The gate-weighted sum of expert outputs: (B, E) x (B, E, H) -> (B, H).

    Written out as E multiply-adds on (B, H) slices. At B = 1,000, E = 4, H = 64 on 1 thread: forward 0.09 ms
    against einsum("be,beh->bh")'s 0.39 (which lowers to a thousand tiny matmuls), forward + backward 0.71 ms
    against 1.54; a broadcast multiply and a sum over E measured 0.11 and 0.57.
    """
    out = weights[:, 0:1] * experts[:, 0]  # (B, 1) * (B, H) -> (B, H)
    for e in range(1, experts.shape[1]):
        out = torch.addcmul(out, weights[:, e : e + 1], experts[:, e])  # out + (B, 1) * (B, H)
    return out


class Tower(nn.Module):
    """A head's own MLP, then a Linear to its raw outputs: (B, H) -> (B, out_dim)."""

    def __init__(self, *, in_dim: int, hidden: tuple[int, ...], dropout: float, out_dim: int) -> None:
        super().__init__()
        self.mlp = MLP(in_dim=in_dim, hidden=hidden, dropout=dropout)
        self.out = nn.Linear(self.mlp.out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.mlp(x))  # type: ignore[no-any-return]


# --- base model ----------------------------------------------------------------------------------


class MultiTaskModel(nn.Module):
    """Base of every model: validated heads, the input layer, the loss. Subclasses write `forward`.

    `heads` are the tasks, in order: towers[i] (and gates[i] where there are per-task gates) belong
    to heads[i].
    """

    heads: tuple[HeadSpec, ...]
    towers: nn.ModuleList  # set by each subclass, one Tower per head

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        check_inputs(config.inputs)
        check_heads(config.heads)
        self.heads = config.heads
        self.input_layer = InputLayer(config.inputs)

    def forward(
        self,
        *,
        dense: Tensor,
        categorical: Tensor,
        labels: Mapping[str, Tensor] | None = None,
        masks: Mapping[str, Tensor] | None = None,
        task_weights: Mapping[str, float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        """dense (B, n_dense) float, categorical (B, C) int64 -> ({head: (B, output_dim)}, loss | None)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def head_losses(
        self,
        outputs: Mapping[str, Tensor],
        *,
        labels: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """One scalar loss per head. A head absent from `masks` (or masks=None) uses every row."""
        names = [h.name for h in self.heads]
        missing = [n for n in names if n not in labels]
        if missing:
            raise ValueError(
                f"labels lack heads {missing}; received keys {sorted(labels)}, expected one (B,) tensor per "
                f"head name in {names}."
            )
        masks = masks or {}
        unknown = sorted(set(masks) - set(names))
        if unknown:
            raise ValueError(f"masks name unknown heads {unknown}; heads are {names}.")
        return {
            h.name: head_loss(h, outputs=outputs[h.name], labels=labels[h.name], mask=masks.get(h.name))
            for h in self.heads
        }

    def loss(
        self,
        outputs: Mapping[str, Tensor],
        *,
        labels: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        task_weights: Mapping[str, float] | None = None,
    ) -> Tensor:
        """sum_h w_h * loss_h; weights default to 1.0 (task_weights=None or a head left out)."""
        losses = self.head_losses(outputs, labels=labels, masks=masks)
        task_weights = task_weights or {}
        unknown = sorted(set(task_weights) - set(losses))
        if unknown:
            raise ValueError(f"task_weights name unknown heads {unknown}; heads are {list(losses)}.")
        weighted = [task_weights.get(name, 1.0) * loss for name, loss in losses.items()]
        return torch.stack(weighted).sum()

    def predict(self, *, dense: Tensor, categorical: Tensor) -> dict[str, Tensor]:
        """Per-head predictions (B,): probability, value, or ZILN expected value (see `predict_head`)."""
        outputs: dict[str, Tensor] = self(dense=dense, categorical=categorical)[0]
        return {h.name: predict_head(h, outputs[h.name]) for h in self.heads}
