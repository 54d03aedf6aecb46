"""Schema -> data -> model -> loss, end to end, for every built-in schema and every model.

The CSV samples are schema fixtures (80-100 rows), far too small for accuracy claims: these tests
check that each combination wires up and that optimization fits the training rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl.data import FeatureStats, encode, read_table
from mtl.models import MODELS, build_model
from mtl.schema import load_schema

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLES = {
    "census_income": SHARED / "census_income_sample" / "census_income_train_sample.csv",
    "ali_ccp": SHARED / "ali_ccp_sample" / "ali_ccp_train_sample.csv",
}


def _impressions(tmp_path: Path) -> Path:
    from experiments.config import load_scenario
    from experiments.simulator.runner import run_experiment

    config = load_scenario("S4", preset="tiny", overrides=["outputs.impressions=all", "run.rounds=6"])
    run_experiment(config, policies=["explore"], seeds=[0], out=tmp_path / "sim", quiet=True)
    return tmp_path / "sim" / "impressions.parquet"


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("schema_name", ["census_income", "ali_ccp", "ecorank"])
def test_every_schema_trains_with_every_model(schema_name: str, model_name: str, tmp_path: Path) -> None:
    schema = load_schema(schema_name)
    path = SAMPLES[schema_name] if schema_name in SAMPLES else _impressions(tmp_path)
    table = read_table(path, schema=schema)
    batch = encode(table, schema, FeatureStats.fit(table, schema))
    assert set(batch.labels) == {h.name for h in schema.heads}

    torch.manual_seed(0)
    model = build_model(model_name, inputs=schema.input_spec(), heads=schema.heads, overrides={"dropout": 0.0})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        outputs, loss = model(dense=batch.dense, categorical=batch.categorical, labels=batch.labels,
                              masks=batch.masks)
        assert loss is not None
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(outputs) == {h.name for h in schema.heads}
    assert all(out.shape == (len(batch), head.output_dim) for head, out in zip(schema.heads, outputs.values(),
                                                                                strict=True))
    assert losses[-1] < 0.7 * losses[0], (losses[0], losses[-1])
