"""Creators: operators and their accounts, item production, economics, exit and entry.

Story steps 1 (production), 7 (creator economics and exit) and 8 (entry) of
docs/simulator.md. All functions are vectorized over accounts and items.
"""

from __future__ import annotations

import numpy as np

from experiments.config import ScenarioConfig
from experiments.simulator import adversaries
from experiments.simulator.state import (
    EXIT_UNPROFITABLE,
    EXIT_UNVIABLE,
    F64,
    I64,
    LEGACY,
    MATRIX,
    NEWCOMER,
    NONE,
    ORIGINAL,
    REUPLOADER,
    TYPE_NAMES,
    Items,
    World,
)


def unit_rows(x: F64) -> F64:
    norms: F64 = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def near_centres(centres: F64, n: int, spread: float, rng: np.random.Generator) -> F64:
    """n unit vectors around randomly chosen taste centres (creators aim at existing demand)."""
    which = rng.integers(0, len(centres), size=n)
    return unit_rows(centres[which] + spread * rng.standard_normal((n, centres.shape[1])))


# --------------------------------------------------------------------------------------------------
# Operators and accounts


def create_operators(
    world: World,
    config: ScenarioConfig,
    types: I64,
    *,
    round_: int,
    cohort: int,
    rng: np.random.Generator,
    matrix_size: int | None = None,
    wave_copier: bool = False,
) -> I64:
    """Add one operator per entry of `types` with its accounts; return the new account ids."""
    if len(types) == 0:
        return np.zeros(0, np.int64)
    acc_cfg, dim = config.accounts, config.users.dim
    is_matrix = types == MATRIX
    n_matrix = int(is_matrix.sum())

    # Adversary strategy: obfuscation and matrix size (sampled from the learner when adaptive).
    obfuscation = np.full(len(types), config.adversaries.obfuscation)
    copy_lag = np.full(len(types), config.adversaries.copy_lag, dtype=np.int64)
    sizes = np.ones(len(types), dtype=np.int64)
    sizes[is_matrix] = matrix_size or acc_cfg.matrix_size
    if config.adversaries.adaptive:
        reup = types == REUPLOADER
        obfuscation[reup], copy_lag[reup] = adversaries.sample_reuploader_arms(world.strategies, int(reup.sum()), rng)
        z, size = adversaries.sample_matrix_arms(world.strategies, n_matrix, rng)
        obfuscation[is_matrix] = z
        if matrix_size is None:
            sizes[is_matrix] = size

    template = np.zeros((len(types), dim))
    template[is_matrix] = near_centres(world.centers, n_matrix, config.users.taste_spread, rng)
    template_root = np.full(len(types), NONE, dtype=np.int64)
    template_root[is_matrix] = world.items.allocate_ids(n_matrix)
    matrix_cfg = acc_cfg.matrix
    template_quality = np.zeros(len(types))
    template_quality[is_matrix] = rng.beta(matrix_cfg.quality_alpha, matrix_cfg.quality_beta, n_matrix)
    template_price = np.zeros(len(types))
    template_price[is_matrix] = rng.lognormal(config.items.price_mu, config.items.price_sigma, n_matrix)
    operator_ids = world.operators.add(types, sizes, template, template_root, template_quality, template_price)

    # One row per account: operators repeated by their number of accounts.
    operator = np.repeat(operator_ids, sizes)
    account_type = np.repeat(types, sizes)
    n = len(operator)
    params = np.array([[getattr(acc_cfg.of(t), p) for p in
                        ("quality_alpha", "quality_beta", "gaming", "defect_rate", "production_rate",
                         "item_cost", "originality_mean")] for t in TYPE_NAMES])[account_type]  # (n, 7)
    mean_quality = rng.beta(params[:, 0], params[:, 1])
    style = near_centres(world.centers, n, config.users.taste_spread, rng)
    in_matrix = account_type == MATRIX
    op_row = operator[in_matrix]
    style[in_matrix] = world.operators.template[op_row]
    mean_quality[in_matrix] = world.operators.template_quality[op_row]

    # Matrix links are detected at creation with the detector's current, obfuscation-degraded recall.
    acc_obfuscation = np.repeat(obfuscation, sizes)
    detected = np.full(n, NONE, dtype=np.int64)
    hit = in_matrix & (rng.random(n) < adversaries.detection_probability(world.detector, config, acc_obfuscation))
    detected[hit] = operator[hit]

    return world.accounts.add(
        type=account_type, operator=operator, cohort=np.full(n, cohort), born=np.full(n, round_),
        died=np.full(n, NONE), exit_cause=np.zeros(n, np.int64), style=style, mean_quality=mean_quality,
        gaming=params[:, 2], defect_rate=params[:, 3], production_rate=params[:, 4], item_cost=params[:, 5],
        originality_mean=params[:, 6], obfuscation=acc_obfuscation, copy_lag=np.repeat(copy_lag, sizes),
        wave_copier=np.full(n, wave_copier) & (account_type == REUPLOADER), detected_cluster=detected,
        price_level=rng.normal(config.items.price_mu, config.items.price_sigma, n),
        popularity=np.zeros(n), satisfaction=np.full(n, acc_cfg.initial_satisfaction),
        negative_streak=np.zeros(n, np.int64),
    )


