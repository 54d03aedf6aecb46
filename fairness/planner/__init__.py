"""The offline planner: amortized exposure targets and dual prices per creator and operator cluster.

Design note /work/shared/design/allocator.md, "Offline planner" and "Why clusters, not accounts". The
program is built from `PlanInputs` and the policy's `planner` and `budgets` sections
(`fairness.planner.program`), solved by HiGHS / Clarabel through cvxpy or, beyond 1e5 pairs, by
ridge-regularized dual ascent (`fairness.planner.dual_ascent`), and published as a versioned
`TrafficPlan` (`fairness.planner.plan`).
"""

from fairness.planner.dual_ascent import solve_dual_ascent
from fairness.planner.inputs import PlanInputError, PlanInputs, merit_lower_bound
from fairness.planner.plan import (
    AUTO_SIZE_LIMIT,
    HIGHS_SIZE_LIMIT,
    LP_RIDGE,
    PlanError,
    TrafficPlan,
    choose_solver,
    load_plan,
    plan_traffic,
    save_plan,
    solve_program,
)
from fairness.planner.program import ExposureProgram, Solution, build_program, solve_cvxpy
from fairness.planner.synthetic import synthetic_inputs

__all__ = [
    "AUTO_SIZE_LIMIT",
    "HIGHS_SIZE_LIMIT",
    "LP_RIDGE",
    "ExposureProgram",
    "PlanError",
    "PlanInputError",
    "PlanInputs",
    "Solution",
    "TrafficPlan",
    "build_program",
    "choose_solver",
    "load_plan",
    "merit_lower_bound",
    "plan_traffic",
    "save_plan",
    "solve_cvxpy",
    "solve_dual_ascent",
    "solve_program",
    "synthetic_inputs",
]
