"""Dual ascent against Clarabel (at 1e-10 tolerances) on the same ridge program: objective within 1e-5
(relative) and every pair's total price (supply + creator + cluster + budgets, what an online request
subtracts) within 1e-4 utility units, on small random problems (feasible or not) and at 1e4 pairs; KKT
on its own.

Measured at 1e4 pairs: prices within 4e-8 of tight Clarabel (default Clarabel is 4e-6 off), objective
2e-6 below it: the returned plan is repaired to honour every hard row exactly, and the floors and
supply it then misses by ~1e-9 cost the penalty (~3e3) per unit."""

from __future__ import annotations

import numpy as np
import pytest

from fairness.planner import build_program, solve_cvxpy, solve_dual_ascent, synthetic_inputs
from fairness.planner.program import ExposureProgram, Solution
from fairness.policy import load_policy
from tests.fairness.planner.cases import kkt_violations, random_inputs, small_policy

OBJECTIVE_TOL = 1e-5     # relative
PRICE_TOL = 1e-4         # utility units per unit of exposure share
TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "tol_ktratio": 1e-8}


def assert_agree(program: ExposureProgram, reference: Solution, candidate: Solution) -> None:
    assert candidate.status == "optimal", candidate.stats
    assert abs(candidate.objective - reference.objective) <= OBJECTIVE_TOL * max(1.0, abs(reference.objective))
    np.testing.assert_allclose(candidate.pair_price(program), reference.pair_price(program), rtol=0, atol=PRICE_TOL)
    np.testing.assert_allclose(candidate.supply_dual, reference.supply_dual, rtol=1e-6, atol=PRICE_TOL)
    for name, price in reference.budget_dual.items():
        assert candidate.budget_dual[name] == pytest.approx(price, rel=1e-6, abs=PRICE_TOL)


@pytest.mark.parametrize("seed", range(10))
def test_agrees_with_clarabel_on_small_problems(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    inputs = random_inputs(rng, n_creators=int(rng.integers(2, 12)), n_segments=int(rng.integers(1, 4)),
                           cluster_labels=int(rng.integers(1, 6)), demand_cover=float(rng.uniform(0.5, 3.0)))
    program = build_program(inputs, *_sections(small_policy("planner.ridge=3.0")))
    reference = solve_cvxpy(program, "clarabel", options=TIGHT)
    candidate = solve_dual_ascent(program)
    assert_agree(program, reference, candidate)
    assert kkt_violations(program, candidate) == {}


@pytest.mark.parametrize("relative_ridge", [0.01, 1.0])
def test_agrees_with_clarabel_at_1e4_pairs(relative_ridge: float) -> None:
    """The default policy on 1e4 synthetic pairs; ridge as a multiple of P (its strength is ridge / P)."""
    inputs = synthetic_inputs(10_000, np.random.default_rng(0))
    program = build_program(inputs, *_sections(load_policy())).with_ridge(relative_ridge * inputs.n_pairs)
    assert_agree(program, solve_cvxpy(program, "clarabel", options=TIGHT), solve_dual_ascent(program))


def test_infeasible_rows_get_the_penalty_price() -> None:
    # Demand covers a third of each segment and the risk budget is far too small.
    inputs = random_inputs(np.random.default_rng(7), n_creators=6, n_segments=2, demand_cover=0.3)
    policy = small_policy("planner.ridge=2.0", "budgets.risk=0.001")
    program = build_program(inputs, *_sections(policy))
    reference, candidate = solve_cvxpy(program, "clarabel", options=TIGHT), solve_dual_ascent(program)
    assert_agree(program, reference, candidate)
    assert (candidate.supply_slack > 0.1).all()
    np.testing.assert_allclose(candidate.supply_dual, -program.penalty)


def test_reports_inaccurate_when_out_of_evaluations() -> None:
    inputs = synthetic_inputs(2_000, np.random.default_rng(1))
    program = build_program(inputs, *_sections(load_policy())).with_ridge(20.0)
    solution = solve_dual_ascent(program, max_evaluations=2)
    assert solution.status == "inaccurate"
    # L-BFGS-B's line search may overrun maxfun by a few; the polish passes add one each.
    assert int(solution.stats["evaluations"]) <= 10


def test_needs_a_ridge() -> None:
    program = build_program(synthetic_inputs(200, np.random.default_rng(2)), *_sections(load_policy()))
    with pytest.raises(ValueError, match="ridge > 0"):
        solve_dual_ascent(program)


def test_progress_bar_switch(capsys: pytest.CaptureFixture[str]) -> None:
    program = build_program(synthetic_inputs(500, np.random.default_rng(3)), *_sections(load_policy()))
    solve_dual_ascent(program.with_ridge(500.0), progress=True)
    assert "dual ascent" in capsys.readouterr().err
    solve_dual_ascent(program.with_ridge(500.0), progress=False)
    assert capsys.readouterr().err == ""


def _sections(policy: object) -> tuple[object, object]:
    return policy.planner, policy.budgets  # type: ignore[attr-defined]