def seed_legacy_popularity(world: World, config: ScenarioConfig, accounts: I64, rng: np.random.Generator) -> None:
    """Make a share of the initial honest accounts legacy incumbents with heavy-tailed popularity."""
    acc = world.accounts
    honest = accounts[acc.type[accounts] == ORIGINAL]
    n_legacy = round(config.accounts.legacy_share * len(honest))
    if n_legacy == 0:
        return
    legacy = rng.choice(honest, size=n_legacy, replace=False)
    acc.cohort[legacy] = LEGACY
    acc.popularity[legacy] = config.accounts.legacy_popularity_scale * (
        1.0 + rng.pareto(config.accounts.legacy_popularity_shape, n_legacy))


# --------------------------------------------------------------------------------------------------
# Production


def produce(world: World, config: ScenarioConfig, counts: I64, born: I64, rng: np.random.Generator) -> F64:
    """Create counts[a] items for each account a (born at the given rounds); return cost per account.

    Non-copies are made first, then copies, which pick live originals at least `copy_lag` rounds old.
    """
    acc, items = world.accounts, world.items
    cost = np.zeros(acc.n)
    owner = np.repeat(np.arange(acc.n), counts)
    if len(owner) == 0:
        return cost
    item_born = born if len(born) == len(owner) else np.repeat(born, counts)
    kind = acc.type[owner]
    copy = kind == REUPLOADER
    made = _make_originals(world, config, owner[~copy], item_born[~copy], rng)
    items.append(made)
    copies = _make_copies(world, config, owner[copy], item_born[copy], rng)
    items.append(copies)

    produced_by = np.concatenate([made.account, copies.account])
    unit_cost = acc.item_cost[produced_by] + config.accounts.obfuscation_cost * acc.obfuscation[produced_by]
    np.add.at(cost, produced_by, unit_cost)
    return cost


def _make_originals(world: World, config: ScenarioConfig, owner: I64, born: I64, rng: np.random.Generator) -> Items:
    """Original, low-effort and matrix items (everything that is not a copy)."""
    acc, it = world.accounts, config.items
    n, dim = len(owner), config.users.dim
    ids = world.items.allocate_ids(n)
    kind = acc.type[owner]
    in_matrix = kind == MATRIX
    noise = np.where(in_matrix, it.matrix_noise, it.style_noise)[:, None]
    embedding = unit_rows(acc.style[owner] + noise * rng.standard_normal((n, dim)))
    quality = np.clip(acc.mean_quality[owner] + it.quality_noise * rng.standard_normal(n), 0.0, 1.0)
    price = np.exp(acc.price_level[owner] + it.item_price_sigma * rng.standard_normal(n))
    op = acc.operator[owner]
    jitter = rng.lognormal(0.0, it.matrix_price_sigma, int(in_matrix.sum()))
    price[in_matrix] = world.operators.template_price[op[in_matrix]] * jitter
    root = ids.copy()
    root[in_matrix] = world.operators.template_root[op[in_matrix]]
    return _finish_items(world, config, ids=ids, owner=owner, born=born, embedding=embedding, quality=quality,
                         price=price, source=np.full(n, NONE, dtype=np.int64), root=root, rng=rng)


