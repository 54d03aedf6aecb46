"""The marketplace story: the initial world, and one round in the numbered steps of docs/simulator.md.

Randomness comes from `Streams`: one SeedSequence per (seed, stream, round), so a component's draws
in round t do not depend on how many numbers other components used before. Two policies run on the
same seed therefore face the same initial world, the same users waking up, the same response
uniforms per (user, slot), and the same entrants' draws: common random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.config import ScenarioConfig
from experiments.policies.base import Policy, Slate
from experiments.simulator import adversaries, creators, users
from experiments.simulator.observation import Observation, observe, reveal_truth
from experiments.simulator.retrieval import Retrieved, bucket_users, retrieve
from experiments.simulator.state import (
    F64,
    I64,
    INCUMBENT,
    MATRIX,
    Accounts,
    Detector,
    Items,
    Operators,
    World,
)

STREAMS = ("world", "production", "users", "retrieval", "responses", "churn", "entry", "adversaries",
           "detector", "policy", "labels")


class Streams:
    """Independent, reproducible random streams keyed by (seed, stream name, round)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def at(self, stream: str, round_: int = -1) -> np.random.Generator:
        key = (STREAMS.index(stream), round_ + 1)
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=key))


def initial_world(config: ScenarioConfig, streams: Streams) -> World:
    rng = streams.at("world")
    dim = config.users.dim
    centres = creators.unit_rows(rng.standard_normal((config.users.taste_clusters, dim)))
    population = users.initial_users(config, centres, rng)
    prototypes, user_bucket = bucket_users(population.taste, config.retrieval.buckets, rng)
    world = World(
        users=population, operators=Operators.empty(dim), prototypes=prototypes, user_bucket=user_bucket,
        accounts=Accounts.empty(dim, config.run.rounds), items=_empty_items(dim),
        detector=Detector(recall=config.detector.initial_recall),
        strategies=adversaries.initial_strategies(config), centers=centres,
    )
    n_ops = config.accounts.initial_operators
    types = rng.choice(4, size=n_ops, p=_normalized(config.accounts.prior_vector())).astype(np.int64)
    new = creators.create_operators(world, config, types, round_=0, cohort=INCUMBENT, rng=rng)
    if config.wave.matrix_operators:
        farms = np.full(config.wave.matrix_operators, MATRIX, dtype=np.int64)
        new = np.concatenate([new, creators.create_operators(
            world, config, farms, round_=0, cohort=INCUMBENT, rng=rng, matrix_size=config.wave.matrix_operator_size)])
    creators.seed_legacy_popularity(world, config, new, rng)
    # Seed live items with ages spread over the lifetime so the pool starts in steady state.
    counts = rng.poisson(config.accounts.initial_items_per_account, size=world.accounts.n)
    born = -rng.integers(0, config.items.lifetime, size=int(counts.sum()))
    creators.produce(world, config, counts, born.astype(np.int64), rng)
    return world


@dataclass(frozen=True)
class RoundRecord:
    """Everything a round produced that metrics and logs need."""

    round: int
    retrieved: Retrieved
    slate: Slate
    shown: I64  # (R, K) item rows (into the item arrays of this round)
    observation: Observation
    responses: users.Responses
    user_value: F64  # (R,)
    item_exposure: F64  # (N,) this round, per live item row (rows valid until the next round starts)
    account_impressions: F64  # (A,) this round
    account_exposure: F64  # (A,) this round
    entrants: I64  # account ids
    audit_miss_share: float  # share of live duplicates the audit found undetected; NaN between audits


