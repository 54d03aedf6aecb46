"""plan_traffic end to end (tables, prices, lookups, TTL, solver choice, relaxations that never raise)
and the on-disk plan: save/load round trip, immutable versions, and tampered files rejected by name."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairness.planner import PlanError, PlanInputs, TrafficPlan, load_plan, plan_traffic, save_plan, synthetic_inputs
from fairness.planner import plan as plan_module
from fairness.policy import load_policy
from tests.fairness.planner.cases import random_inputs, small_policy


@pytest.fixture(scope="module")
def inputs() -> PlanInputs:
    return synthetic_inputs(3_000, np.random.default_rng(11))


@pytest.fixture(scope="module")
def plan(inputs: PlanInputs) -> TrafficPlan:
    return plan_traffic(inputs, load_policy(), version=3, now=1_000.0)


def test_plan_tables_and_fields(plan: TrafficPlan, inputs: PlanInputs) -> None:
    policy = load_policy()
    assert (plan.version, plan.policy_name, plan.policy_fingerprint) == (3, "default", policy.fingerprint())
    assert (plan.created_at, plan.ttl_seconds, plan.horizon_rounds) == (1_000.0, 3600.0, 5.0)
    assert plan.solver == "highs"
    assert plan.status == "optimal"
    assert list(plan.creators.columns) == ["creator", "cluster", "merit", "cap", "target", "price"]
    assert list(plan.clusters.columns) == ["cluster", "target", "cap", "floor", "floor_requested", "floor_slack",
                                           "price"]
    assert len(plan.creators) == inputs.n_creators
    assert plan.creators["creator"].is_monotonic_increasing
    assert plan.creators["target"].sum() == pytest.approx(1.0)  # the synthetic demand covers the supply
    assert (plan.creators["target"] <= plan.creators["cap"] + 1e-9).all()
    assert (plan.creators["price"] >= 0).all()
    assert set(plan.budget_prices) == {"risk", "complaint"}
    assert set(plan.segment_prices) == set(inputs.segments)
    # Cluster totals are the sums of their creators' targets.
    by_cluster = plan.creators.groupby("cluster")["target"].sum()
    np.testing.assert_allclose(plan.clusters.set_index("cluster")["target"], by_cluster, atol=1e-12)


def test_vectorized_lookups(plan: TrafficPlan) -> None:
    row = plan.creators.iloc[[5, 0, 5]]
    ids = np.append(row["creator"].to_numpy(), [-1, 10**12])
    np.testing.assert_array_equal(plan.creator_prices(ids), [*row["price"], 0.0, 0.0])
    np.testing.assert_array_equal(plan.creator_targets(ids), [*row["target"], 0.0, 0.0])
    clusters = plan.clusters.iloc[[2, 1]]
    np.testing.assert_array_equal(plan.cluster_prices(np.append(clusters["cluster"].to_numpy(), -7)),
                                  [*clusters["price"], 0.0])
    assert plan.creator_prices(np.zeros(0, dtype=np.int64)).shape == (0,)


def test_expired(plan: TrafficPlan) -> None:
    assert not plan.expired(now=1_000.0 + 3599.0)
    assert plan.expired(now=1_000.0 + 3600.0)
    assert plan.expired()  # created at t = 1000 s, long ago


def test_unsorted_tables_are_refused(plan: TrafficPlan) -> None:
    with pytest.raises(PlanError, match="ascending"):
        replace(plan, creators=plan.creators.iloc[::-1].reset_index(drop=True))


def test_auto_solver_by_problem_type_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = random_inputs(np.random.default_rng(3), n_creators=12, n_segments=2)
    assert plan_traffic(inputs, small_policy()).solver == "highs"
    assert plan_traffic(inputs, small_policy("planner.ridge=2.0")).solver == "clarabel"
    monkeypatch.setattr(plan_module, "HIGHS_SIZE_LIMIT", 5)
    assert plan_traffic(inputs, small_policy()).solver == "clarabel"  # an LP past HiGHS' limit
    monkeypatch.setattr(plan_module, "AUTO_SIZE_LIMIT", 5)
    lp = plan_traffic(inputs, small_policy())
    assert lp.solver == "dual_ascent"
    assert "LP_RIDGE" in str(lp.stats["notes"])
    assert lp.stats["ridge"] > 0
    assert plan_traffic(inputs, small_policy("planner.ridge=2.0")).solver == "dual_ascent"


def test_explicit_solvers_agree() -> None:
    inputs = random_inputs(np.random.default_rng(4), n_creators=10, n_segments=2)
    plans = [plan_traffic(inputs, small_policy("planner.ridge=2.0", f"planner.solver='{name}'"))
             for name in ("highs", "clarabel", "dual_ascent")]
    assert [p.solver for p in plans] == ["highs", "clarabel", "dual_ascent"]
    for other in plans[1:]:
        assert other.objective == pytest.approx(plans[0].objective, rel=1e-5)
        np.testing.assert_allclose(other.creators["target"], plans[0].creators["target"], atol=1e-5)


# Relaxations: never raise, always say what gave way.

def test_short_supply_is_relaxed_and_reported() -> None:
    inputs = random_inputs(np.random.default_rng(5), n_creators=6, n_segments=2, demand_cover=0.4)
    plan = plan_traffic(inputs, small_policy())
    assert any("supply of segment 's0' short by" in line for line in plan.relaxed)
    assert plan.segment_prices["s0"] == pytest.approx(-plan.stats["penalty"])


def test_floors_that_cannot_all_be_met_are_relaxed_and_reported() -> None:
    # Two original operators live only in 'small' (supply 0.1); the originals floor 0.5 gives each 0.25,
    # clipped to what each can hold alone (0.99 x 0.1), but together they cannot hold 0.198 of 0.1.
    inputs = PlanInputs(
        creator=np.arange(3), cluster=np.arange(3), merit=np.ones(3), original=np.array([True, True, False]),
        newcomer=np.zeros(3, bool), segments=("small", "big"), supply=np.array([0.1, 0.9]),
        pair_segment=np.array([0, 0, 1]), pair_creator=np.arange(3), value=np.ones(3), demand=np.ones(3),
        risk=np.zeros(3), complaint=np.zeros(3),
    )
    plan = plan_traffic(inputs, small_policy("planner.originals_floor=0.5", "planner.cluster_cap=1.0",
                                             "planner.kappa=3.0"))
    text = "\n".join(plan.relaxed)
    assert "cluster floors lowered to 0.99 x what the cluster can hold" in text
    assert "cluster floors missed by 0.098 in all" in text
    assert (plan.clusters["price"].iloc[:2] < 0).all()  # floors bind: a boost online


def test_an_impossible_budget_is_relaxed_and_reported() -> None:
    inputs = random_inputs(np.random.default_rng(6), n_creators=6, n_segments=1)
    inputs = replace(inputs, risk=np.full(inputs.n_pairs, 0.5))
    plan = plan_traffic(inputs, small_policy("budgets.risk=0.1"))
    assert any(line.startswith("risk budget 0.1 exceeded by") for line in plan.relaxed)
    assert plan.budget_prices["risk"] == pytest.approx(plan.stats["penalty"])


def test_no_budget_means_price_zero() -> None:
    inputs = random_inputs(np.random.default_rng(8), n_creators=5, n_segments=1)
    policy = load_policy(overrides={"planner.cluster_cap": 0.6, "budgets.risk": None, "budgets.complaint": None})
    assert plan_traffic(inputs, policy).budget_prices == {"risk": 0.0, "complaint": 0.0}


# On disk.

def test_save_load_round_trip(plan: TrafficPlan, tmp_path: Path) -> None:
    path = save_plan(plan, tmp_path)
    assert path == tmp_path / "v000003"
    assert sorted(p.name for p in path.iterdir()) == ["clusters.parquet", "creators.parquet", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["v000003"]  # no temporary folder left behind
    loaded = load_plan(path)
    assert loaded.equals(plan)
    np.testing.assert_array_equal(loaded.creator_prices(plan.creators["creator"].to_numpy()), plan.creators["price"])


def test_versions_are_immutable(plan: TrafficPlan, tmp_path: Path) -> None:
    save_plan(plan, tmp_path)
    with pytest.raises(PlanError, match=r"already exists.*version=4"):
        save_plan(plan, tmp_path)


def _saved(plan: TrafficPlan, tmp_path: Path) -> Path:
    return save_plan(plan, tmp_path)


def test_tampered_parquet_is_rejected(plan: TrafficPlan, tmp_path: Path) -> None:
    path = _saved(plan, tmp_path)
    table = pd.read_parquet(path / "creators.parquet")
    table.loc[0, "price"] = -5.0
    table.to_parquet(path / "creators.parquet", index=False)
    with pytest.raises(PlanError, match=r"creators\.parquet: sha256 .* does not match .* rebuild it with plan_traffic"):
        load_plan(path)


def test_tampered_manifest_is_rejected(plan: TrafficPlan, tmp_path: Path) -> None:
    path = _saved(plan, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["budget_prices"]["risk"] = 123.0
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match=r"manifest\.json: its content hash .* edited after the plan was saved"):
        load_plan(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.pop("ttl_seconds"), "field 'ttl_seconds' missing"),
    (lambda m: m.update(format="ecorank-traffic-plan/0"), "format 'ecorank-traffic-plan/0', expected"),
    (lambda m: m.update(version="3"), "field 'version' is str, expected int"),
])
def test_malformed_manifest_names_the_field(plan: TrafficPlan, tmp_path: Path, edit: object, message: str) -> None:
    path = _saved(plan, tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match=message):
        load_plan(path)


def test_corrupt_or_missing_files_are_rejected(plan: TrafficPlan, tmp_path: Path) -> None:
    path = _saved(plan, tmp_path)
    (path / "clusters.parquet").unlink()
    with pytest.raises(PlanError, match=r"clusters\.parquet is missing"):
        load_plan(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(PlanError, match=r"manifest\.json is not valid JSON"):
        load_plan(path)
    with pytest.raises(PlanError, match=r"not a traffic plan: expected manifest\.json"):
        load_plan(tmp_path / "nowhere")


def test_wrong_dtypes_are_rejected_even_with_matching_checksums(plan: TrafficPlan, tmp_path: Path) -> None:
    """A writer bug (ids saved as float) is caught by the schema check, not only by the checksums."""
    path = _saved(plan, tmp_path)
    table = plan.creators.astype({"creator": "float64"})
    table.to_parquet(path / "creators.parquet", index=False)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["creators.parquet"]["sha256"] = plan_module._sha256(path / "creators.parquet")
    manifest["manifest_sha256"] = plan_module._manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match="column 'creator' has dtype float64, expected int64"):
        load_plan(path)


@pytest.mark.parametrize("solver", ["highs", "clarabel", "dual_ascent"])
def test_no_pairs_is_all_slack_not_an_error(solver: str) -> None:
    empty = np.zeros(0)
    inputs = PlanInputs(
        creator=np.array([1, 2]), cluster=np.array([1, 2]), merit=np.ones(2), original=np.ones(2, bool),
        newcomer=np.zeros(2, bool), segments=("feed",), supply=np.ones(1), pair_segment=np.zeros(0, np.int64),
        pair_creator=np.zeros(0, np.int64), value=empty, demand=empty, risk=empty, complaint=empty,
    )
    plan = plan_traffic(inputs, small_policy("planner.ridge=1.0", f"planner.solver='{solver}'"))
    assert plan.status == "optimal"
    assert plan.creators["target"].sum() == 0.0
    assert any("short by 1 of 1" in line for line in plan.relaxed)


def test_a_failing_solver_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real = plan_module.solve_cvxpy

    def flaky(program: object, solver: str, **kwargs: object) -> object:
        if solver == "highs":
            raise plan_module.SolverFailure("highs returned status 'infeasible_inaccurate'")
        return real(program, solver, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_module, "solve_cvxpy", flaky)
    inputs = random_inputs(np.random.default_rng(9), n_creators=8, n_segments=2)
    plan = plan_traffic(inputs, small_policy())
    assert plan.solver == "clarabel"
    assert "fell back after highs" in str(plan.stats["notes"])
    monkeypatch.setattr(plan_module, "solve_cvxpy", lambda *a, **k: (_ for _ in ()).throw(
        plan_module.SolverFailure("no luck")))
    with pytest.raises(PlanError, match="every solver failed"):
        plan_traffic(inputs, small_policy())
    assert plan_traffic(inputs, small_policy("planner.ridge=1.0")).solver == "dual_ascent"  # QP: falls back to it
