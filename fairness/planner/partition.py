"""Planning by market: split one large plan into independent per-market programs and merge their plans.

Segments are market x surface (design note /work/shared/design/allocator.md, "Offline planner"). A
platform that caps, floors and budgets each market on its own can plan each market as its own program:
the markets then share nothing, so they solve in parallel (one Ray task each, `experiments/scale/plan.py`)
and the largest plan is bounded by the largest market, not by the platform.

Each market is planned in shares of ITS impressions (its segments' supply renormalized to 1, its demand
divided by its supply share w_m): caps, floors and budgets of the policy then hold per market. Merging
multiplies the market's shares back by w_m (targets, caps, floors, slacks); prices need no scaling, since
they are utility per impression in every program. The objective is the supply-weighted sum.

What differs from one joint program: concave cap and floor shares are shared among a market's clusters,
not the platform's, and each market meets its own budgets (the joint program could trade risk between
markets). On markets that are copies of each other the two coincide (tested), which checks the scaling.

    parts = split_by_market(inputs, market_of_segment)        # list[MarketPart]
    plans = [plan_traffic(part.inputs, policy) for part in parts]   # or one Ray task each
    plan = merge_market_plans(parts, plans, policy, version=7)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairness.planner.inputs import F64, PlanInputError, PlanInputs
from fairness.planner.plan import TrafficPlan, plan_traffic
from fairness.policy import FairnessPolicy

MARKET_SEPARATOR = "/"  # segment "us/content" is surface "content" of market "us"
STATUS_ORDER = ("optimal", "inaccurate")  # a merged plan is as good as its worst market


@dataclass(frozen=True)
class MarketPart:
    """One market's program: its inputs in shares of its own impressions, and its share of all of them."""

    market: str
    weight: float          # w_m: the market's share of all impressions (its segments' supply)
    inputs: PlanInputs     # supply sums to 1 within the market; demand divided by w_m

    @property
    def n_pairs(self) -> int:
        return self.inputs.n_pairs


def market_of_segment(segment: str) -> str:
    """'us/content' -> 'us'; a segment name without the separator is its own market."""
    return segment.split(MARKET_SEPARATOR, 1)[0]


def split_by_market(inputs: PlanInputs, market_of: Callable[[str], str] = market_of_segment) -> list[MarketPart]:
    """Split validated inputs into one program per market (markets in order of first appearance).

    Every creator and every operator cluster must sell in one market only: a creator's cap and a
    cluster's cap couple the markets it spans, and the merged plan holds one price per creator and
    cluster. Raises PlanInputError naming the offenders otherwise.
    """
    inputs.validate()
    segment_market = [market_of(name) for name in inputs.segments]
    markets = list(dict.fromkeys(segment_market))
    market_code = np.array([markets.index(m) for m in segment_market], dtype=np.int64)  # (S,)
    pair_market = market_code[inputs.pair_segment]  # (P,)

    creator_market = np.full(inputs.n_creators, -1, dtype=np.int64)
    creator_market[inputs.pair_creator] = pair_market
    mismatched = pair_market != creator_market[inputs.pair_creator]  # (P,) some other pair of the creator differs
    spans = np.bincount(inputs.pair_creator, weights=mismatched, minlength=inputs.n_creators) > 0
    if spans.any():
        raise PlanInputError(
            f"split_by_market: expected every creator to sell in one market, received {int(spans.sum())} creators "
            f"in several (e.g. ids {inputs.creator[spans][:5].tolist()}); plan those markets jointly with "
            "plan_traffic, or give a cross-market creator one id per market")
    absent = creator_market < 0
    if absent.any():
        raise PlanInputError(
            f"split_by_market: expected every creator to have at least one (creator, segment) pair, received "
            f"{int(absent.sum())} without any (e.g. ids {inputs.creator[absent][:5].tolist()}); drop them")
    cluster_markets = pd.Series(creator_market).groupby(inputs.cluster).nunique()
    shared = cluster_markets[cluster_markets > 1]
    if len(shared):
        raise PlanInputError(
            f"split_by_market: expected every operator cluster in one market, received {len(shared)} clusters "
            f"spanning markets (e.g. {shared.index[:5].tolist()}); give a cross-market operator one cluster id "
            "per market, or plan jointly with plan_traffic")

    parts = []
    for code, market in enumerate(markets):
        segments = np.flatnonzero(market_code == code)
        creators = np.flatnonzero(creator_market == code)
        pairs = np.flatnonzero(pair_market == code)
        weight = float(inputs.supply[segments].sum())
        if weight <= 0:
            raise PlanInputError(f"split_by_market: market {market!r} has no supply (its segments' shares sum to 0); "
                                 "drop its segments and pairs, or give them supply")
        # Positions in the full arrays -> positions in the market's arrays.
        segment_position = np.full(len(inputs.segments), -1, dtype=np.int64)
        segment_position[segments] = np.arange(len(segments))
        creator_position = np.full(inputs.n_creators, -1, dtype=np.int64)
        creator_position[creators] = np.arange(len(creators))
        part = PlanInputs(
            creator=inputs.creator[creators], cluster=inputs.cluster[creators], merit=inputs.merit[creators],
            original=inputs.original[creators], newcomer=inputs.newcomer[creators],
            segments=tuple(inputs.segments[s] for s in segments),
            supply=inputs.supply[segments] / weight,  # the market's own impressions sum to 1
            pair_segment=segment_position[inputs.pair_segment[pairs]],
            pair_creator=creator_position[inputs.pair_creator[pairs]],
            value=inputs.value[pairs], demand=inputs.demand[pairs] / weight,  # shares of the market's impressions
            risk=inputs.risk[pairs], complaint=inputs.complaint[pairs],
        ).validate()
        parts.append(MarketPart(market=market, weight=weight, inputs=part))
    return parts


