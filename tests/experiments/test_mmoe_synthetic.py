"""The MMoE synthetic benchmark: the generator follows the paper's formulas, models are parameter-matched,
and the smoke mode runs end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments.mmoe_synthetic import (
    PLOT_FILE,
    TABLE_FILE,
    SyntheticConfig,
    SyntheticData,
    generate,
    main,
    parameter_counts,
    sinusoid_parameters,
    splits,
)

CONFIG = SyntheticConfig()


def draw(p: float, *, n: int = 2000, seed: int = 0, config: SyntheticConfig = CONFIG) -> SyntheticData:
    return generate(config, correlation=p, n=n, rng=np.random.default_rng(seed))


def test_shapes_and_orthonormal_directions() -> None:
    data = draw(0.5, n=300)
    assert data.x.shape == (300, 100)
    assert data.y.shape == (300, 2)
    assert data.u.shape == data.w.shape == (100, 2)
    np.testing.assert_allclose(data.u.T @ data.u, np.eye(2), atol=1e-12)  # unit and orthogonal


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0, -0.5])
def test_weights_follow_the_formula_and_projections_correlate_at_p(p: float) -> None:
    config = dataclasses.replace(CONFIG, scale=2.0)
    data = draw(p, n=20_000, config=config)
    u1, u2 = data.u[:, 0], data.u[:, 1]
    np.testing.assert_allclose(data.w[:, 0], 2.0 * u1, atol=1e-12)
    np.testing.assert_allclose(data.w[:, 1], 2.0 * (p * u1 + math.sqrt(1 - p * p) * u2), atol=1e-12)
    assert float(data.w[:, 0] @ data.w[:, 1]) == pytest.approx(4.0 * p, abs=1e-12)  # cosine of w1, w2 is p
    z = data.x @ data.w  # (N, 2)
    assert np.corrcoef(z[:, 0], z[:, 1])[0, 1] == pytest.approx(p, abs=0.02)


def test_labels_follow_the_formula_up_to_noise() -> None:
    data = draw(0.5, n=5000)
    alpha, beta = sinusoid_parameters(CONFIG)
    z = data.x @ data.w
    clean = z + np.sin(z[:, :, None] * alpha + beta).sum(axis=2)
    residual = data.y - clean
    assert residual.std() == pytest.approx(CONFIG.noise_std, rel=0.05)
    assert abs(residual.mean()) < 0.01


def test_identical_tasks_at_p_one_differ_only_by_noise() -> None:
    data = draw(1.0)
    np.testing.assert_allclose(data.w[:, 0], data.w[:, 1], atol=1e-12)
    difference = data.y[:, 0] - data.y[:, 1]  # independent noises: std sqrt(2) * noise_std
    assert difference.std() == pytest.approx(math.sqrt(2) * CONFIG.noise_std, rel=0.1)
    assert np.corrcoef(data.y[:, 0], data.y[:, 1])[0, 1] > 0.95


def test_alpha_beta_are_fixed_and_seeds_are_deterministic() -> None:
    a1, b1 = sinusoid_parameters(CONFIG)
    a2, b2 = sinusoid_parameters(CONFIG)
    assert a1.shape == b1.shape == (10,)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    same, other = draw(0.5, seed=7), draw(0.5, seed=8)
    np.testing.assert_array_equal(draw(0.5, seed=7).y, same.y)
    np.testing.assert_array_equal(draw(0.5, seed=7).x, same.x)
    assert not np.array_equal(same.x, other.x)


def test_splits_have_the_configured_sizes() -> None:
    config = dataclasses.replace(CONFIG, n_train=50, n_val=20, n_test=10)
    train, val, test = splits(config, correlation=0.9, seed=0)
    assert (len(train), len(val), len(test)) == (50, 20, 10)
    assert train.dense.shape == (50, 100)
    assert train.categorical.shape == (50, 0)
    assert set(train.labels) == set(train.masks) == {"task1", "task2"}


def test_shared_bottom_is_parameter_matched_to_mmoe() -> None:
    counts, width = parameter_counts(CONFIG)
    assert width > 0
    assert abs(counts["shared_bottom"] - counts["mmoe"]) / counts["mmoe"] <= 0.10
    assert abs(counts["ple"] - counts["mmoe"]) / counts["mmoe"] <= 0.10
    # 8 experts 100 -> 16, two gates 100 -> 8, two towers 16 -> 8 -> 1
    assert counts["mmoe"] == 8 * (100 * 16 + 16) + 2 * (100 * 8 + 8) + 2 * (16 * 8 + 8 + 8 + 1)


def test_config_rejects_bad_values_with_the_fix() -> None:
    with pytest.raises(ValueError, match="correlations"):
        SyntheticConfig(correlations=(1.5,))
    with pytest.raises(ValueError, match="models"):
        SyntheticConfig(models=("transformer",))


def test_smoke_mode_writes_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--smoke-test", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    record = json.loads(printed[-1])
    assert set(record["summary"]) == {"shared_bottom", "mmoe", "ple"}
    for cells in record["summary"].values():
        assert set(cells) == {"1", "0.5"}
        assert all(math.isfinite(c["mean"]) for c in cells.values())
    table = (tmp_path / TABLE_FILE).read_text()
    assert "| MMoE |" in table
    assert "| Shared-Bottom |" in table
    assert f"![]({PLOT_FILE})" in table
    assert (tmp_path / PLOT_FILE).read_bytes().startswith(b"\x89PNG")
