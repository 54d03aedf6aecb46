"""Shared-Bottom multi-task model: one MLP shared by every task, one tower per task.

Caruana, "Multitask Learning", Machine Learning 28, 1997 (hard parameter sharing). It is the
baseline MMoE and PLE are measured against: every task reads the same representation, so tasks
that disagree pull the bottom in different directions (negative transfer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from mtl.models.blocks import MLP, MultiTaskModel, Tower, check_dropout, check_heads, check_hidden, check_inputs
from mtl.spec import HeadSpec, InputSpec


@dataclass(frozen=True)
class SharedBottomConfig:
    inputs: InputSpec
    heads: tuple[HeadSpec, ...]
    bottom_hidden: tuple[int, ...] = (128, 64)  # the shared MLP
    tower_hidden: tuple[int, ...] = (32,)  # each head's MLP before its output layer
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_inputs(self.inputs)
        check_heads(self.heads)
        check_hidden("bottom_hidden", self.bottom_hidden, allow_empty=False)
        check_hidden("tower_hidden", self.tower_hidden, allow_empty=True)
        check_dropout(self.dropout)


class SharedBottom(MultiTaskModel):
    def __init__(self, config: SharedBottomConfig) -> None:
        super().__init__(config)
        self.config = config
        self.bottom = MLP(in_dim=config.inputs.width, hidden=config.bottom_hidden, dropout=config.dropout)
        self.towers = nn.ModuleList(
            Tower(in_dim=self.bottom.out_dim, hidden=config.tower_hidden, dropout=config.dropout, out_dim=h.output_dim)
            for h in config.heads
        )

    def forward(
        self,
        *,
        dense: Tensor,
        categorical: Tensor,
        labels: Mapping[str, Tensor] | None = None,
        masks: Mapping[str, Tensor] | None = None,
        task_weights: Mapping[str, float] | None = None,
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        # B batch, D input width, H bottom width
        x: Tensor = self.input_layer(dense, categorical)  # (B, D)
        shared: Tensor = self.bottom(x)  # (B, H)
        outputs = {h.name: tower(shared) for h, tower in zip(self.heads, self.towers, strict=True)}  # (B, out_h)
        if labels is None:
            return outputs, None
        return outputs, self.loss(outputs, labels=labels, masks=masks, task_weights=task_weights)
