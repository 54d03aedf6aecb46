"""Retrieval (story step 2): the SAME candidate generator for every policy, so ranking is the only lever.

Each request gets M candidates: the top M - r by taste-item affinity plus Gumbel noise, and r = M *
random_share drawn uniformly from the rest of the pool. Beyond the design note, t = M * trending_share
come from a trending source: items sampled in proportion to (1 + their creator's popularity) ** power,
the way popular content reaches users outside its taste neighbourhood (without it, an item's reach
is capped by its neighbourhood and popularity cannot compound; see docs/simulator.md). Like a
production seen-filter, items the user was shown recently (`seen_memory` impressions) are not
retrieved again by affinity.

Scoring every user against every live item would cost (requests x items) Gumbel draws per round,
so retrieval works in two stages, like the approximate nearest-neighbour index of a real system:
users are grouped into `buckets` around
prototype tastes (drawn from the users themselves at start), each bucket shortlists the `shortlist`
items closest to its prototype, and each user then ranks that shortlist exactly. The recall of this
stage against exact retrieval is measured in tests/experiments/simulator/test_retrieval.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator.state import F64, I64, World


@dataclass(frozen=True)
class Retrieved:
    user: I64  # (R,) requesting users
    rows: I64  # (R, M) candidate rows into world.items
    affinity: F64  # (R, M) taste . item embedding (no noise)


def retrieve(world: World, config: ScenarioConfig, user: I64, rng: np.random.Generator) -> Retrieved:
    items, users = world.items, world.users
    n_items = items.n
    m = min(config.retrieval.candidates, n_items)
    if len(user) == 0 or m == 0:
        return Retrieved(user=user, rows=np.zeros((len(user), m), np.int64), affinity=np.zeros((len(user), m)))
    if n_items <= config.retrieval.candidates:
        rows = np.broadcast_to(np.arange(n_items), (len(user), n_items)).copy()
        return Retrieved(user=user, rows=rows, affinity=_affinity(world, user, rows))

    cfg = config.retrieval
    n_random = round(cfg.random_share * m)
    n_trending = round(cfg.trending_share * m)
    n_top = m - n_random - n_trending
    pool = cfg.trending_pool * n_trending
    shortlist_size = min(cfg.shortlist, n_items - n_random - pool)
    prototype_scores = items.embedding @ world.prototypes.T  # (N, B)
    # Trending weight of an item: its creator's observable popularity, (1 + F) ** power.
    log_weight = cfg.trending_power * np.log1p(world.accounts.popularity[items.account])  # (N,)
    rows = np.empty((len(user), m), np.int64)
    buckets = world.user_bucket[user]
    for b in np.unique(buckets):  # loop over retrieval buckets, vectorized over their requests
        requests = np.flatnonzero(buckets == b)
        shortlist = np.argpartition(-prototype_scores[:, b], shortlist_size - 1)[:shortlist_size]
        noisy = users.taste[user[requests]] @ items.embedding[shortlist].T  # (r_c, L)
        noisy += config.retrieval.gumbel_scale * rng.gumbel(size=noisy.shape)
        _drop_seen(noisy, items.id[shortlist], users.seen_items[user[requests]])
        top = np.argpartition(-noisy, n_top - 1, axis=1)[:, :n_top]
        rows[requests, :n_top] = shortlist[top]
        rest = np.setdiff1d(np.arange(n_items), shortlist, assume_unique=True)
        if n_trending:
            # The bucket's trending pool: `pool` items outside its shortlist sampled without replacement
            # in proportion to their weight (Gumbel-top-k, once per bucket); each user gets a random part.
            keys = log_weight[rest] + rng.gumbel(size=len(rest))
            chosen = np.argpartition(-keys, pool - 1)[:pool]
            trending = rest[chosen]
            rows[requests, n_top: n_top + n_trending] = trending[distinct_uniform(pool, n_trending, len(requests), rng)]
            rest = np.delete(rest, chosen)
        if n_random:
            rows[requests, n_top + n_trending:] = rest[distinct_uniform(len(rest), n_random, len(requests), rng)]
    return Retrieved(user=user, rows=rows, affinity=_affinity(world, user, rows))


def _drop_seen(scores: F64, shortlist_ids: I64, seen_ids: I64) -> None:
    """Like a production seen-filter: items a user was already shown score -inf (in place)."""
    order = np.argsort(shortlist_ids)
    sorted_ids = shortlist_ids[order]
    where = np.minimum(np.searchsorted(sorted_ids, seen_ids), len(sorted_ids) - 1)  # (r, H)
    hit = sorted_ids[where] == seen_ids
    rows = np.broadcast_to(np.arange(len(scores))[:, None], seen_ids.shape)
    scores[rows[hit], order[where[hit]]] = -np.inf


def bucket_users(taste: F64, n_buckets: int, rng: np.random.Generator) -> tuple[F64, I64]:
    """Prototypes = tastes of randomly chosen users; every user joins its nearest prototype."""
    prototypes = taste[rng.choice(len(taste), size=min(n_buckets, len(taste)), replace=False)]
    return prototypes, np.argmax(taste @ prototypes.T, axis=1).astype(np.int64)


def distinct_uniform(n: int, k: int, rows: int, rng: np.random.Generator) -> I64:
    """k distinct indices in [0, n) per row, vectorized: sorted draws from [0, n - k] plus 0..k-1."""
    draws = np.sort(rng.integers(0, n - k + 1, size=(rows, k)), axis=1)
    return draws + np.arange(k)[None, :]


def _affinity(world: World, user: I64, rows: I64) -> F64:
    affinity: F64 = np.einsum("rd,rmd->rm", world.users.taste[user], world.items.embedding[rows])  # (R, M)
    return affinity