def play_round(world: World, config: ScenarioConfig, policy: Policy, streams: Streams) -> RoundRecord:
    t = world.round
    acc, items = world.accounts, world.items

    # 1. Production: new items, expired items leave the pool.
    creators.expire_items(world, config, t)
    production_rng = streams.at("production", t)
    counts = production_rng.poisson(np.where(acc.alive, acc.production_rate[: acc.n], 0.0))
    n_before = items.n
    costs = creators.produce(world, config, counts.astype(np.int64), np.full(acc.n, t, np.int64), production_rng)
    items = world.items
    new = np.arange(n_before, items.n)
    duplicates = items.is_copy[new] | (acc.type[items.account[new]] == MATRIX)
    adversaries.drift(world, config, items.obfuscation[new][duplicates])

    # 2. Requests and retrieval (identical for every policy).
    user_rng = streams.at("users", t)
    active = users.active_users(world.users, t, user_rng.random(world.users.n))
    # Drawn for every user and slot before the policy acts: the same per (user, slot) whatever is shown.
    response_uniforms = streams.at("responses", t).random((world.users.n, config.ranking.slots,
                                                           users.RESPONSE_UNIFORMS))
    retrieved = retrieve(world, config, active, streams.at("retrieval", t))

    # 3. Ranking: the policy sees the observable view only (the oracle also gets the truth).
    observation = observe(world, config, retrieved, t)
    truth = reveal_truth(world, config, retrieved) if policy.uses_ground_truth else None
    slate = policy.rank(observation, rng=streams.at("policy", t), truth=truth)
    _check_slate(slate, observation, policy.name)
    shown = np.take_along_axis(retrieved.rows, slate.positions, axis=1)  # (R, K)
    shown_affinity = np.take_along_axis(retrieved.affinity, slate.positions, axis=1)
    k = shown.shape[1]

    # 4. Users respond, position-biased.
    responses = users.respond(world, config, active, shown, shown_affinity, response_uniforms[active, :k])
    users.remember(world.users, active, items.root[shown], items.id[shown])

    # 5. Churn.
    user_value = users.churn(world.users, config, active, responses, t, streams.at("churn", t))

    # Book-keeping per account: impressions, exposure and outcomes.
    n = acc.n
    owner = items.account[shown].ravel()
    slot_weight = np.broadcast_to(users.examination(k), shown.shape).ravel()  # (R * K,) examination

    def per_account(values: np.ndarray) -> F64:
        # Weighted bincounts are float64 at runtime; numpy's stubs say intp, hence the no-copy astype.
        return np.bincount(owner, weights=values.ravel(), minlength=n).astype(np.float64, copy=False)

    impressions = per_account(np.ones(shown.size))
    exposure = per_account(slot_weight)
    clicks, purchases = per_account(responses.click), per_account(responses.purchase)
    complaints, gmv = per_account(responses.complaint), per_account(responses.gmv)
    acc.impressions[:n] += impressions
    acc.exposure[:n] += exposure
    acc.clicks[:n] += clicks
    acc.purchases[:n] += purchases
    acc.complaints[:n] += complaints
    acc.gmv[:n] += gmv
    acc.impressions_hist[:n, t] = impressions
    acc.exposure_hist[:n, t] = exposure
    item_exposure = np.bincount(shown.ravel(), weights=slot_weight, minlength=items.n).astype(np.float64, copy=False)
    items.recent_exposure = config.items.recent_exposure_decay * items.recent_exposure + item_exposure

    # 6. Popularity feedback: the rich-get-richer loop.
    if config.popularity.feedback:
        acc.popularity[:n] = (config.popularity.decay * acc.popularity[:n] + clicks
                              + config.popularity.purchase_weight * purchases)

    # 7. Creators: utility, satisfaction, exit.
    creators.settle(world, config, t, impressions=impressions, gmv=gmv, costs=costs)

    # 8. Entry.
    entrants = creators.enter(world, config, t, streams.at("entry", t))

    # 9. Adversaries adapt; the detector is retrained on schedule.
    if config.adversaries.adaptive and (t + 1) % config.adversaries.update_every == 0:
        adversaries.update_strategies(world, config, t, streams.at("adversaries", t))
    audit = float("nan")
    if (t + 1) % config.detector.retrain_every == 0:
        audit = adversaries.retrain(world, config, streams.at("detector", t))

    world.round = t + 1
    return RoundRecord(
        round=t, retrieved=retrieved, slate=slate, shown=shown, observation=observation,
        responses=responses, user_value=user_value, item_exposure=item_exposure,
        account_impressions=impressions, account_exposure=exposure, entrants=entrants, audit_miss_share=audit,
    )


def _check_slate(slate: Slate, obs: Observation, name: str) -> None:
    rows, cols = obs.candidates.shape
    expected = (rows, obs.n_slots)
    if slate.positions.shape != expected or slate.propensity.shape != expected:
        raise ValueError(f"policy {name!r} returned positions {slate.positions.shape} and propensity "
                         f"{slate.propensity.shape}; expected both {expected} (requests, slots)")
    if rows and (slate.positions.min() < 0 or slate.positions.max() >= cols):
        raise ValueError(f"policy {name!r} returned candidate columns outside [0, {cols}); "
                         "positions index the candidate columns of the observation")
    if rows and (np.sort(slate.positions, axis=1)[:, 1:] == np.sort(slate.positions, axis=1)[:, :-1]).any():
        raise ValueError(f"policy {name!r} placed the same candidate in two slots of one request")


def _normalized(weights: list[float]) -> F64:
    w = np.asarray(weights, dtype=np.float64)
    return w / float(w.sum())


def _empty_items(dim: int) -> Items:
    z = np.zeros(0)
    zi = np.zeros(0, np.int64)
    zb = np.zeros(0, bool)
    return Items(id=zi, account=zi, embedding=np.zeros((0, dim)), quality=z, price=z, defect_rate=z,
                 is_original=zb, is_copy=zb, violation=zb, source=zi, root=zi, born=zi, obfuscation=z,
                 quality_signal=z, originality=z, detected_dup=zi, recent_exposure=z)
