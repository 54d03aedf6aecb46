from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.summary import add_gmv_relative, format_table, paired_bootstrap_ci, summarize


def test_constant_difference_has_a_degenerate_ci() -> None:
    low, high = paired_bootstrap_ci(np.full(5, 2.5), samples=200, rng=np.random.default_rng(0))
    assert low == high == 2.5


def test_ci_covers_the_mean_and_needs_two_pairs() -> None:
    d = np.random.default_rng(0).normal(1.0, 0.5, size=30)
    low, high = paired_bootstrap_ci(d, samples=2000, rng=np.random.default_rng(1))
    assert low < d.mean() < high
    assert low > 0.5
    assert high < 1.5
    assert all(np.isnan(paired_bootstrap_ci(np.array([1.0]), samples=10, rng=np.random.default_rng(0))))


def test_summarize_pairs_by_seed() -> None:
    runs = pd.DataFrame({"policy": ["a", "a", "a", "b", "b", "b"], "seed": [0, 1, 2, 2, 0, 1],
                         "gmv": [10.0, 20.0, 30.0, 33.0, 11.0, 22.0]})
    summary = summarize(runs, metrics=["gmv"], reference="a", samples=500, seed=0)
    b = summary[summary.policy == "b"].iloc[0]
    assert b["mean"] == pytest.approx(22.0)
    assert b["delta"] == pytest.approx(2.0)
    assert 1.0 <= b["ci_low"] <= b["ci_high"] <= 3.0  # paired: differences are 1, 2, 3
    rel = add_gmv_relative(runs, baseline="a")
    assert rel.loc[(rel.policy == "b") & (rel.seed == 2), "gmv_rel"].iloc[0] == pytest.approx(1.1)
    table = format_table(summary, reference="a", direction={"gmv": "+"})
    assert "a (ref)" in table
    assert "+2 [" in table
    assert "gmv (+)" in table


def test_table_numbers_are_compact() -> None:
    from experiments.summary import _number

    assert [_number(v) for v in (28_440_100.0, 177_751.0, 5.184, 0.02017, -1234.5, float("nan"))] == [
        "28.4M", "178k", "5.18", "0.0202", "-1.23k", "n/a"]
