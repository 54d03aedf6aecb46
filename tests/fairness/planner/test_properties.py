"""Properties of the program under sybil splits and merit changes (design note, "Why clusters, not accounts").

What holds, tested with hypothesis:
* splitting an account (a duplicate with the same merit, or a split with merit and demand shared) never
  raises its operator's merit-based floor (the guaranteed exposure: the cluster's MAX merit, per cluster),
  and never lifts the floor kept after clipping above the merit-based floor it had before the split;
* raising a creator's merit never lowers its operator's merit target (the anti-Matthew cap U_g) nor its
  floors, and never raises anyone else's;
* raising one creator's own cap, the others fixed, never lowers its planned exposure (ridge > 0).

What does not hold, pinned as strict xfails with minimal examples (they will XPASS, and fail, once the
formulation changes), and reported in docs/fairness.md:
* planned exposure CAN rise on a duplicate with ridge > 0: the ridge is per pair, and two half pairs pay
  half the ridge of one (the LP, ridge 0, does not reward the split);
* a creator's planned exposure, and even its operator's, CAN fall when its merit rises: the merit target
  rises, but under a binding risk or complaint budget the room can go to a safer account, and a floor
  moved between operators changes how much other accounts must offset.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fairness.planner import PlanInputs, build_program, solve_cvxpy
from fairness.policy import load_policy
from tests.fairness.planner.cases import (
    drawn_inputs,
    duplicate_account,
    operator_floor,
    operator_total,
    small_policy,
    split_account,
)

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10, "tol_ktratio": 1e-8}
SPLITS = {"duplicate": duplicate_account, "split": split_account}
POLICY = small_policy("planner.ridge=2.0")


def requested_floor(inputs: PlanInputs, cluster_id: int) -> float:
    program = build_program(inputs, POLICY.planner, POLICY.budgets)
    return float(program.floor_requested[program.cluster_ids == cluster_id].sum())


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(inputs=drawn_inputs(), how=st.sampled_from(sorted(SPLITS)), data=st.data())
def test_splitting_never_raises_the_merit_floor(inputs: PlanInputs, how: str, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, inputs.n_creators - 1), label="row")
    share = data.draw(st.floats(0.05, 0.95), label="share")
    operator = int(inputs.cluster[row])
    after = SPLITS[how](inputs, row, share)
    before_program = build_program(inputs, POLICY.planner, POLICY.budgets)
    after_program = build_program(after, POLICY.planner, POLICY.budgets)
    merit_floor = requested_floor(inputs, operator)
    assert requested_floor(after, operator) <= merit_floor + 1e-12
    # The floor caps leave may grow back, but never past the merit floor of before the split.
    assert operator_floor(after_program, operator) <= merit_floor + 1e-12
    # Other operators' floors are untouched by this one's split, up to the normalization it cannot raise.
    others = before_program.cluster_ids != operator
    assert np.all(after_program.floor_requested[others] >= before_program.floor_requested[others] - 1e-12)


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(inputs=drawn_inputs(), data=st.data())
def test_raising_a_creators_own_cap_never_lowers_its_target(inputs: PlanInputs, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, inputs.n_creators - 1), label="row")
    bump = data.draw(st.floats(0.01, 0.5), label="bump")
    program = build_program(inputs, POLICY.planner, POLICY.budgets)
    cap = program.creator_cap.copy()
    cap[row] += bump
    raised = replace(program, creator_cap=cap, active_creators=np.union1d(program.active_creators, [row]))
    target = [solve_cvxpy(p, "clarabel", options=TIGHT).x[p.pair_creator == row].sum() for p in (program, raised)]
    # 1e-6, as the other properties: Clarabel's tight answers differ by CPU; on an Intel Xeon one drawn case
    # (a demand-bound target of 0.25) came back 1.9e-7 lower after the raise
    assert target[1] >= target[0] - 1e-6


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(inputs=drawn_inputs(), data=st.data())
def test_raising_a_creators_merit_never_lowers_its_merit_target(inputs: PlanInputs, data: st.DataObject) -> None:
    """The concave merit target of a creator's operator, U_g = min(cluster_cap, kappa M_g^beta / sum M^beta), its
    merit-based floor and the floor kept after clipping never fall when the creator's merit rises; nobody
    else's target rises (the normalization can only lower them)."""
    row = data.draw(st.integers(0, inputs.n_creators - 1), label="row")
    bump = data.draw(st.floats(1e-3, 3.0), label="bump")
    merit = inputs.merit.copy()
    merit[row] += bump
    before, after = (build_program(replace(inputs, merit=m), POLICY.planner, POLICY.budgets)
                     for m in (inputs.merit, merit))
    g = int(before.creator_cluster[row])
    assert after.cluster_cap[g] >= before.cluster_cap[g] - 1e-12
    assert after.floor_requested[g] >= before.floor_requested[g] - 1e-12
    assert after.floor[g] >= before.floor[g] - 1e-12
    others = np.arange(before.n_clusters) != g
    if inputs.merit.any():  # from all-zero merit, the uniform caps give way to merit shares
        assert np.all(after.cluster_cap[others] <= before.cluster_cap[others] + 1e-12)
        assert np.all(after.floor_requested[others] <= before.floor_requested[others] + 1e-12)