def merge_market_plans(parts: Sequence[MarketPart], plans: Sequence[TrafficPlan], policy: FairnessPolicy, *,
                       version: int = 1, now: float | None = None, wall_seconds: float | None = None) -> TrafficPlan:
    """One TrafficPlan from the markets' plans: shares scaled back to all impressions, prices as they are."""
    if len(parts) != len(plans) or not parts:
        raise ValueError(f"merge_market_plans: expected one plan per market part, received {len(plans)} plans for "
                         f"{len(parts)} parts")
    share_columns = {"creators": ("cap", "target"), "clusters": ("target", "cap", "floor", "floor_requested",
                                                                  "floor_slack")}
    creators, clusters = [], []
    for part, plan in zip(parts, plans, strict=True):
        scaled = {"creators": plan.creators.copy(), "clusters": plan.clusters.copy()}
        for table, columns in share_columns.items():
            for column in columns:
                scaled[table][column] = scaled[table][column] * part.weight
        creators.append(scaled["creators"])
        clusters.append(scaled["clusters"])
    weights = np.array([part.weight for part in parts])
    budget_names = sorted({name for plan in plans for name in plan.budget_prices})
    # Online blending reads one price per budget: the impression-weighted mean of the markets' prices (each
    # market's own is in stats).
    budget_prices = {name: float(sum(w * plan.budget_prices.get(name, 0.0) for w, plan in zip(weights, plans,
                                                                                                strict=True)))
                     for name in budget_names}
    statuses = [plan.status for plan in plans]
    worst = max(statuses, key=lambda s: STATUS_ORDER.index(s) if s in STATUS_ORDER else len(STATUS_ORDER))
    stats: dict[str, float | int | str] = {
        "markets": len(parts), "pairs": int(sum(part.n_pairs for part in parts)),
        "creators": int(sum(len(plan.creators) for plan in plans)),
        "clusters": int(sum(len(plan.clusters) for plan in plans)),
        "largest_market_pairs": int(max(part.n_pairs for part in parts)),
        "solve_seconds_sum": float(sum(plan.solve_seconds for plan in plans)),
        "utility": float(sum(w * float(plan.stats.get("utility", 0.0)) for w, plan in zip(weights, plans,
                                                                                         strict=True))),
        "market_budget_prices": json.dumps({part.market: plan.budget_prices for part, plan in zip(parts, plans,
                                                                                                  strict=True)}),
    }
    return TrafficPlan(
        version=int(version), policy_name=policy.name, policy_fingerprint=policy.fingerprint(),
        created_at=time.time() if now is None else float(now),
        horizon_rounds=float(policy.planner.horizon_rounds), ttl_seconds=float(policy.planner.ttl_seconds),
        creators=pd.concat(creators).sort_values("creator", kind="stable").reset_index(drop=True),
        clusters=pd.concat(clusters).sort_values("cluster", kind="stable").reset_index(drop=True),
        budget_prices=budget_prices,
        segment_prices={name: price for plan in plans for name, price in plan.segment_prices.items()},
        status=worst, objective=float(weights @ np.array([plan.objective for plan in plans])),
        solver=",".join(sorted({plan.solver for plan in plans})),
        solve_seconds=float(wall_seconds if wall_seconds is not None else stats["solve_seconds_sum"]),
        # A market's relaxations are stated in shares of that market's impressions.
        relaxed=tuple(f"{part.market}: {text}" for part, plan in zip(parts, plans, strict=True)
                      for text in plan.relaxed),
        stats=stats,
    )