def _make_copies(world: World, config: ScenarioConfig, owner: I64, born: I64, rng: np.random.Generator) -> Items:
    """Re-uploads: copy a live original, chosen in proportion to 1 + its recent exposure."""
    acc, items, it = world.accounts, world.items, config.items
    original_rows = np.flatnonzero(items.is_original)
    if len(owner) == 0 or len(original_rows) == 0:
        return _finish_items(world, config, ids=np.zeros(0, np.int64), owner=owner[:0], born=born[:0],
                             embedding=np.zeros((0, config.users.dim)), quality=np.zeros(0), price=np.zeros(0),
                             source=np.zeros(0, np.int64), root=np.zeros(0, np.int64), rng=rng)
    age = born[:, None] - items.born[original_rows][None, :]  # (copies, originals)
    eligible = age >= acc.copy_lag[owner][:, None]
    weight = 1.0 + items.recent_exposure[original_rows]
    # Wave copiers target only the most exposed originals.
    if acc.wave_copier[owner].any():
        top = np.argsort(-items.recent_exposure[original_rows], kind="stable")[: config.wave.target_top_sources]
        in_top = np.zeros(len(original_rows), bool)
        in_top[top] = True
        eligible &= np.where(acc.wave_copier[owner][:, None], in_top[None, :], True)
    weights = eligible * weight[None, :]
    total = weights.sum(axis=1)
    ok = total > 0
    owner, born, weights, total = owner[ok], born[ok], weights[ok], total[ok]
    # Inverse-CDF sampling, one row per copy, vectorized.
    u = rng.random(len(owner)) * total
    pick = (np.cumsum(weights, axis=1) < u[:, None]).sum(axis=1)
    src = original_rows[np.minimum(pick, len(original_rows) - 1)]

    n = len(owner)
    z = acc.obfuscation[owner]
    noise = (it.copy_noise + it.copy_noise_per_obfuscation * z)[:, None]
    embedding = unit_rows(items.embedding[src] + noise * rng.standard_normal((n, config.users.dim)))
    return _finish_items(world, config, ids=world.items.allocate_ids(n), owner=owner, born=born, embedding=embedding,
                         quality=items.quality[src] * it.copy_quality_factor,
                         price=items.price[src] * it.copy_price_factor,
                         source=items.id[src], root=items.root[src], rng=rng)


def _finish_items(world: World, config: ScenarioConfig, *, ids: I64, owner: I64, born: I64, embedding: F64,
                  quality: F64, price: F64, source: I64, root: I64, rng: np.random.Generator) -> Items:
    """Common columns: labels of truth, observable signals, and duplicate detection."""
    acc, sig = world.accounts, config.signals
    n = len(ids)
    kind = acc.type[owner]
    z = acc.obfuscation[owner]
    is_original = kind == ORIGINAL
    is_copy = kind == REUPLOADER
    violation = kind != ORIGINAL
    if sig.estimates_are_truth:
        quality_signal = quality.copy()
        originality = is_original.astype(float)
    else:
        quality_signal = quality + sig.quality_noise * rng.standard_normal(n)
        originality = np.clip(acc.originality_mean[owner] + sig.originality_obfuscation_gain * z
                              + sig.originality_noise * rng.standard_normal(n), 0.0, 1.0)
    duplicate = is_copy | (kind == MATRIX)
    found = duplicate & (rng.random(n) < adversaries.detection_probability(world.detector, config, z))
    detected_dup = np.where(found, root, NONE)
    return Items(
        id=ids, account=owner, embedding=embedding, quality=quality, price=price,
        defect_rate=acc.defect_rate[owner], is_original=is_original, is_copy=is_copy, violation=violation,
        source=source, root=root, born=born.astype(np.int64), obfuscation=z, quality_signal=quality_signal,
        originality=originality, detected_dup=detected_dup.astype(np.int64), recent_exposure=np.zeros(n),
    )


def expire_items(world: World, config: ScenarioConfig, round_: int) -> None:
    """Drop items past their lifetime and items of accounts that left."""
    items = world.items
    live = (round_ - items.born < config.items.lifetime) & (world.accounts.died[items.account] < 0)
    items.keep(live)


# --------------------------------------------------------------------------------------------------
# Economics and exit


