"""Seeded random allocation problems for the allocator tests, drawn so that every constraint kind binds.

`small_case(rng)` draws one request of 1-40 candidates from a mixture of regimes: values normal, tied
or all equal; tau log-uniform in [1e-3, 10]; per-candidate, per-creator and per-cluster caps that are
loose, tight (around 1/count, often too tight to hold all the traffic) or partly zero; no, some or all
eligible originals; no floor, a random floor or a floor of 1. Each case records how it was drawn
(`tags`) so the suites can count that every regime actually occurred.

`binding_kinds(allocation)` says which constraint kinds carry a positive multiplier in a solution;
`kkt_violations(allocation)` checks a solution against the KKT conditions documented on `Allocation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fairness.allocator.problem import Allocation, AllocationProblem, build_problem
from fairness.allocator.synthetic import random_problem

CONSTRAINT_KINDS = ("item_cap", "creator_cap", "cluster_cap", "originals_floor")


@dataclass(frozen=True)
class Case:
    """One request: the build_problem arguments (per-candidate arrays), the problem and how it was drawn."""

    kwargs: dict[str, Any]
    problem: AllocationProblem
    tags: frozenset[str]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _group_caps(rng: np.random.Generator, n_groups: int, tags: set[str], name: str) -> np.ndarray:
    """Per-group caps: loose (1), tight (around 1 / n_groups, often infeasible), or tight with some zeros."""
    mode = rng.choice(["loose", "tight", "tight", "zeros"])
    if mode == "loose":
        return np.ones(n_groups)
    caps = np.minimum(rng.uniform(0.3, 2.0, n_groups) / n_groups, 1.0)
    if mode == "zeros" or rng.random() < 0.05:
        caps[rng.random(n_groups) < 0.3] = 0.0
        if rng.random() < 0.15:
            caps[:] = 0.0
        if (caps == 0).any():
            tags.add(f"zero_{name}")
    return caps


def small_case(rng: np.random.Generator) -> Case:
    """One request with 1-40 candidates from a mixture of regimes (see the module docstring)."""
    tags: set[str] = set()
    u = rng.random()
    n = 1 if u < 0.06 else int(rng.integers(2, 8)) if u < 0.4 else int(rng.integers(8, 41))
    if n == 1:
        tags.add("single")

    # nesting: creators (some with several candidates) inside clusters (some with several creators);
    # ids are arbitrary integers, negative and sparse ones included
    n_creators = n if rng.random() < 0.3 else int(rng.integers(1, n + 1))
    item_creator = rng.integers(0, n_creators, n)
    n_clusters = int(rng.integers(1, n_creators + 1))
    creator_cluster = rng.integers(0, n_clusters, n_creators)
    creator_ids = 7919 * item_creator - 50_000
    cluster_ids = 104_729 * creator_cluster[item_creator] + 3

    mode = rng.choice(["normal", "normal", "ties", "equal"])
    if mode == "normal":
        value = rng.normal(size=n) * rng.choice([0.1, 1.0, 3.0])
    elif mode == "ties":
        value = rng.choice([-0.5, 0.0, 0.25, 1.0], size=n)
        tags.add("ties")
    else:
        value = np.full(n, rng.normal())
        tags.add("ties")
    tau = _log_uniform(rng, 1e-3, 10.0)
    tags.add("tiny_tau" if tau < 1e-2 else "large_tau" if tau > 1.0 else "mid_tau")

    cap_mode = rng.choice(["loose", "tight", "mixed", "zeros"])
    if cap_mode == "loose":
        item_cap = np.ones(n)
    elif cap_mode == "tight":
        item_cap = np.full(n, min(1.0, rng.uniform(0.5, 3.0) / n))
    else:
        item_cap = np.minimum(rng.uniform(0.0, 1.0, n) * (rng.uniform(0.5, 3.0) / n) ** rng.random(), 1.0)
        if cap_mode == "zeros":
            item_cap[rng.random(n) < 0.3] = 0.0
            if rng.random() < 0.1:
                item_cap[:] = 0.0
    if (item_cap == 0).any():
        tags.add("zero_item_cap")
    creator_cap = _group_caps(rng, n_creators, tags, "creator_cap")[item_creator]
    cluster_cap = _group_caps(rng, n_clusters, tags, "cluster_cap")[creator_cluster[item_creator]]

    o = rng.random()
    share = 0.0 if o < 0.12 else 1.0 if o < 0.24 else rng.uniform(0.1, 0.6)
    original = rng.random(n) < share if 0.0 < share < 1.0 else np.full(n, share == 1.0)
    if not original.any():
        tags.add("no_originals")
    if original.all():
        tags.add("all_originals")
    f = rng.random()
    floor = 0.0 if f < 0.25 else 1.0 if f < 0.35 else float(rng.uniform(0.0, 1.0))

    kwargs: dict[str, Any] = {
        "value": value, "creator_ids": creator_ids, "cluster_ids": cluster_ids, "original": original, "tau": tau,
        "item_cap": item_cap, "creator_cap": creator_cap, "cluster_cap": cluster_cap, "floor": floor,
    }
    return Case(kwargs=kwargs, problem=build_problem(**kwargs), tags=frozenset(tags))


def small_cases(seed: int, count: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    return [small_case(rng) for _ in range(count)]


def synthetic_problems(seed: int, count: int, *, low: int = 100, high: int = 1000) -> list[AllocationProblem]:
    """synthetic.random_problem at n log-uniform in [low, high]; a third each with no floor, the default
    floor and a varied tau / cap / floor setting."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = round(_log_uniform(rng, low, high))
        if k % 3 == 0:
            out.append(random_problem(n, rng, floor=0.0))
        elif k % 3 == 1:
            out.append(random_problem(n, rng))
        else:
            out.append(random_problem(n, rng, tau=_log_uniform(rng, 1e-3, 1.0), item_cap=rng.uniform(0.005, 0.1),
                                      creator_cap=rng.uniform(0.01, 0.2), cluster_cap=rng.uniform(0.02, 0.3),
                                      floor=rng.uniform(0.0, 0.9)))
    return out


