"""Multi-gate Mixture-of-Experts (MMoE).

Ma, Zhao, Yi, Chen, Hong & Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018.

E experts all read the input; each task k has its own gate g_k(x) = softmax(W_k x) over the experts
and its tower reads the mixture f_k(x) = sum_e g_k(x)_e * expert_e(x). Tasks that agree can share
experts, tasks that conflict can route to different ones, which Shared-Bottom cannot do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
class MMoEConfig:
    inputs: InputSpec
    heads: tuple[HeadSpec, ...]
    n_experts: int = 4
    expert_hidden: tuple[int, ...] = (64,)  # each expert's MLP; the last width is what towers read
    tower_hidden: tuple[int, ...] = (32,)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_inputs(self.inputs)
        check_heads(self.heads)
        check_positive_int("n_experts", self.n_experts)
        check_hidden("expert_hidden", self.expert_hidden, allow_empty=False)
        check_hidden("tower_hidden", self.tower_hidden, allow_empty=True)
        check_dropout(self.dropout)


class MMoE(MultiTaskModel):
    def __init__(self, config: MMoEConfig) -> None:
        super().__init__(config)
        self.config = config
        width = config.inputs.width
        self.experts = BatchedExperts(
            n_experts=config.n_experts, in_dim=width, hidden=config.expert_hidden, dropout=config.dropout
        )
        # One gate per task, all reading the input itself (not the experts): routing depends on the example.
        self.gates = nn.ModuleList(Gate(in_dim=width, n_experts=config.n_experts) for _ in config.heads)
        self.towers = nn.ModuleList(
            Tower(in_dim=self.experts.out_dim, hidden=config.tower_hidden, dropout=config.dropout, out_dim=h.output_dim)
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
        # B batch, D input width, E experts, H expert output width; one gate and tower per task
        x: Tensor = self.input_layer(dense, categorical)  # (B, D)
        experts: Tensor = self.experts(x)  # (B, E, H)
        outputs: dict[str, Tensor] = {}
        for head, gate, tower in zip(self.heads, self.gates, self.towers, strict=True):
            weights: Tensor = gate(x)  # (B, E)
            mixed = mix(weights, experts)  # (B, H)
            outputs[head.name] = tower(mixed)  # (B, head.output_dim)
        if labels is None:
            return outputs, None
        return outputs, self.loss(outputs, labels=labels, masks=masks, task_weights=task_weights)
