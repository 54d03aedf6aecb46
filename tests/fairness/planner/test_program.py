"""The exposure program: caps and floors as the design note defines them, the dual sign conventions
(finite differences), and the KKT conditions of HiGHS' and Clarabel's solutions with the returned
prices on small random problems (every condition within 1e-6)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings

from fairness.planner import PlanInputs, build_program, solve_cvxpy, solve_program
from fairness.planner.program import FLOOR_HEADROOM, ExposureProgram, Solution
from tests.fairness.planner.cases import drawn_inputs, kkt_violations, random_inputs, small_policy

# Clarabel's defaults (1e-8) leave complementarity products near 1e-6 on prices up to the penalty (~2e3);
# the KKT tests hold it to 1e-10 so that the check, not the solver's tolerance, is what is tested.
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "tol_ktratio": 1e-8}


def solve(program: ExposureProgram, solver: str) -> Solution:
    return solve_cvxpy(program, solver, options=TIGHT if solver == "clarabel" else None)


def hand_inputs() -> PlanInputs:
    """Four creators in one segment: ids 10, 11 (one operator, both originals), 12 alone, 13 a newcomer."""
    return PlanInputs(
        creator=np.array([10, 11, 12, 13]), cluster=np.array([1, 1, 2, 3]), merit=np.array([4.0, 1.0, 1.0, 0.0]),
        original=np.array([True, True, False, False]), newcomer=np.array([False, False, False, True]),
        segments=("content",), supply=np.array([1.0]), pair_segment=np.zeros(4, dtype=np.int64),
        pair_creator=np.arange(4), value=np.array([1.0, 0.8, 0.6, 0.4]), demand=np.ones(4),
        risk=np.zeros(4), complaint=np.zeros(4),
    )


def test_caps_and_floors_follow_the_design_note() -> None:
    policy = small_policy("planner.beta=0.5", "planner.kappa=2.0", "planner.cluster_cap=0.6")
    program = build_program(hand_inputs(), policy.planner, policy.budgets)
    np.testing.assert_array_equal(program.cluster_ids, [1, 2, 3])
    # U_g = min(cluster_cap, kappa M_g^beta / sum M^beta) with M_g the MAX merit in the cluster:
    # M = (4, 1, 0), M^beta = (2, 1, 0), sum 3 -> (4/3, 2/3, 0), capped at 0.6; cluster 3 is all
    # newcomers, so its cap is lifted to its newcomer floor min(newcomer_floor 0.05, share 0.1 / 1).
    np.testing.assert_allclose(program.cluster_cap, [0.6, 0.6, 0.05])
    np.testing.assert_allclose(program.creator_cap, 1.0)  # creators have no cap of their own
    # Cluster 1 holds the only originals: the whole originals floor 0.3 (its merit is max(4, 1), not the
    # sum); cluster 3 gets its newcomer floor, kept just below what it can hold (its cap).
    np.testing.assert_allclose(program.floor_requested, [0.3, 0.0, 0.05])
    np.testing.assert_allclose(program.floor_capacity, [0.6, 0.6, 0.05])
    np.testing.assert_allclose(program.floor, [0.3, 0.0, FLOOR_HEADROOM * 0.05])


def test_all_zero_merit_gives_uniform_caps() -> None:
    inputs = replace(hand_inputs(), merit=np.zeros(4))
    policy = small_policy("planner.kappa=1.0")
    program = build_program(inputs, policy.planner, policy.budgets)
    np.testing.assert_allclose(program.cluster_cap, 1.0 / 3.0)


def test_splitting_an_account_does_not_add_cap() -> None:
    """An operator's cap follows its best account's merit: splitting or duplicating accounts adds nothing."""
    policy = small_policy("planner.kappa=2.0")
    one = build_program(hand_inputs(), policy.planner, policy.budgets)
    split = replace(hand_inputs(), creator=np.array([10, 11, 12, 13, 14]), cluster=np.array([1, 1, 2, 3, 1]),
                    merit=np.array([4.0, 1.0, 1.0, 0.0, 4.0]), original=np.array([True, True, False, False, True]),
                    newcomer=np.array([False, False, False, True, False]), pair_segment=np.zeros(5, dtype=np.int64),
                    pair_creator=np.arange(5), value=np.array([1.0, 0.8, 0.6, 0.4, 1.0]), demand=np.ones(5),
                    risk=np.zeros(5), complaint=np.zeros(5))
    two = build_program(split, policy.planner, policy.budgets)
    np.testing.assert_allclose(two.cluster_cap, one.cluster_cap)
    np.testing.assert_allclose(two.floor_requested, one.floor_requested)


def test_a_floor_clipped_by_caps_keeps_headroom() -> None:
    inputs = replace(hand_inputs(), demand=np.array([0.1, 0.05, 1.0, 1.0]))
    policy = small_policy()
    program = build_program(inputs, policy.planner, policy.budgets)
    assert program.floor_capacity[0] == pytest.approx(0.15)
    assert program.floor[0] == pytest.approx(FLOOR_HEADROOM * 0.15)


def _binding_case(seed: int) -> tuple[ExposureProgram, Solution]:
    """Random problems (seeds picked) where floors, cluster caps and budgets bind."""
    policy = small_policy("planner.ridge=0.4", "budgets.risk=0.13", "planner.originals_floor=0.5",
                          "planner.cluster_cap=0.3")
    inputs = random_inputs(np.random.default_rng(seed), n_creators=10, n_segments=2, cluster_labels=5,
                           demand_cover=3.0)
    program = build_program(inputs, policy.planner, policy.budgets)
    return program, solve(program, "clarabel")


def _objective_slope(program: ExposureProgram, **changes: np.ndarray | dict[str, float]) -> float:
    """d(optimum) / d(delta) by central differences, for rows shifted by +-delta x the given direction."""
    delta, values = 1e-6, []
    for sign in (1.0, -1.0):
        shifted = {}
        for name, direction in changes.items():
            if isinstance(direction, dict):
                shifted[name] = {k: v + sign * delta * direction.get(k, 0.0) for k, v in program.budget_bound.items()}
            else:
                shifted[name] = getattr(program, name) + sign * delta * direction
        values.append(solve(replace(program, **shifted), "clarabel").objective)  # type: ignore[arg-type]
    return (values[0] - values[1]) / (2 * delta)


@pytest.mark.parametrize("seed", [0, 2, 3, 7])
def test_dual_signs_match_finite_differences(seed: int) -> None:
    """nu = d opt / d supply; lambda = d opt / d U (>= 0); -phi = d opt / d L; rho = d opt / d budget.

    The planner gives creators no cap of their own (U_a = 1), so creator prices are tested in
    the allocator; the seeds are ones where a cluster cap, a floor and a budget all bind."""
    program, solution = _binding_case(seed)
    checked: set[str] = set()
    for s in range(program.n_segments):
        direction = np.eye(program.n_segments)[s]
        assert _objective_slope(program, supply=direction) == pytest.approx(solution.supply_dual[s], rel=1e-3,
                                                                            abs=1e-4)
        checked.add("supply")
    for g in np.flatnonzero(solution.cluster_cap_dual > 1e-3)[:2]:
        direction = np.eye(program.n_clusters)[g]
        assert _objective_slope(program, cluster_cap=direction) == pytest.approx(solution.cluster_cap_dual[g],
                                                                                 rel=1e-3)
        checked.add("cluster_cap")
    for g in np.flatnonzero(solution.floor_dual > 1e-3)[:2]:
        direction = np.eye(program.n_clusters)[g]
        assert _objective_slope(program, floor=direction) == pytest.approx(-solution.floor_dual[g], rel=1e-3)
        checked.add("floor")
    for name, rho in solution.budget_dual.items():
        if rho > 1e-3:
            assert _objective_slope(program, budget_bound={name: 1.0}) == pytest.approx(rho, rel=1e-3)
            checked.add("budget")
    assert checked == {"supply", "cluster_cap", "floor", "budget"}


def test_cluster_cap_dual_is_the_value_of_more_room() -> None:
    # Two creators of one operator with the best values; the operator's cap 0.3 binds.
    policy = small_policy("planner.ridge=1.0", "planner.cluster_cap=0.3", "planner.originals_floor=0.0")
    inputs = replace(hand_inputs(), cluster=np.array([1, 1, 2, 3]), merit=np.ones(4), original=np.zeros(4, bool),
                     newcomer=np.zeros(4, bool))
    program = build_program(inputs, policy.planner, policy.budgets)
    solution = solve(program, "clarabel")
    assert solution.cluster_cap_dual[0] > 1e-3
    direction = np.eye(program.n_clusters)[0]
    assert _objective_slope(program, cluster_cap=direction) == pytest.approx(solution.cluster_cap_dual[0], rel=1e-3)
    # Online the cluster price is subtracted: a binding cap is a positive price (a penalty).
    assert solution.cluster_price[0] == pytest.approx(solution.cluster_cap_dual[0])


@pytest.mark.parametrize("solver", ["highs", "clarabel"])
@pytest.mark.parametrize("ridge", [0.0, 3.0])
@pytest.mark.parametrize("seed", range(12))
def test_kkt_on_small_random_problems(seed: int, ridge: float, solver: str) -> None:
    rng = np.random.default_rng(seed)
    inputs = random_inputs(rng, n_creators=int(rng.integers(2, 12)), n_segments=int(rng.integers(1, 4)),
                           cluster_labels=int(rng.integers(1, 6)), demand_cover=float(rng.uniform(0.5, 3.0)))
    policy = small_policy(f"planner.ridge={ridge}")
    program = build_program(inputs, policy.planner, policy.budgets)
    solution = solve(program, solver)
    assert solution.status == "optimal"
    assert kkt_violations(program, solution) == {}


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(inputs=drawn_inputs())
def test_kkt_on_drawn_problems(inputs: PlanInputs) -> None:
    """Degenerate drawn inputs (zero values, demands of 1e-7, clusters whose cap is 0): whatever a solver calls
    optimal meets every KKT condition, and so does what `solve_program` returns for either requested solver
    (Clarabel's interior point calls some degenerate LPs "inaccurate", with cap prices of 1e10; the planner
    then takes HiGHS' answer). HiGHS is not asked the QP: its QP solver fails outright on some of these
    (one pair with demand 1e-4 and value 0), which is why `choose_solver` never picks it for one."""
    for ridge, solvers in (("0", ("highs", "clarabel")), ("2.0", ("clarabel",))):
        policy = small_policy(f"planner.ridge={ridge}")
        program = build_program(inputs, policy.planner, policy.budgets)
        for solver in solvers:
            direct = solve(program, solver)
            if direct.status == "optimal":
                assert kkt_violations(program, direct) == {}, (ridge, solver)
            planned, _ = solve_program(program, solver, options={"clarabel": TIGHT})
            assert planned.status == "optimal", (ridge, solver)
            assert kkt_violations(program, planned) == {}, (ridge, solver, planned.solver)


def test_solve_program_replaces_an_inaccurate_answer() -> None:
    """The degenerate LP hypothesis found: all values 0, one demand of 6e-8 in a cluster whose cap is 0."""
    inputs = PlanInputs(
        creator=np.arange(4), cluster=np.array([0, 0, 0, 1]), merit=np.array([0.0, 0.0, 0.0, 1.0]),
        original=np.zeros(4, bool), newcomer=np.zeros(4, bool), segments=("s",), supply=np.array([1.0]),
        pair_segment=np.zeros(4, np.int64), pair_creator=np.arange(4), value=np.zeros(4),
        demand=np.array([0.0, 0.0, 5.96046448e-08, 0.0]), risk=np.zeros(4), complaint=np.zeros(4),
    )
    policy = small_policy("planner.ridge=0")
    program = build_program(inputs, policy.planner, policy.budgets)
    assert solve(program, "clarabel").status == "inaccurate"
    solution, notes = solve_program(program, "clarabel", options={"clarabel": TIGHT})
    assert (solution.solver, solution.status) == ("highs", "optimal")
    assert notes == ["fell back after clarabel: status 'inaccurate'"]
    assert kkt_violations(program, solution) == {}


def test_solve_cvxpy_rejects_unknown_solver() -> None:
    policy = small_policy()
    program = build_program(hand_inputs(), policy.planner, policy.budgets)
    with pytest.raises(ValueError, match="expected 'highs' or 'clarabel'"):
        solve_cvxpy(program, "gurobi")