def batch_kwargs(cases: list[Case]) -> dict[str, Any]:
    """build_problem arguments that put the cases' requests side by side (request r = cases[r])."""
    sizes = [len(c.kwargs["value"]) for c in cases]
    out: dict[str, Any] = {}
    for name in ("value", "creator_ids", "cluster_ids", "original", "item_cap", "creator_cap", "cluster_cap"):
        out[name] = np.concatenate([np.asarray(c.kwargs[name]) for c in cases])
    out["tau"] = np.array([c.kwargs["tau"] for c in cases], dtype=float)
    out["floor"] = np.array([c.kwargs["floor"] for c in cases], dtype=float)
    out["request"] = np.repeat(np.arange(len(cases)), sizes)
    return out


# ---------------------------------------------------------------------------------------------------------------
# solution checks shared by the suites


def group_sums(allocation: Allocation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(creator sums (A,), cluster sums (G,), request sums (R,), originals sums (R,)) of the weights."""
    p = allocation.problem
    assert p is not None
    w = allocation.weights
    creator = np.bincount(p.creator, weights=w, minlength=len(p.creator_cap))
    cluster = np.bincount(p.creator_cluster, weights=creator, minlength=len(p.cluster_cap))
    request = np.bincount(p.cluster_request, weights=cluster, minlength=p.n_requests)
    originals = np.bincount(p.request, weights=np.where(p.original, w, 0.0), minlength=p.n_requests)
    return creator, cluster, request, originals


def binding_kinds(allocation: Allocation, *, tol: float = 1e-9) -> set[str]:
    """Constraint kinds with a positive multiplier (a constraint that shapes the answer) in the solution."""
    kinds = set()
    for kind, price in (("item_cap", allocation.cap_price), ("creator_cap", allocation.creator_price),
                        ("cluster_cap", allocation.cluster_price), ("originals_floor", allocation.floor_price)):
        if (np.asarray(price) > tol).any():
            kinds.add(kind)
    return kinds


def kkt_violations(allocation: Allocation, *, tol: float) -> list[str]:
    """Every way the allocation fails the KKT conditions of its (relaxed) problem, as readable lines.

    Primal feasibility, dual feasibility (multipliers >= 0 except sum_price), stationarity (the clip
    formula of `Allocation` reproduces the weights, and the item-cap multiplier is the excess over the cap)
    and complementary slackness (a multiplier above tol only where its constraint is tight within tol).
    """
    p = allocation.problem
    assert p is not None
    w = allocation.weights
    out: list[str] = []

    def check(name: str, bad: np.ndarray, detail: np.ndarray) -> None:
        if np.any(bad):
            where = np.flatnonzero(bad)
            out.append(f"{name}: {len(where)} violations, first at {int(where[0])} ({float(detail[where[0]]):.3e})")

    creator_sum, cluster_sum, request_sum, originals_sum = group_sums(allocation)
    # primal feasibility
    check("sum w = 1", np.abs(request_sum - 1.0) > tol, request_sum - 1.0)
    check("w >= 0", w < -tol, w)
    check("w <= cap", w > p.cap + tol, w - p.cap)
    check("creator sum <= cap", creator_sum > p.creator_cap + tol, creator_sum - p.creator_cap)
    check("cluster sum <= cap", cluster_sum > p.cluster_cap + tol, cluster_sum - p.cluster_cap)
    check("originals >= floor", originals_sum < p.floor - tol, originals_sum - p.floor)
    # dual feasibility
    for name, price in (("floor_price", allocation.floor_price), ("creator_price", allocation.creator_price),
                        ("cluster_price", allocation.cluster_price), ("cap_price", allocation.cap_price)):
        check(f"{name} >= 0", price < -tol, price)
    for name, price in (("sum_price", allocation.sum_price), ("floor_price", allocation.floor_price),
                        ("creator_price", allocation.creator_price), ("cluster_price", allocation.cluster_price),
                        ("cap_price", allocation.cap_price)):
        check(f"{name} finite", ~np.isfinite(price), price)
    if out:
        return out
    # stationarity: w_i = clip((v_i + mu [original] - nu - lambda_cluster - lambda_creator) / tau, 0, cap_i)
    request, cluster = p.request, p.cluster
    tau = p.tau[request]
    excess = (p.value + np.where(p.original, allocation.floor_price[request], 0.0) - allocation.sum_price[request]
              - allocation.cluster_price[cluster] - allocation.creator_price[p.creator])
    predicted = np.clip(excess / tau, 0.0, p.cap)
    check("stationarity (clip formula)", np.abs(predicted - w) > tol, predicted - w)
    # the item-cap multiplier is what the cap holds back, max(0, excess - tau cap); at a zero cap the
    # constraints w >= 0 and w <= 0 share that role, so there it is only bounded below
    cap_excess = np.maximum(excess - tau * p.cap, 0.0)
    positive = p.cap > tol
    check("cap_price = max(0, excess - tau cap)", positive & (np.abs(allocation.cap_price - cap_excess) > tol),
          allocation.cap_price - cap_excess)
    # (a cap within tol of 0 counts as zero; its multiplier is then excess - tau cap, not excess: with tau 10
    # a cap of 1e-9 holds back 1e-8 less)
    check("cap_price >= excess at a zero cap", ~positive & (allocation.cap_price < cap_excess - tol),
          allocation.cap_price - cap_excess)
    # complementary slackness
    check("cap_price > 0 off its cap", (allocation.cap_price > tol) & (w < p.cap - tol), allocation.cap_price)
    check("creator_price > 0 off its cap", (allocation.creator_price > tol) & (creator_sum < p.creator_cap - tol),
          allocation.creator_price)
    check("cluster_price > 0 off its cap", (allocation.cluster_price > tol) & (cluster_sum < p.cluster_cap - tol),
          allocation.cluster_price)
    check("floor_price > 0 above the floor", (allocation.floor_price > tol) & (originals_sum > p.floor + tol),
          allocation.floor_price)
    return out
