from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.config import ScenarioConfig, load_scenario
from experiments.simulator.retrieval import distinct_uniform, retrieve
from experiments.simulator.story import Streams, initial_world


def affinity_slots(config: ScenarioConfig) -> int:
    m = config.retrieval.candidates
    return m - round(config.retrieval.random_share * m) - round(config.retrieval.trending_share * m)


def test_candidates_are_distinct_live_items(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    retrieved = retrieve(world, config, np.arange(world.users.n), np.random.default_rng(0))
    assert retrieved.rows.shape == (world.users.n, config.retrieval.candidates)
    assert all(len(set(row)) == len(row) for row in retrieved.rows.tolist())
    assert retrieved.rows.max() < world.items.n
    expected = np.einsum("rd,rmd->rm", world.users.taste, world.items.embedding[retrieved.rows])
    assert np.allclose(retrieved.affinity, expected)


def test_small_pool_returns_every_item(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1", "retrieval.candidates=2000", "retrieval.shortlist=2000", "ranking.slots=10")
    world = initial_world(config, Streams(0))
    retrieved = retrieve(world, config, np.arange(5), np.random.default_rng(0))
    assert retrieved.rows.shape == (5, world.items.n)


def test_two_stage_recall_matches_exact_retrieval_with_the_same_noise() -> None:
    """The bucketed shortlist loses no more of the exact top-(M - r) than the specified Gumbel noise does."""
    config = load_scenario("S1", preset="default", overrides=["users.n_users=1500"])
    world = initial_world(config, Streams(0))
    users = np.arange(0, 1500, 5)
    n_top = affinity_slots(config)
    affinity = world.users.taste[users] @ world.items.embedding.T
    exact = np.argpartition(-affinity, n_top - 1, axis=1)[:, :n_top]
    rng = np.random.default_rng(1)
    noisy = affinity + config.retrieval.gumbel_scale * rng.gumbel(size=affinity.shape)
    exact_noisy = np.argpartition(-noisy, n_top - 1, axis=1)[:, :n_top]
    approx = retrieve(world, config, users, rng).rows

    def recall(found: np.ndarray) -> float:
        return float(np.mean([np.isin(exact[i], found[i]).mean() for i in range(len(users))]))

    assert recall(approx) >= 0.95 * recall(exact_noisy)
    assert not any(np.isin(row[n_top:], row[:n_top]).any() for row in approx)  # trending and random are disjoint


def test_distinct_uniform_draws_distinct_indices_covering_the_range() -> None:
    draws = distinct_uniform(50, 10, 2000, np.random.default_rng(0))
    assert draws.min() >= 0
    assert draws.max() < 50
    assert all(len(set(row)) == 10 for row in draws.tolist())
    counts = np.bincount(draws.ravel(), minlength=50)
    assert counts.min() > 0


def test_items_a_user_was_shown_are_not_retrieved_again(tiny: Callable[..., ScenarioConfig]) -> None:
    from experiments.simulator import users

    config = tiny("S1")
    world = initial_world(config, Streams(0))
    who = np.arange(world.users.n)
    first = retrieve(world, config, who, np.random.default_rng(0))
    n_top = affinity_slots(config)
    shown = first.rows[:, :10]
    users.remember(world.users, who, world.items.root[shown], world.items.id[shown])
    again = retrieve(world, config, who, np.random.default_rng(0))
    repeated = [np.isin(again.rows[u, :n_top], shown[u]).any() for u in range(len(who))]
    assert not any(repeated)


def test_trending_slots_favour_popular_creators(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S1", "retrieval.trending_share=0.2")
    world = initial_world(config, Streams(0))
    acc = world.accounts
    popular = np.arange(acc.n) % 10 == 0
    acc.popularity[: acc.n] = np.where(popular, 500.0, 0.0)
    rows = retrieve(world, config, np.arange(world.users.n), np.random.default_rng(0)).rows
    n_top = affinity_slots(config)
    n_trending = round(config.retrieval.trending_share * config.retrieval.candidates)
    trending = popular[world.items.account[rows[:, n_top: n_top + n_trending]]].mean()
    uniform = popular[world.items.account[rows[:, n_top + n_trending:]]].mean()
    base = popular[world.items.account].mean()  # share of live items from popular creators, ~0.1
    assert trending > 2 * base
    assert trending > 3 * uniform