# Counterexamples: the design note's and the brief's properties that the specified formulation breaks.

def _one_segment(**fields: object) -> PlanInputs:
    n = len(fields["merit"])  # type: ignore[arg-type]
    base = {"creator": np.arange(1, n + 1), "original": np.zeros(n, bool), "newcomer": np.zeros(n, bool),
            "segments": ("content",), "supply": np.ones(1), "pair_segment": np.zeros(n, dtype=np.int64),
            "pair_creator": np.arange(n), "value": np.ones(n), "demand": np.ones(n), "risk": np.zeros(n),
            "complaint": np.zeros(n)}
    return PlanInputs(**{**base, **fields}).validate()  # type: ignore[arg-type]


def test_duplicate_does_not_raise_a_clipped_floor() -> None:
    # One operator: X is an original (merit 1) with almost no demand, Y (merit 0.01) has the demand.
    # With per-account caps the originals floor 0.3 was clipped to what Y's cap holds (0.18) and a copy of
    # Y added a second cap (0.3); the cap is now the cluster's (from X's merit), so both are 0.3.
    inputs = _one_segment(cluster=np.array([7, 7]), merit=np.array([1.0, 0.01]), original=np.array([True, False]),
                          demand=np.array([0.001, 1.0]))
    before = build_program(inputs, POLICY.planner, POLICY.budgets)
    after = build_program(duplicate_account(inputs, 1, 0.5), POLICY.planner, POLICY.budgets)
    assert operator_floor(before, 7) == pytest.approx(0.3)
    assert operator_floor(after, 7) <= operator_floor(before, 7)


@pytest.mark.xfail(strict=True, reason="per-pair ridge: two half pairs pay half the ridge of one")
def test_counterexample_duplicate_raises_planned_exposure_with_ridge() -> None:
    # Two operators with one equal account each share the supply 0.5 / 0.5. Operator 1 duplicates its
    # account (demand shared): with ridge > 0 the three equal pairs get 1/3 each, operator 1 gets 2/3,
    # capped at 0.6.
    inputs = _one_segment(cluster=np.array([1, 2]), merit=np.ones(2))
    policy = load_policy(overrides={"planner.cluster_cap": 0.6, "planner.kappa": 2.0, "planner.ridge": 2.0,
                                    "planner.originals_floor": 0.0, "budgets.risk": None, "budgets.complaint": None})
    programs = [build_program(i, policy.planner, policy.budgets) for i in (inputs, duplicate_account(inputs, 0, 0.5))]
    totals = [operator_total(p, solve_cvxpy(p, "clarabel").x, 1) for p in programs]
    assert totals[0] == pytest.approx(0.5, abs=1e-6)
    assert totals[1] <= totals[0] + 1e-6  # fails: 0.6