def settle(world: World, config: ScenarioConfig, round_: int, *, impressions: F64, gmv: F64, costs: F64) -> F64:
    """Creator utility, satisfaction and exits for the round; return utility per account."""
    acc, cr = world.accounts, config.creators
    n = acc.n
    alive = acc.alive
    utility = cr.impression_value * impressions + cr.gmv_share * gmv - costs
    utility -= np.where(alive, config.accounts.account_cost, 0.0)
    utility[~alive] = 0.0
    acc.utility_hist[:n, round_] = utility
    acc.satisfaction[:n] = np.where(alive, cr.satisfaction_decay * acc.satisfaction[:n] + utility, acc.satisfaction[:n])
    acc.negative_streak[:n] = np.where(alive & (acc.satisfaction[:n] < 0), acc.negative_streak[:n] + 1, 0)
    if not cr.exit_enabled:
        return utility

    # Exit is an operator's business decision: a matrix farm pools satisfaction and traffic over its
    # accounts (one account alone may starve while the farm thrives). Honest operators have one account.
    operator = acc.operator[:n]
    n_ops = world.operators.n
    pooled_satisfaction = np.bincount(operator, weights=np.where(alive, acc.satisfaction[:n], 0.0), minlength=n_ops)
    op_streak = np.zeros(n_ops, np.int64)
    np.maximum.at(op_streak, operator, np.where(alive, acc.negative_streak[:n], 0))
    op_streak = np.where(pooled_satisfaction < 0, op_streak, 0)
    start = max(0, round_ - cr.viability_window + 1)
    window_impressions = np.bincount(operator, weights=acc.impressions_hist[:n, start: round_ + 1].sum(axis=1),
                                     minlength=n_ops)
    op_born = np.full(n_ops, np.iinfo(np.int64).max)
    np.minimum.at(op_born, operator, acc.born[:n])
    unprofitable = alive & (op_streak[operator] >= cr.unprofitable_rounds)
    old_enough = round_ - op_born[operator] + 1 >= cr.viability_window
    unviable = alive & old_enough & (window_impressions[operator] < cr.viability_min_impressions) & ~unprofitable
    acc.died[:n][unprofitable | unviable] = round_
    acc.exit_cause[:n][unprofitable] = EXIT_UNPROFITABLE
    acc.exit_cause[:n][unviable] = EXIT_UNVIABLE
    return utility


# --------------------------------------------------------------------------------------------------
# Entry


def entry_mix(world: World, config: ScenarioConfig, round_: int) -> F64:
    """Type probabilities of entrants: prior * exp(s * recent mean profit of the type), plus the wave."""
    acc, en = world.accounts, config.entry
    prior = np.asarray(config.accounts.prior_vector())
    start = max(0, round_ - en.profit_window + 1)
    n = acc.n
    profit = acc.utility_hist[:n, start: round_ + 1]
    present = (acc.born[:n, None] <= np.arange(start, round_ + 1)[None, :]) & (
        (acc.died[:n, None] < 0) | (acc.died[:n, None] >= np.arange(start, round_ + 1)[None, :]))
    total = np.bincount(acc.type[:n], weights=(profit * present).sum(axis=1), minlength=4)
    count = np.bincount(acc.type[:n], weights=present.sum(axis=1).astype(float), minlength=4)
    mean_profit = np.divide(total, count, out=np.zeros(4), where=count > 0)
    exponent = np.clip(en.profit_sensitivity * mean_profit, -en.max_exponent, en.max_exponent)
    mix: F64 = prior * np.exp(exponent - exponent.max())
    mix = mix / mix.sum() if mix.sum() > 0 else np.full(4, 0.25)
    wave = config.wave
    if 0 <= wave.reupload_start <= round_:
        mix[REUPLOADER] = 0.0
        mix = (1.0 - wave.reupload_share) * mix / max(mix.sum(), 1e-12)
        mix[REUPLOADER] = wave.reupload_share
    return mix


def enter(world: World, config: ScenarioConfig, round_: int, rng: np.random.Generator) -> I64:
    """New operators arrive (Poisson); supply drifts toward what the policy pays for."""
    if not config.entry.enabled:
        return np.zeros(0, np.int64)
    n_new = int(rng.poisson(config.entry.rate))
    mix = entry_mix(world, config, round_)
    types = rng.choice(4, size=n_new, p=mix).astype(np.int64)
    wave_on = 0 <= config.wave.reupload_start <= round_
    return create_operators(world, config, types, round_=round_, cohort=NEWCOMER, rng=rng, wave_copier=wave_on)

