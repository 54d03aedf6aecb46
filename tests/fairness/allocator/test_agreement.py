"""The fast solver and the cvxpy reference give the same weights, on problems where every constraint binds.

3,000 small requests (1-40 candidates, drawn by tests/fairness/allocator/cases.py in four seeded chunks)
and 240 synthetic requests of 100-1,000 candidates. Duals may be non-unique in degenerate problems, so
only weights are compared here; test_kkt checks each solver's multipliers on its own. The coverage
tests make sure the draws keep exercising every constraint kind and every regime.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import pytest

from fairness.allocator.fast import solve_fast
from fairness.allocator.problem import Allocation, AllocationProblem, build_problem
from fairness.allocator.reference import MIN_BUCKET, ReferenceAllocator, bucket_size
from tests.fairness.allocator.cases import (
    CONSTRAINT_KINDS,
    binding_kinds,
    small_cases,
    synthetic_problems,
)

AGREEMENT = 1e-6
SMALL_SEEDS = (0, 1, 2, 3)
SMALL_PER_SEED = 750
SYNTHETIC_SEED = 100
SYNTHETIC_COUNT = 240


@dataclass
class Outcome:
    label: str  # how to rebuild the problem: "small seed s #i" or "synthetic #i"
    problem: AllocationProblem
    fast: Allocation
    ref: Allocation
    tags: frozenset[str]

    @property
    def gap(self) -> float:
        return float(np.max(np.abs(self.fast.weights - self.ref.weights)))


@pytest.fixture(scope="module")
def small_outcomes(reference: ReferenceAllocator) -> list[Outcome]:
    out = []
    for seed in SMALL_SEEDS:
        for i, case in enumerate(small_cases(seed, SMALL_PER_SEED)):
            out.append(Outcome(f"small_cases({seed}, {SMALL_PER_SEED})[{i}]", case.problem, solve_fast(case.problem),
                               reference.solve(case.problem), case.tags))
    return out


@pytest.fixture(scope="module")
def synthetic_outcomes(reference: ReferenceAllocator) -> list[Outcome]:
    problems = synthetic_problems(SYNTHETIC_SEED, SYNTHETIC_COUNT)
    label = f"synthetic_problems({SYNTHETIC_SEED}, {SYNTHETIC_COUNT})"
    return [Outcome(f"{label}[{i}]", p, solve_fast(p), reference.solve(p), frozenset()) for i, p in enumerate(problems)]


def _worst(outcomes: list[Outcome], k: int = 5) -> str:
    ranked = sorted(outcomes, key=lambda o: -o.gap)[:k]
    return "; ".join(f"{o.label}: max |w_fast - w_ref| = {o.gap:.2e}" for o in ranked)


def test_small_problems_agree(small_outcomes: list[Outcome]) -> None:
    assert len(small_outcomes) == len(SMALL_SEEDS) * SMALL_PER_SEED
    bad = [o for o in small_outcomes if not o.gap <= AGREEMENT]
    assert not bad, f"{len(bad)} of {len(small_outcomes)} disagree beyond {AGREEMENT:g}: {_worst(bad)}"


def test_synthetic_problems_agree(synthetic_outcomes: list[Outcome]) -> None:
    sizes = [len(o.problem.value) for o in synthetic_outcomes]
    assert min(sizes) >= 100
    assert max(sizes) <= 1000
    assert max(sizes) > 700
    bad = [o for o in synthetic_outcomes if not o.gap <= AGREEMENT]
    assert not bad, f"{len(bad)} of {len(synthetic_outcomes)} disagree beyond {AGREEMENT:g}: {_worst(bad)}"


def test_both_solvers_relax_the_same_way(small_outcomes: list[Outcome]) -> None:
    for o in small_outcomes:
        assert o.fast.relaxations == o.ref.relaxations, o.label
        assert o.fast.problem is not None
        assert o.ref.problem is not None
        np.testing.assert_array_equal(o.fast.problem.cap, o.ref.problem.cap, err_msg=o.label)
        np.testing.assert_array_equal(o.fast.problem.floor, o.ref.problem.floor, err_msg=o.label)


def test_every_constraint_kind_binds(small_outcomes: list[Outcome], synthetic_outcomes: list[Outcome]) -> None:
    """Over the suite, each constraint kind carries a positive multiplier (in both solvers) in many problems."""
    for name, outcomes, least in (("small", small_outcomes, 150), ("synthetic", synthetic_outcomes, 20)):
        fast: Counter[str] = Counter()
        both: Counter[str] = Counter()
        for o in outcomes:
            kinds = binding_kinds(o.fast)
            fast.update(kinds)
            both.update(kinds & binding_kinds(o.ref, tol=1e-6))
        for kind in CONSTRAINT_KINDS:
            assert fast[kind] >= least, f"{name}: {kind} binds in only {fast[kind]} problems: {dict(fast)}"
            assert both[kind] >= least // 2, f"{name}: {kind} binds in both solvers in only {both[kind]}: {dict(both)}"


def test_every_regime_is_drawn(small_outcomes: list[Outcome]) -> None:
    """Ties, zero caps, single candidates, all / no originals, tau from 1e-3 to 10, relaxations of each kind."""
    tags: Counter[str] = Counter()
    relaxed: Counter[str] = Counter()
    for o in small_outcomes:
        tags.update(o.tags)
        relaxed.update({r.constraint for r in o.fast.relaxations})
    for tag in ("single", "ties", "zero_item_cap", "zero_creator_cap", "zero_cluster_cap", "all_originals",
                "no_originals", "tiny_tau", "mid_tau", "large_tau"):
        assert tags[tag] >= 100, f"regime {tag} drawn only {tags[tag]} times: {dict(tags)}"
    for kind in CONSTRAINT_KINDS:
        assert relaxed[kind] >= 100, f"{kind} relaxed in only {relaxed[kind]} problems: {dict(relaxed)}"
    taus = np.array([float(o.problem.tau[0]) for o in small_outcomes])
    assert taus.min() < 1.2e-3
    assert taus.max() > 8.0
    # the single-candidate requests put all traffic on it, whatever its caps were
    singles = [o for o in small_outcomes if "single" in o.tags]
    np.testing.assert_allclose([o.fast.weights[0] for o in singles], 1.0, atol=1e-12)


def test_tied_values_split_evenly() -> None:
    """Equal values and no binding caps: the unique answer is uniform, in both solvers."""
    problem = build_problem(np.full(5, 0.3), creator_ids=np.arange(5), cluster_ids=np.arange(5),
                            original=np.zeros(5, bool), tau=1e-3)
    np.testing.assert_allclose(solve_fast(problem).weights, 0.2, atol=1e-15)
    np.testing.assert_allclose(ReferenceAllocator(tolerance=1e-12).solve(problem).weights, 0.2, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# the reference program is DPP, compiled once per size bucket and reused


def test_bucket_sizes() -> None:
    assert [bucket_size(n) for n in (1, 16, 17, 32, 33, 1000, 1024, 1025)] == [16, 16, 32, 32, 64, 1024, 1024, 2048]
    assert bucket_size(1) == MIN_BUCKET


def test_reference_program_is_dpp_and_compiled_once() -> None:
    rng = np.random.default_rng(7)
    ref = ReferenceAllocator(tolerance=1e-12)
    first = synthetic_problems(7, 1, low=20, high=30)[0]
    program = ref.program(len(first.value))
    assert program.problem.is_dpp()
    assert program.problem.is_dcp(dpp=True)
    ref.solve(first)  # solves with enforce_dpp=True: a non-DPP program would raise cvxpy.error.DPPError here
    compiled = program.problem._cache.param_prog
    chain = program.problem._cache.solving_chain
    assert compiled is not None
    # the same bucket again (another size, other values): the same program object and the same compiled form
    second = build_problem(rng.normal(size=25), creator_ids=np.arange(25) // 2, cluster_ids=np.arange(25) // 6,
                           original=rng.random(25) < 0.5, tau=0.1, item_cap=0.1, floor=0.3)
    assert ref.program(len(second.value)) is program
    allocation = ref.solve(second)
    assert program.problem._cache.param_prog is compiled
    assert program.problem._cache.solving_chain is chain
    np.testing.assert_allclose(allocation.weights, solve_fast(second).weights, atol=AGREEMENT)
    # a new bucket compiles a new program; the old one is kept
    assert ref.program(40) is not program
    assert ref.program(32) is program
    # and the program solves directly with enforce_dpp=True (what the reference does) without raising
    program.problem.solve(solver=cp.CLARABEL, enforce_dpp=True)
    assert program.problem._cache.param_prog is compiled