def test_split_does_not_raise_planned_exposure_in_the_lp() -> None:
    # Operator 1's account has the better value and is held at its cap 1.2 x 1 / 2 = 0.6. Split in two
    # accounts of merit 0.5 (demand shared): with per-account caps they would hold 2 x 1.2 x 0.707 / 2.414
    # = 0.703; the cap is the cluster's, from its best account's merit, so the operator stays at 0.6.
    inputs = _one_segment(cluster=np.array([1, 2]), merit=np.ones(2), value=np.array([2.0, 1.0]))
    policy = load_policy(overrides={"planner.cluster_cap": 0.9, "planner.kappa": 1.2, "planner.ridge": 0.0,
                                    "planner.originals_floor": 0.0, "budgets.risk": None, "budgets.complaint": None})
    programs = [build_program(i, policy.planner, policy.budgets) for i in (inputs, split_account(inputs, 0, 0.5))]
    totals = [operator_total(p, solve_cvxpy(p, "highs").x, 1) for p in programs]
    assert totals[0] == pytest.approx(0.6, abs=1e-6)
    assert totals[1] <= totals[0] + 1e-6


@pytest.mark.xfail(strict=True, reason="under a binding risk budget the operator's room goes to its safer account")
def test_counterexample_more_merit_lowers_the_creators_planned_exposure() -> None:
    # Operator 1 = {A (merit 0.125, risk 0.25), B (merit 0, risk 0.125)}, operator 2 = C (merit 1, no demand);
    # values 0, so only the ridge, the risk budget 0.1 and the supply shortfall price shape the plan. A's
    # extra merit raises operator 1's cap 0.522 -> 0.6 (its merit target rises, as tested above), the risk
    # budget then binds, and the room goes to B, the safer account: A falls 0.261 -> 0.2, B rises to 0.4.
    inputs = _one_segment(cluster=np.array([1, 1, 2]), merit=np.array([0.125, 0.0, 1.0]),
                          risk=np.array([0.25, 0.125, 0.0]), demand=np.array([1.0, 1.0, 0.0]), value=np.zeros(3))
    totals = []
    for merit in (0.125, 1.125):
        program = build_program(replace(inputs, merit=np.array([merit, 0.0, 1.0])), POLICY.planner, POLICY.budgets)
        totals.append(solve_cvxpy(program, "clarabel", options=TIGHT).x[0])
    assert totals[0] == pytest.approx(0.2612, abs=1e-4)
    assert totals[1] >= totals[0] - 1e-6  # fails: 0.2


@pytest.mark.xfail(strict=True, reason="the originals floor a merit rise moves between operators frees budget")
def test_counterexample_more_merit_lowers_the_operators_planned_exposure() -> None:
    # Operator 1 = {an original with merit 0 and no demand, X (merit 1, complaint 0.039)}, operator 2 = Y
    # (0.055), operator 3 = Z (an original, 0.0625); values 0, ridge 0.5, complaint budget 0.05 binding. With
    # the original's merit 0, Z holds the whole originals floor 0.3, and X, the account with the fewest
    # complaints, offsets it (0.45). Raising the original's merit to 1 moves half of the floor to operator 1,
    # which X's exposure already meets; Z is free to drop to 0.257, and X needs less offsetting: 0.429.
    inputs = _one_segment(cluster=np.array([1, 2, 1, 3]), merit=np.array([0.0, 1.0, 1.0, 1.0]),
                          original=np.array([True, False, False, True]), demand=np.array([0.0, 1.0, 1.0, 1.0]),
                          complaint=np.array([0.0, 0.0546875, 0.0390625, 0.0625]), value=np.zeros(4))
    policy = small_policy("planner.ridge=0.5")
    totals = []
    for merit in (0.0, 1.0):
        program = build_program(replace(inputs, merit=np.array([merit, 1.0, 1.0, 1.0])), policy.planner,
                                policy.budgets)
        totals.append(operator_total(program, solve_cvxpy(program, "clarabel", options=TIGHT).x, 1))
    assert totals[0] == pytest.approx(0.45, abs=1e-4)
    assert totals[1] >= totals[0] - 1e-6  # fails: 0.4286
