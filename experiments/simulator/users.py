"""Users: tastes, daily activity, position-biased responses and churn (story steps 2, 4 and 5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator.creators import unit_rows
from experiments.simulator.state import F64, I64, B, Users, World

RESPONSE_UNIFORMS = 5  # click, purchase, engagement, complaint, duplicate report


def initial_users(config: ScenarioConfig, centres: F64, rng: np.random.Generator) -> Users:
    cfg = config.users
    cluster = rng.integers(0, cfg.taste_clusters, size=cfg.n_users)
    taste = unit_rows(centres[cluster] + cfg.taste_spread * rng.standard_normal((cfg.n_users, cfg.dim)))
    return Users(
        taste=taste,
        activity=rng.beta(cfg.activity_alpha, cfg.activity_beta, cfg.n_users),
        price_sensitivity=rng.lognormal(0.0, cfg.price_sensitivity_sigma, cfg.n_users),
        patience=np.full(cfg.n_users, cfg.patience), dormant_until=np.zeros(cfg.n_users, np.int64),
        seen=np.full((cfg.n_users, cfg.seen_memory), -1, np.int64),
        seen_items=np.full((cfg.n_users, cfg.seen_memory), -1, np.int64), seen_next=np.zeros(cfg.n_users, np.int64),
    )


def active_users(users: Users, round_: int, uniforms: F64) -> I64:
    """Users who open the app this round: awake and a Bernoulli(activity) draw."""
    return np.flatnonzero((users.dormant_until <= round_) & (uniforms < users.activity))


def examination(slots: int) -> F64:
    """Position-based examination probability e_k = 1 / log2(k + 1), k = 1..K."""
    return 1.0 / np.log2(np.arange(2, slots + 2))


def sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Expectations:
    """True per-candidate response probabilities (slot 1), the oracle's view; all (R, M) or (R, K)."""

    p_click: F64  # click probability before position bias and duplicate effects
    p_purchase: F64  # purchase | click
    p_engage: F64  # engagement | click
    p_complaint: F64  # complaint | purchase
    price: F64


def expectations(world: World, config: ScenarioConfig, user: I64, item_rows: I64, affinity: F64) -> Expectations:
    """Ground-truth response model evaluated for (request, candidate) pairs."""
    items, acc, r = world.items, world.accounts, config.response
    quality = items.quality[item_rows]
    owner = items.account[item_rows]
    gaming = acc.gaming[owner]
    price = items.price[item_rows]
    sensitivity = world.users.price_sensitivity[user][:, None]
    p_click = sigmoid(r.click_intercept + r.click_affinity * affinity + r.click_quality * quality
                      + r.click_popularity * np.log1p(acc.popularity[owner]) + r.click_gaming * gaming)
    p_purchase = sigmoid(r.purchase_intercept + r.purchase_quality * quality + r.purchase_affinity * affinity
                         - sensitivity * (np.log(price) - r.price_reference))
    p_engage = sigmoid(r.engage_intercept + r.engage_quality * quality + r.engage_affinity * affinity
                       + r.engage_gaming * gaming)
    p_complaint = np.clip(items.defect_rate[item_rows] + r.complaint_gaming * gaming * (1.0 - quality), 0.0, 1.0)
    return Expectations(p_click=p_click, p_purchase=p_purchase, p_engage=p_engage, p_complaint=p_complaint,
                        price=price)


@dataclass(frozen=True)
class Responses:
    """Sampled outcomes for shown items, all (R, K)."""

    click: B
    purchase: B
    engage: B
    complaint: B
    gmv: F64
    duplicate: B


def respond(world: World, config: ScenarioConfig, user: I64, shown: I64, affinity: F64,
            uniforms: F64) -> Responses:
    """Sample clicks, purchases, engagement and complaints for the shown slates (R, K).

    `uniforms` is (R, K, 5), drawn per (user, slot) before the policy acts: common random numbers.
    """
    r = config.response
    n_slots = shown.shape[1]
    truth = expectations(world, config, user, shown, affinity)
    duplicate = seen_before(world.users, user, world.items.root[shown])
    p_click = examination(n_slots)[None, :] * truth.p_click * np.where(duplicate, r.duplicate_click_factor, 1.0)
    click = uniforms[..., 0] < p_click
    purchase = click & (uniforms[..., 1] < truth.p_purchase)
    engage = click & (uniforms[..., 2] < truth.p_engage)
    complaint = ((purchase & (uniforms[..., 3] < truth.p_complaint))
                 | (duplicate & (uniforms[..., 4] < r.duplicate_report)))
    gmv = np.where(purchase, truth.price, 0.0)
    return Responses(click=click, purchase=purchase, engage=engage, complaint=complaint, gmv=gmv, duplicate=duplicate)


def seen_before(users: Users, user: I64, roots: I64) -> B:
    """A content is a duplicate if its root was in the user's memory or earlier in the same slate."""
    remembered: B = (roots[:, :, None] == users.seen[user][:, None, :]).any(axis=2)  # (R, K)
    slots = roots.shape[1]
    earlier = np.tril(np.ones((slots, slots), bool), k=-1)  # earlier[k, j]: slot j is above slot k
    in_slate: B = ((roots[:, :, None] == roots[:, None, :]) & earlier[None]).any(axis=2)
    return remembered | in_slate


def remember(users: Users, user: I64, roots: I64, item_ids: I64) -> None:
    """Push the shown contents (roots) and items (ids) into each user's ring buffers of recent impressions."""
    memory = users.seen.shape[1]
    slots = roots.shape[1]
    position = (users.seen_next[user][:, None] + np.arange(slots)[None, :]) % memory
    users.seen[user[:, None], position] = roots
    users.seen_items[user[:, None], position] = item_ids
    users.seen_next[user] = (users.seen_next[user] + slots) % memory


def churn(users: Users, config: ScenarioConfig, user: I64, responses: Responses, round_: int,
          rng: np.random.Generator) -> F64:
    """Patience update; users below the floor go dormant for Geometric(p) rounds. Return round value."""
    cfg = config.users
    value: F64 = (responses.click.sum(axis=1) + cfg.value_purchase * responses.purchase.sum(axis=1)
                  - cfg.value_complaint * responses.complaint.sum(axis=1)).astype(float)
    patience = users.patience[user] + np.clip(value - 1.0, -cfg.patience_max_loss, 0.0) + cfg.patience_recovery
    patience = np.minimum(patience, cfg.patience)
    leaving = patience < cfg.patience_floor
    spell = rng.geometric(cfg.dormancy_return_p, size=len(user))
    users.dormant_until[user[leaving]] = round_ + 1 + spell[leaving]
    patience[leaving] = cfg.patience  # they come back rested
    users.patience[user] = patience
    return value
