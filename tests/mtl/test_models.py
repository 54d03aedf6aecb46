"""Contract checks run over every model in MODELS, plus the blocks and model-specific properties."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from mtl.models import CGC, MODELS, PLE, MMoE, build_model
from mtl.models.blocks import MLP, BatchedExperts, Gate, InputLayer, MultiTaskModel, Tower, mix
from mtl.spec import CategoricalInput, HeadSpec, InputSpec

INPUTS = InputSpec(n_dense=5, categorical=(CategoricalInput(buckets=10, embedding_dim=4), CategoricalInput(7, 3)))
HEADS = (
    HeadSpec(name="purchase", kind="binary", label="purchased"),
    HeadSpec(name="gmv", kind="ziln", label="gmv"),
    HeadSpec(name="prosperity", kind="regression", label="prosperity"),
    HeadSpec(name="risk", kind="binary", label="risk", mask="purchased"),
)
BATCH = 32
MODEL_NAMES = sorted(MODELS)


def make_batch(batch: int = BATCH, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(batch, INPUTS.n_dense, generator=g)
    categorical = torch.stack(
        [torch.randint(0, c.buckets, (batch,), generator=g) for c in INPUTS.categorical], dim=1
    )  # (B, C)
    return {"dense": dense, "categorical": categorical}


def make_labels(batch: int = BATCH, seed: int = 1) -> dict[str, Tensor]:
    """Labels for every head; half the GMV rows are zero so both ZILN parts are exercised."""
    g = torch.Generator().manual_seed(seed)
    purchased = (torch.rand(batch, generator=g) < 0.5).float()
    return {
        "purchase": purchased,
        "gmv": purchased * torch.exp(torch.randn(batch, generator=g)),
        "prosperity": torch.randn(batch, generator=g),
        "risk": (torch.rand(batch, generator=g) < 0.3).float(),
    }


def make_model(name: str, seed: int = 0, **overrides: object) -> MultiTaskModel:
    torch.manual_seed(seed)
    return build_model(name, inputs=INPUTS, heads=HEADS, overrides=overrides or None)


# --- contract: every model ------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_output_shapes_and_finite_loss(name: str) -> None:
    model = make_model(name)
    outputs, loss = model(**make_batch(), labels=make_labels())
    assert list(outputs) == [h.name for h in HEADS]
    for head in HEADS:
        assert outputs[head.name].shape == (BATCH, head.output_dim)
    assert loss is not None
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    assert model(**make_batch())[1] is None  # no labels -> no loss
    predictions = model.predict(**make_batch())
    assert all(p.shape == (BATCH,) for p in predictions.values())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_parameter_and_every_expert_slice_gets_gradient(name: str) -> None:
    model = make_model(name, dropout=0.0)
    _, loss = model(**make_batch(), labels=make_labels())
    assert loss is not None
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} got an all-zero gradient"
    n_batched = 0
    for module_name, module in model.named_modules():
        if isinstance(module, BatchedExperts):
            n_batched += 1
            for layer, w in enumerate(module.weights):
                assert w.grad is not None
                per_expert = w.grad.abs().sum(dim=(1, 2))  # (E,)
                assert (per_expert > 0).all(), f"{module_name} layer {layer}: experts without grad {per_expert}"
    assert (n_batched > 0) == (name != "shared_bottom")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gates_output_distributions(name: str) -> None:
    model = make_model(name)
    seen: list[Tensor] = []
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    handles = [g.register_forward_hook(lambda _m, _i, out: seen.append(out)) for g in gates]
    model(**make_batch())
    for h in handles:
        h.remove()
    assert len(seen) == len(gates)
    for weights in seen:
        assert weights.shape[0] == BATCH
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(BATCH))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_same_initial_outputs(name: str) -> None:
    first = make_model(name, seed=0).eval()(**make_batch())[0]
    second = make_model(name, seed=0).eval()(**make_batch())[0]
    other = make_model(name, seed=1).eval()(**make_batch())[0]
    for head in HEADS:
        assert torch.equal(first[head.name], second[head.name])
    assert not torch.equal(first["purchase"], other["purchase"])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_all_false_mask_gives_zero_loss_and_zero_tower_gradient(name: str) -> None:
    model = make_model(name, dropout=0.0)
    masks = {"risk": torch.zeros(BATCH, dtype=torch.bool)}
    outputs, loss = model(**make_batch(), labels=make_labels(), masks=masks)
    assert loss is not None
    losses = model.head_losses(outputs, labels=make_labels(), masks=masks)
    assert losses["risk"].item() == 0.0
    torch.testing.assert_close(loss, sum(v for k, v in losses.items() if k != "risk"))
    loss.backward()
    risk_tower = model.towers[[h.name for h in HEADS].index("risk")]
    for param in risk_tower.parameters():
        assert param.grad is None or torch.equal(param.grad, torch.zeros_like(param.grad))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_task_weights_scale_head_losses(name: str) -> None:
    model = make_model(name).eval()
    batch, labels = make_batch(), make_labels()
    outputs, loss = model(**batch, labels=labels, task_weights={"gmv": 0.5, "risk": 0.0})
    losses = model.head_losses(outputs, labels=labels)
    expected = losses["purchase"] + 0.5 * losses["gmv"] + losses["prosperity"]
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="unknown heads"):
        model(**batch, labels=labels, task_weights={"gvm": 1.0})
    with pytest.raises(ValueError, match="labels lack heads"):
        model(**batch, labels={"purchase": labels["purchase"]})


def test_batched_experts_equal_loop_reference() -> None:
    torch.manual_seed(0)
    experts = BatchedExperts(n_experts=3, in_dim=6, hidden=(8, 5), dropout=0.1).eval()
    x = torch.randn(10, 6)
    out = experts(x)
    assert out.shape == (10, 3, 5)
    torch.testing.assert_close(out, experts.forward_loop(x))


def test_batched_expert_slice_is_a_linear_layer() -> None:
    torch.manual_seed(0)
    experts = BatchedExperts(n_experts=2, in_dim=4, hidden=(3,), dropout=0.0)
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(experts.weights[0][1].T)  # (in, out) stored; nn.Linear holds (out, in)
        linear.bias.copy_(experts.biases[0][1])
    x = torch.randn(5, 4)
    torch.testing.assert_close(experts(x)[:, 1], torch.relu(linear(x)))


def test_mix_is_the_gate_weighted_sum_of_experts() -> None:
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(4, 300, generator=g), dim=0).t()  # (B, E) view, as Gate returns
    experts = torch.randn(4, 300, 64, generator=g).transpose(0, 1)  # (B, E, H) view, as BatchedExperts returns
    torch.testing.assert_close(mix(weights, experts), torch.einsum("be,beh->bh", weights, experts))


def test_mlp_and_tower_widths() -> None:
    assert MLP(in_dim=7, hidden=(), dropout=0.0).out_dim == 7
    assert MLP(in_dim=7, hidden=(4, 2), dropout=0.0)(torch.zeros(3, 7)).shape == (3, 2)
    assert Tower(in_dim=7, hidden=(), dropout=0.0, out_dim=3)(torch.zeros(3, 7)).shape == (3, 3)


def test_input_layer_concatenates_and_validates() -> None:
    layer = InputLayer(INPUTS)
    batch = make_batch(batch=4)
    assert layer(batch["dense"], batch["categorical"]).shape == (4, INPUTS.width)
    with pytest.raises(ValueError, match=r"dense has shape \(4, 3\).*expected \(batch, 5\)"):
        layer(torch.zeros(4, 3), batch["categorical"])
    with pytest.raises(ValueError, match=r"categorical has shape \(4, 2\) and dtype torch.float32; expected"):
        layer(batch["dense"], batch["categorical"].float())
    with pytest.raises(ValueError, match=r"categorical has shape \(3, 2\).*expected \(4, 2\)"):
        layer(batch["dense"], batch["categorical"][:3])
    dense_only = InputLayer(InputSpec(n_dense=2, categorical=()))
    assert dense_only(torch.zeros(4, 2), torch.zeros(4, 0, dtype=torch.long)).shape == (4, 2)


# --- PLE / CGC ------------------------------------------------------------------------------------


def test_ple_with_one_level_equals_cgc_plus_towers() -> None:
    ple = make_model("ple", levels=1, n_task_experts=2)
    assert isinstance(ple, PLE)
    cfg = ple.config
    torch.manual_seed(123)  # different init, then overwritten: equality must come from the weights
    cgc = CGC(
        in_dim=INPUTS.width,
        n_tasks=len(HEADS),
        n_shared_experts=cfg.n_shared_experts,
        n_task_experts=cfg.n_task_experts,
        expert_hidden=cfg.expert_hidden,
        dropout=cfg.dropout,
        shared_gate=False,
    )
    towers = nn.ModuleList(
        Tower(in_dim=cfg.expert_hidden[-1], hidden=cfg.tower_hidden, dropout=cfg.dropout, out_dim=h.output_dim)
        for h in HEADS
    )
    cgc.load_state_dict(ple.levels[0].state_dict())
    towers.load_state_dict(ple.towers.state_dict())
    for module in (ple, cgc, towers):
        module.eval()

    batch = make_batch()
    x = ple.input_layer(batch["dense"], batch["categorical"])
    task_outputs, shared = cgc([x] * len(HEADS), x)
    assert shared is None
    outputs = ple(**batch)[0]
    for head, tower, t in zip(HEADS, towers, task_outputs, strict=True):
        torch.testing.assert_close(outputs[head.name], tower(t))


def test_cgc_matches_unbatched_formula() -> None:
    """Task k mixes [own experts, shared experts]; the shared gate mixes all experts, tasks first."""
    torch.manual_seed(0)
    cgc = CGC(
        in_dim=6, n_tasks=2, n_shared_experts=2, n_task_experts=3, expert_hidden=(5,), dropout=0.0, shared_gate=True
    )
    inputs, shared_input = [torch.randn(4, 6), torch.randn(4, 6)], torch.randn(4, 6)
    task_outputs, shared = cgc(inputs, shared_input)
    shared_experts = cgc.shared_experts.forward_loop(shared_input)  # (B, 2, H)
    own = [e.forward_loop(x) for e, x in zip(cgc.task_experts, inputs, strict=True)]  # (B, 3, H) each
    for k in range(2):
        w = cgc.task_gates[k](inputs[k])  # (B, 5)
        expected = sum(w[:, j : j + 1] * torch.cat([own[k], shared_experts], dim=1)[:, j] for j in range(5))
        torch.testing.assert_close(task_outputs[k], expected)
    assert cgc.shared_gate is not None
    w = cgc.shared_gate(shared_input)  # (B, 8)
    everything = torch.cat([*own, shared_experts], dim=1)  # (B, 8, H)
    torch.testing.assert_close(shared, sum(w[:, j : j + 1] * everything[:, j] for j in range(8)))


def test_ple_two_levels_runs_and_only_last_level_lacks_shared_gate() -> None:
    ple = make_model("ple", levels=2)
    assert isinstance(ple, PLE)
    assert len(ple.levels) == 2
    assert ple.levels[0].shared_gate is not None
    assert ple.levels[-1].shared_gate is None
    outputs, loss = ple(**make_batch(), labels=make_labels())
    assert outputs["gmv"].shape == (BATCH, 3)
    assert loss is not None
    assert torch.isfinite(loss)


# --- learning -------------------------------------------------------------------------------------


def test_mmoe_learns_two_threshold_tasks() -> None:
    torch.manual_seed(0)
    inputs = InputSpec(n_dense=4, categorical=())
    heads = (HeadSpec("a", "binary", "a"), HeadSpec("b", "binary", "b"))
    model = build_model("mmoe", inputs=inputs, heads=heads, overrides={"dropout": 0.0, "expert_hidden": [16]})
    assert isinstance(model, MMoE)
    dense = torch.randn(256, 4)
    categorical = torch.zeros(256, 0, dtype=torch.long)
    labels = {"a": (dense[:, 0] > 0).float(), "b": (dense[:, 1] > 0).float()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        _, loss = model(dense=dense, categorical=categorical, labels=labels)
        assert loss is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


# --- build_model ----------------------------------------------------------------------------------


def test_build_model_rejects_unknown_name_and_override() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'moe'.*\['mmoe', 'ple', 'shared_bottom'\]"):
        build_model("moe", inputs=INPUTS, heads=HEADS)
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['n_expert'\].*allowed keys: \[.*'n_experts'"):
        build_model("mmoe", inputs=INPUTS, heads=HEADS, overrides={"n_expert": 8})
    with pytest.raises(ValueError, match="allowed keys"):
        build_model("mmoe", inputs=INPUTS, heads=HEADS, overrides={"heads": ()})


def test_build_model_applies_and_validates_overrides() -> None:
    model = build_model("mmoe", inputs=INPUTS, heads=HEADS, overrides={"n_experts": 6, "expert_hidden": [16, 8]})
    assert isinstance(model, MMoE)
    assert model.config.n_experts == 6
    assert model.config.expert_hidden == (16, 8)
    assert model.experts(torch.zeros(2, INPUTS.width)).shape == (2, 6, 8)
    with pytest.raises(ValueError, match="n_experts must be a positive int; received 0"):
        build_model("mmoe", inputs=INPUTS, heads=HEADS, overrides={"n_experts": 0})
    with pytest.raises(ValueError, match=r"dropout must be a float in \[0, 1\); received 1.5"):
        build_model("ple", inputs=INPUTS, heads=HEADS, overrides={"dropout": 1.5})
    with pytest.raises(ValueError, match="head names must be unique"):
        build_model("shared_bottom", inputs=INPUTS, heads=(HEADS[0], HEADS[0]))
