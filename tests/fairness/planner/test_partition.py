"""Planning by market: the split and merge are exact (one market = plan_traffic; copies of one market =
the joint program), markets that share creators or operators are refused by name, and planner inputs
survive a round trip through their Parquet files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairness.planner import PlanInputError, PlanInputs, plan_traffic, synthetic_inputs
from fairness.planner.input_files import load_inputs, save_inputs
from fairness.planner.partition import concat_markets, plan_by_market, split_by_market, synthetic_markets
from fairness.policy import FairnessPolicy, load_policy

# A strictly concave program (ridge > 0: one optimum, so two solves can be compared) whose absolute knobs
# (the flat cluster cap, the newcomer floor) do not bind: then only the shares differ between the joint
# program and the per-market ones, which the merge must scale back exactly. Budgets on.
# Prices agree to Clarabel's accuracy (1e-5 in utility units of order 1), shares much closer.
EXACT = {"planner.ridge": 0.01, "planner.cluster_cap": 1.0, "planner.newcomer_floor": 0.05,
         "planner.solver": "clarabel", "budgets.risk": 0.05, "budgets.complaint": 0.02}  # risk binds (price ~7.5)


@pytest.fixture(scope="module")
def exact_policy() -> FairnessPolicy:
    return load_policy("default", overrides=EXACT)


def test_one_market_is_plan_traffic(exact_policy: FairnessPolicy) -> None:
    inputs = synthetic_inputs(2_000, np.random.default_rng(3))
    merged = plan_by_market(inputs, exact_policy, market_of=lambda _: "all", now=5.0)
    alone = plan_traffic(inputs, exact_policy, now=5.0)
    pd.testing.assert_frame_equal(merged.creators, alone.creators)
    pd.testing.assert_frame_equal(merged.clusters, alone.clusters)
    assert merged.objective == alone.objective
    assert merged.budget_prices == alone.budget_prices
    assert merged.segment_prices == alone.segment_prices


def test_copies_of_one_market_plan_like_the_joint_program(exact_policy: FairnessPolicy) -> None:
    market = synthetic_inputs(2_000, np.random.default_rng(1))
    copies = concat_markets([market] * 3, ["a", "b", "c"], np.full(3, 1 / 3))
    merged = plan_by_market(copies, exact_policy)
    joint = plan_traffic(copies, exact_policy)
    assert merged.stats["markets"] == 3
    assert merged.stats["largest_market_pairs"] == market.n_pairs
    # Shares scaled back to all impressions (targets, caps, floors), prices left as they are.
    np.testing.assert_allclose(merged.creators["target"], joint.creators["target"], atol=1e-8)
    np.testing.assert_allclose(merged.clusters["cap"], joint.clusters["cap"], rtol=1e-12)
    np.testing.assert_allclose(merged.clusters["floor"], joint.clusters["floor"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(merged.clusters["price"], joint.clusters["price"], atol=1e-4)
    np.testing.assert_allclose(merged.creators["price"], joint.creators["price"], atol=1e-4)
    for name, price in joint.segment_prices.items():
        assert merged.segment_prices[name] == pytest.approx(price, abs=1e-5)
    for name, price in joint.budget_prices.items():
        assert merged.budget_prices[name] == pytest.approx(price, rel=1e-6, abs=1e-5)
    assert merged.budget_prices["risk"] > 1.0  # the budget binds: its price is compared, not two zeros
    assert merged.objective == pytest.approx(joint.objective, rel=1e-8)


def test_each_market_is_planned_in_its_own_impressions() -> None:
    policy = load_policy()
    inputs = synthetic_markets(3, 1_500, np.random.default_rng(4), supply=np.array([0.5, 0.3, 0.2]))
    parts = split_by_market(inputs)
    assert [part.market for part in parts] == ["m00", "m01", "m02"]
    assert [part.weight for part in parts] == pytest.approx([0.5, 0.3, 0.2])
    merged = plan_by_market(inputs, policy, parts=parts)
    for part in parts:
        assert part.inputs.supply.sum() == pytest.approx(1.0)
        own = plan_traffic(part.inputs, policy)
        rows = merged.creators.set_index("creator").loc[part.inputs.creator]
        np.testing.assert_allclose(rows["target"], own.creators.set_index("creator").loc[part.inputs.creator,
                                                                                        "target"] * part.weight)
        np.testing.assert_array_equal(rows["price"], own.creators.set_index("creator").loc[part.inputs.creator,
                                                                                          "price"])
        assert rows["target"].sum() == pytest.approx(part.weight, rel=1e-6)  # the market's supply is all placed


def test_markets_that_share_creators_or_operators_are_refused() -> None:
    market = synthetic_inputs(400, np.random.default_rng(2))
    with pytest.raises(PlanInputError, match=r"every creator to sell in one market, received \d+ creators"):
        split_by_market(market, market_of=str)  # synthetic creators sell in both segments
    two = concat_markets([market, market], ["a", "b"], np.array([0.5, 0.5]))
    cluster = two.cluster.copy()
    cluster[-1] = cluster[0]  # an operator with one account in each market
    with pytest.raises(PlanInputError, match="every operator cluster in one market, received 1 clusters"):
        split_by_market(replace(two, cluster=cluster))


def test_planner_inputs_round_trip_through_parquet(tmp_path: Path) -> None:
    inputs = synthetic_markets(2, 600, np.random.default_rng(5))
    folder = save_inputs(inputs, tmp_path / "inputs")
    back = load_inputs(folder)
    for name in ("creator", "cluster", "merit", "original", "newcomer", "supply", "pair_segment", "pair_creator",
                 "value", "demand", "risk", "complaint"):
        np.testing.assert_array_equal(getattr(back, name), getattr(inputs, name), err_msg=name)
    assert back.segments == inputs.segments
    # Pairs name creators and segments, so any row order reads back to the same plan.
    pairs = pd.read_parquet(folder / "pairs.parquet").sample(frac=1.0, random_state=0)
    pairs.to_parquet(folder / "pairs.parquet", index=False)
    shuffled = load_inputs(folder)
    policy = load_policy()
    pd.testing.assert_frame_equal(plan_traffic(shuffled, policy, now=1.0).creators,
                                  plan_traffic(inputs, policy, now=1.0).creators, atol=1e-9)


def test_bad_input_files_say_what_to_fix(tmp_path: Path) -> None:
    folder = save_inputs(synthetic_inputs(300, np.random.default_rng(6)), tmp_path / "inputs")
    pairs = pd.read_parquet(folder / "pairs.parquet")
    pairs.loc[0, "creator"] = 10**12
    pairs.to_parquet(folder / "pairs.parquet", index=False)
    with pytest.raises(PlanInputError, match=r"1 pairs name a creator that creators.parquet does not have"):
        load_inputs(folder)
    pairs.drop(columns="demand").to_parquet(folder / "pairs.parquet", index=False)
    with pytest.raises(PlanInputError, match=r"missing \['demand'\]"):
        load_inputs(folder)
    (folder / "segments.parquet").unlink()
    with pytest.raises(PlanInputError, match=r"expected segments\.parquet"):
        load_inputs(folder)


def _inputs_equal(a: PlanInputs, b: PlanInputs) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("creator", "pair_creator", "value"))


def test_synthetic_markets_are_seeded() -> None:
    first = synthetic_markets(2, 300, np.random.default_rng(9))
    assert _inputs_equal(first, synthetic_markets(2, 300, np.random.default_rng(9)))
    assert not _inputs_equal(first, synthetic_markets(2, 300, np.random.default_rng(10)))