def plan_by_market(inputs: PlanInputs, policy: FairnessPolicy, *, version: int = 1, now: float | None = None,
                   market_of: Callable[[str], str] = market_of_segment,
                   parts: Sequence[MarketPart] | None = None) -> TrafficPlan:
    """Split (unless `parts` are given), plan every market in this process one after another, merge.

    `experiments/scale/plan.py` does the same with one Ray task per market.
    """
    started = time.perf_counter()
    parts = list(parts) if parts is not None else split_by_market(inputs, market_of)
    plans = [plan_traffic(part.inputs, policy, version=version, now=now) for part in parts]
    return merge_market_plans(parts, plans, policy, version=version, now=now,
                              wall_seconds=time.perf_counter() - started)


def synthetic_markets(n_markets: int, pairs_per_market: int, rng: np.random.Generator, *,
                      supply: F64 | None = None) -> PlanInputs:
    """`n_markets` independent synthetic markets (`synthetic_inputs` each, disjoint creator and cluster ids),
    segments 'm00/content', 'm00/shelf', ...; market supply shares `supply` (default: equal)."""
    from fairness.planner.synthetic import synthetic_inputs

    shares = np.full(n_markets, 1.0 / n_markets) if supply is None else np.asarray(supply, np.float64)
    if len(shares) != n_markets or (shares <= 0).any():
        raise ValueError(f"synthetic_markets: expected {n_markets} positive market shares, received {shares}")
    shares = shares / shares.sum()
    markets = [synthetic_inputs(pairs_per_market, rng) for _ in range(n_markets)]
    return concat_markets(markets, [f"m{m:02d}" for m in range(n_markets)], shares)


def concat_markets(markets: Sequence[PlanInputs], names: Sequence[str], shares: F64) -> PlanInputs:
    """Stack per-market inputs (each with supply summing to 1) into one platform's inputs: ids are offset so
    that markets share no creator or cluster, segment names get the market prefix, supply is scaled by the
    market's share and demand with it."""
    id_offset = segment_offset = creator_rows = 0
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in (
        "creator", "cluster", "merit", "original", "newcomer", "supply", "pair_segment", "pair_creator", "value",
        "demand", "risk", "complaint")}
    segments: list[str] = []
    for market, name, share in zip(markets, names, shares, strict=True):
        low = min(int(market.creator.min()), int(market.cluster.min()))
        high = max(int(market.creator.max()), int(market.cluster.max()))
        pieces["creator"].append(market.creator - low + id_offset)
        pieces["cluster"].append(market.cluster - low + id_offset)
        for field_name in ("merit", "original", "newcomer", "value", "risk", "complaint"):
            pieces[field_name].append(getattr(market, field_name))
        pieces["supply"].append(market.supply * share)
        pieces["demand"].append(market.demand * share)
        pieces["pair_segment"].append(market.pair_segment + segment_offset)
        pieces["pair_creator"].append(market.pair_creator + creator_rows)
        segments.extend(f"{name}{MARKET_SEPARATOR}{segment}" for segment in market.segments)
        id_offset += high - low + 1
        segment_offset += len(market.segments)
        creator_rows += market.n_creators
    arrays = {name: np.concatenate(values) for name, values in pieces.items()}
    arrays["supply"] = arrays["supply"] / arrays["supply"].sum()  # exact 1 after float rounding
    return PlanInputs(segments=tuple(segments), **arrays).validate()
