"""Progressive Layered Extraction (PLE) and its single level, Customized Gate Control (CGC).

Tang, Liu, Zhao & Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL)
Model for Personalized Recommendations", RecSys 2020.

MMoE lets every task mix every expert, so a task can still be dragged by experts tuned for another
(the "seesaw" phenomenon). CGC splits experts into shared ones and task-specific ones: task k's
gate mixes only [its own experts, shared experts]. PLE stacks CGC levels; at every level but the
last, a shared gate mixes ALL experts to form the next level's shared input, so task-specific
knowledge can flow into the shared branch progressively. The last level has no shared gate: nothing
reads its shared output.

Level 1 feeds the input vector to every branch; level j > 1 feeds task k's branch with task k's
output of level j-1 and the shared branch with the shared output of level j-1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtl.models.blocks import (
    BatchedExperts,
    Gate,
    MultiTaskModel,
    Tower,
    check_dropout,
    check_heads,
    check_hidden,
    check_inputs,
    check_positive_int,
    mix,
)
from mtl.spec import HeadSpec, InputSpec


@dataclass(frozen=True)
class PLEConfig:
    inputs: InputSpec
    heads: tuple[HeadSpec, ...]
    n_shared_experts: int = 2
    n_task_experts: int = 1  # per task
    expert_hidden: tuple[int, ...] = (64,)  # every expert at every level; levels > 1 read the last width
    levels: int = 2  # 1 = CGC
    tower_hidden: tuple[int, ...] = (32,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_inputs(self.inputs)
        check_heads(self.heads)
        check_positive_int("n_shared_experts", self.n_shared_experts)
        check_positive_int("n_task_experts", self.n_task_experts)
        check_hidden("expert_hidden", self.expert_hidden, allow_empty=False)
        check_positive_int("levels", self.levels)
        check_hidden("tower_hidden", self.tower_hidden, allow_empty=True)
        check_dropout(self.dropout)


class CGC(nn.Module):
    """One extraction level: T task branches and a shared branch -> T task outputs (+ shared output).

    forward(task_inputs: T x (B, D), shared_input: (B, D)) -> (T x (B, H), (B, H) or None).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        n_tasks: int,
        n_shared_experts: int,
        n_task_experts: int,
        expert_hidden: tuple[int, ...],
        dropout: float,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.shared_experts = BatchedExperts(
            n_experts=n_shared_experts, in_dim=in_dim, hidden=expert_hidden, dropout=dropout
        )
        # Separate BatchedExperts per task: from level 2 on, each task's experts read a different input.
        self.task_experts = nn.ModuleList(
            BatchedExperts(n_experts=n_task_experts, in_dim=in_dim, hidden=expert_hidden, dropout=dropout)
            for _ in range(n_tasks)
        )
        self.task_gates = nn.ModuleList(
            Gate(in_dim=in_dim, n_experts=n_task_experts + n_shared_experts) for _ in range(n_tasks)
        )
        self.shared_gate = (
            Gate(in_dim=in_dim, n_experts=n_tasks * n_task_experts + n_shared_experts) if shared_gate else None
        )
        self.out_dim = self.shared_experts.out_dim

    def forward(self, task_inputs: list[Tensor], shared_input: Tensor) -> tuple[list[Tensor], Tensor | None]:
        # B batch, D input width, H expert output width, T tasks, Et experts per task, Es shared experts
        shared: Tensor = self.shared_experts(shared_input)  # (B, Es, H)
        own = [experts(x) for experts, x in zip(self.task_experts, task_inputs, strict=True)]  # T x (B, Et, H)
        task_outputs = []
        for x, own_k, gate in zip(task_inputs, own, self.task_gates, strict=True):
            candidates = torch.cat([own_k, shared], dim=1)  # (B, Et + Es, H)
            weights: Tensor = gate(x)  # (B, Et + Es)
            task_outputs.append(mix(weights, candidates))  # (B, H)
        if self.shared_gate is None:
            return task_outputs, None
        candidates = torch.cat([*own, shared], dim=1)  # (B, T * Et + Es, H)
        weights = self.shared_gate(shared_input)  # (B, T * Et + Es)
        return task_outputs, mix(weights, candidates)  # (B, H)


class PLE(MultiTaskModel):
    def __init__(self, config: PLEConfig) -> None:
        super().__init__(config)
        self.config = config
        n_tasks = len(config.heads)
        in_dims = [config.inputs.width] + [config.expert_hidden[-1]] * (config.levels - 1)
        self.levels = nn.ModuleList(
            CGC(
                in_dim=in_dim,
                n_tasks=n_tasks,
                n_shared_experts=config.n_shared_experts,
                n_task_experts=config.n_task_experts,
                expert_hidden=config.expert_hidden,
                dropout=config.dropout,
                shared_gate=level < config.levels - 1,  # the last level's shared output has no reader
            )
            for level, in_dim in enumerate(in_dims)
        )
        self.towers = nn.ModuleList(
            Tower(
                in_dim=config.expert_hidden[-1],
                hidden=config.tower_hidden,
                dropout=config.dropout,
                out_dim=h.output_dim,
            )
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
        # B batch, D input width, H expert output width, T tasks
        x: Tensor = self.input_layer(dense, categorical)  # (B, D)
        task_inputs, shared = [x] * len(self.heads), x  # T x (B, D), (B, D)
        for level in self.levels:
            # -> T x (B, H), (B, H); the last level returns shared=None, which nothing reads.
            task_inputs, shared = level(task_inputs, shared)
        outputs = {
            h.name: tower(t) for h, tower, t in zip(self.heads, self.towers, task_inputs, strict=True)
        }  # (B, head.output_dim) each
        if labels is None:
            return outputs, None
        return outputs, self.loss(outputs, labels=labels, masks=masks, task_weights=task_weights)
