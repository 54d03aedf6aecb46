from __future__ import annotations

import math

import pytest
import torch

from mtl.weighting import TaskWeighting


def test_equal_and_fixed_weighting_are_weighted_sums() -> None:
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert float(TaskWeighting(heads=["a", "b"], method="equal")(losses)) == 5.0
    fixed = TaskWeighting(heads=["a", "b"], method="fixed", fixed={"b": 0.5})
    assert float(fixed(losses)) == pytest.approx(2.0 + 1.5)
    assert fixed.weights() == {"a": 1.0, "b": 0.5}


def test_uncertainty_weighting_is_kendalls_standard_form() -> None:
    weighting = TaskWeighting(heads=["a", "b"], method="uncertainty")
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([0.7, -1.3]))
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    expected = sum(0.5 * math.exp(-s) * loss + 0.5 * s for s, loss in ((0.7, 2.0), (-1.3, 3.0)))
    assert weighting(losses).item() == pytest.approx(expected)
    assert weighting.weights()["b"] == pytest.approx(0.5 * math.exp(1.3))
    # Not clamped: the gradient moves s toward log(L) (the optimum of 0.5 e^-s L + 0.5 s).
    weighting(losses).backward()  # type: ignore[no-untyped-call]
    grad = weighting.log_vars.grad
    assert grad is not None
    expected_grad = [0.5 - 0.5 * math.exp(-0.7) * 2.0, 0.5 - 0.5 * math.exp(1.3) * 3.0]
    assert grad.tolist() == pytest.approx(expected_grad, rel=1e-5, abs=1e-6)  # float32


def test_weighting_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        TaskWeighting(heads=["a"], method="gradnorm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown heads"):
        TaskWeighting(heads=["a"], method="fixed", fixed={"z": 1.0})
    with pytest.raises(ValueError, match="use method 'fixed'"):
        TaskWeighting(heads=["a"], method="equal", fixed={"a": 2.0})
    with pytest.raises(ValueError, match=">= 0"):
        TaskWeighting(heads=["a"], method="fixed", fixed={"a": -1.0})


def test_pcgrad_removes_conflicts_and_keeps_agreeing_gradients() -> None:
    from mtl.weighting import pcgrad

    generator = torch.Generator().manual_seed(0)
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.equal(pcgrad(agreeing, generator=generator), agreeing.sum(dim=0))  # no conflict: plain sum
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1 < 0
    combined = pcgrad(torch.stack([g1, g2]), generator=generator)
    # Each projected gradient lies on the normal plane of the other task's gradient.
    p1 = g1 - torch.dot(g1, g2) / torch.dot(g2, g2) * g2  # [0.5, 0.5]
    p2 = g2 - torch.dot(g2, g1) / torch.dot(g1, g1) * g1  # [0.0, 1.0]
    assert torch.allclose(combined, p1 + p2)
    assert torch.dot(p1, g2).abs() < 1e-6
    assert torch.dot(combined, g1) > 0
    assert torch.dot(combined, g2) > 0  # the combined step no longer hurts either task


def test_pcgrad_is_reproducible_for_a_seed() -> None:
    from mtl.weighting import pcgrad

    grads = torch.randn(4, 50, generator=torch.Generator().manual_seed(3))
    first = pcgrad(grads, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, pcgrad(grads, generator=torch.Generator().manual_seed(7)))
