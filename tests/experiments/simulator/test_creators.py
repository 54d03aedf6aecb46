from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator import creators
from experiments.simulator.state import EXIT_UNVIABLE, MATRIX, ORIGINAL, REUPLOADER
from experiments.simulator.story import Streams, initial_world


def test_copies_inherit_their_source(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S4")
    world = initial_world(config, Streams(0))
    items = world.items
    copies = np.flatnonzero(items.is_copy)
    assert len(copies) > 0
    source_row = {int(i): r for r, i in enumerate(items.id)}
    live = [c for c in copies if int(items.source[c]) in source_row]
    assert live
    for c in live:
        s = source_row[int(items.source[c])]
        assert items.is_original[s]
        assert items.root[c] == items.root[s]
        assert np.isclose(items.quality[c], items.quality[s] * config.items.copy_quality_factor)
        assert items.born[c] - items.born[s] >= world.accounts.copy_lag[items.account[c]]


def test_matrix_accounts_post_near_duplicates_of_their_operator_template(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S3")
    world = initial_world(config, Streams(0))
    acc, items = world.accounts, world.items
    in_matrix = acc.type[items.account] == MATRIX
    assert in_matrix.any()
    template = world.operators.template[acc.operator[items.account[in_matrix]]]
    assert np.all(np.einsum("nd,nd->n", items.embedding[in_matrix], template) > 0.9)
    per_operator = np.bincount(acc.operator[: acc.n][acc.type[: acc.n] == MATRIX])
    assert set(per_operator[per_operator > 0].tolist()) == {config.wave.matrix_operator_size}


def test_farm_exits_as_one_business(tiny: Callable[..., ScenarioConfig]) -> None:
    """A farm whose accounts each starve, but whose pooled traffic is viable, stays; a lone starving account leaves."""
    config = tiny("S3", "creators.viability_min_impressions=6", "creators.viability_window=1")
    world = initial_world(config, Streams(0))
    acc = world.accounts
    n = acc.n
    farm = np.flatnonzero(acc.type[:n] == MATRIX)[: config.wave.matrix_operator_size]
    farm = farm[acc.operator[farm] == acc.operator[farm[0]]]
    loner = np.flatnonzero(acc.type[:n] == ORIGINAL)[0]
    impressions = np.full(n, 100.0)
    impressions[farm] = 1.0  # 1 each, but the farm has >= 6 in total
    impressions[loner] = 1.0
    acc.impressions_hist[:n, 0] = impressions
    creators.settle(world, config, 0, impressions=impressions, gmv=np.zeros(n), costs=np.zeros(n))
    assert np.all(acc.died[farm] < 0)
    assert acc.died[loner] == 0
    assert acc.exit_cause[loner] == EXIT_UNVIABLE


def test_entry_mix_follows_the_wave_and_profit(tiny: Callable[..., ScenarioConfig]) -> None:
    config = tiny("S2")
    world = initial_world(config, Streams(0))
    before = creators.entry_mix(world, config, 0)
    during = creators.entry_mix(world, config, config.wave.reupload_start)
    assert before[REUPLOADER] == 0.0
    assert np.isclose(during[REUPLOADER], config.wave.reupload_share)
    assert np.isclose(during.sum(), 1.0)
    acc = world.accounts
    acc.utility_hist[: acc.n, 0] = np.where(acc.type[: acc.n] == ORIGINAL, 5.0, 0.0)
    assert creators.entry_mix(world, config, 0)[ORIGINAL] > before[ORIGINAL]
