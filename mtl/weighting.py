"""How per-head losses combine into one training signal: equal, fixed, uncertainty weighting, or PCGrad.

Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics") learns one log-variance s_k = log sigma_k^2 per task
and minimizes, in the paper's standard form,

    L = sum_k  0.5 * exp(-s_k) * L_k  +  0.5 * s_k        (= L_k / (2 sigma_k^2) + log sigma_k)

with s_k unconstrained (no clamping), trained jointly with the model (no weight decay on s).

PCGrad (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020, "Gradient Surgery for Multi-Task
Learning") works on gradients instead of losses: each task's gradient g_i is projected, against the
other tasks in random order, onto the normal plane of every g_j it conflicts with (g_i . g_j < 0),
and the projected gradients are summed. `pcgrad` below is that surgery; the trainer applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

WeightingMethod = Literal["equal", "fixed", "uncertainty", "pcgrad"]
WEIGHTING_METHODS: tuple[WeightingMethod, ...] = ("equal", "fixed", "uncertainty", "pcgrad")


class TaskWeighting(nn.Module):
    """Combine {head: scalar loss} into one scalar; `weights()` reports the effective weight per head."""

    def __init__(self, *, heads: Sequence[str], method: WeightingMethod,
                 fixed: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if method not in WEIGHTING_METHODS:
            raise ValueError(f"task weighting {method!r} is unknown; expected one of {list(WEIGHTING_METHODS)}")
        fixed = dict(fixed or {})
        unknown = sorted(set(fixed) - set(heads))
        if unknown:
            raise ValueError(f"fixed task weights name unknown heads {unknown}; heads are {list(heads)}")
        if method != "fixed" and fixed:
            raise ValueError(f"task weights {fixed} were given with method {method!r}; use method 'fixed' "
                             "or drop the weights")
        negative = {k: v for k, v in fixed.items() if v < 0}
        if negative:
            raise ValueError(f"fixed task weights must be >= 0; received {negative}")
        self.heads = tuple(heads)
        self.method = method
        self.fixed = {h: float(fixed.get(h, 1.0)) for h in self.heads}
        # One log-variance per head; zeros = weight 0.5 each at the start, as in the paper.
        self.log_vars = nn.Parameter(torch.zeros(len(self.heads)), requires_grad=method == "uncertainty")

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.stack([losses[h] for h in self.heads])  # (T,)
        if self.method == "uncertainty":
            return (0.5 * torch.exp(-self.log_vars) * stacked + 0.5 * self.log_vars).sum()
        weights = torch.tensor([self.fixed[h] for h in self.heads], dtype=stacked.dtype)  # (T,)
        return (weights * stacked).sum()

    def weights(self) -> dict[str, float]:
        """The multiplier each head's loss currently gets."""
        if self.method == "uncertainty":
            values = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
            return dict(zip(self.heads, values, strict=True))
        return dict(self.fixed)


def pcgrad(gradients: Tensor, *, generator: torch.Generator) -> Tensor:
    """Gradient surgery: (T, P) per-task flattened gradients -> (P,) combined gradient.

    For each task i, for the other tasks j in a random order: if g_i . g_j < 0, remove from g_i its
    component along g_j (projections use the original g_j, as in the paper's algorithm).
    """
    tasks = gradients.shape[0]
    projected = gradients.clone()  # (T, P)
    squared_norms = (gradients * gradients).sum(dim=1)  # (T,)
    for i in range(tasks):
        for j in torch.randperm(tasks, generator=generator).tolist():
            if j == i or squared_norms[j] == 0:
                continue
            dot = torch.dot(projected[i], gradients[j])
            if dot < 0:
                projected[i] -= dot / squared_norms[j] * gradients[j]
    return projected.sum(dim=0)  # (P,)
