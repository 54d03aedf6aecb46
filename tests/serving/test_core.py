"""The transport-agnostic core: ranking, validation (every problem named) and reload (atomic, never worse)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fairness.planner import load_plan
from serving.core import InvalidRequest, RankingCore, RankInput, ReloadError, decode_features
from tests.serving.conftest import candidates


def test_rank_gives_feasible_weights_a_ranking_and_versions(core: RankingCore) -> None:
    x = replace(candidates(core, 200), explain=True)
    ranked = core.rank(x)
    assert ranked.weights.shape == (200,)
    assert ranked.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(ranked.weights >= 0)
    assert np.all(ranked.weights <= core.policy.allocation.item_cap + 1e-12)
    assert sorted(ranked.ranking.tolist()) == list(range(200))
    assert np.all(np.diff(ranked.weights[ranked.ranking]) <= 1e-15)  # highest weight first
    assert set(ranked.predictions) == {"gmv", "prosperity", "risk", "complaint"}
    assert ranked.model_version == core.state.bundle.version
    assert ranked.plan_version == 1
    assert ranked.explanation is not None
    e = ranked.explanation
    at_cap = e.item_cap_dual > 1e-12
    assert np.allclose(ranked.weights[at_cap], core.policy.allocation.item_cap)
    assert np.allclose(e.adjusted_utility, e.base_utility - e.creator_price - e.cluster_price)
    assert not ranked.degraded, ranked.degraded_reason


def test_schema_checks_on_features_become_field_errors(core: RankingCore) -> None:
    x = candidates(core, 10)
    features = x.features.copy()
    features[2, core.state.feature_names.index("account_age")] = -5.0  # log1p feature: must exceed -1
    with pytest.raises(InvalidRequest) as raised:
        core.rank(replace(x, features=features))
    assert raised.value.violations[0].field == "candidates.features.data"
    assert "account_age" in raised.value.violations[0].description


def test_same_input_same_answer(core: RankingCore) -> None:
    x = candidates(core, 50, seed=3)
    a, b = core.rank(x), core.rank(x)
    assert np.array_equal(a.weights, b.weights)
    assert np.array_equal(a.ranking, b.ranking)


def test_decode_features_checks_the_byte_length() -> None:
    x = np.arange(6, dtype="<f4").reshape(2, 3)
    assert np.array_equal(decode_features(2, 3, x.tobytes()), x)
    with pytest.raises(InvalidRequest, match=r"received 20 bytes; expected rows x cols x 4 = 2 x 3 x 4 = 24"):
        decode_features(2, 3, x.tobytes()[:20])


@pytest.mark.parametrize(("change", "field", "message"), [
    (lambda x: replace(x, item_ids=x.item_ids[:0], creator_ids=x.creator_ids[:0], cluster_ids=x.cluster_ids[:0],
                       original=x.original[:0], features=x.features[:0]), "candidates.item_ids", "empty batch"),
    (lambda x: replace(x, creator_ids=x.creator_ids[:-1]), "candidates.creator_ids", "received 9 entries"),
    (lambda x: replace(x, features=x.features[:, :-1]), "candidates.features.cols", "received 11; expected 12"),
    (lambda x: replace(x, features=np.where(np.arange(12) == 4, np.nan, x.features).astype(np.float32)),
     "candidates.features.data", "non-finite"),
    (lambda x: replace(x, item_ids=np.r_[x.item_ids[:-1], x.item_ids[0]]), "candidates.item_ids", "duplicated"),
    (lambda x: replace(x, surface="feed"), "surface", "expected one of ['content', 'shelf']"),
    (lambda x: replace(x, creator_ids=np.full(10, 7), cluster_ids=np.arange(10)), "candidates.cluster_ids",
     "received creator 7 in clusters [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; expected one cluster per creator"),
    (lambda x: replace(x, overrides={"risk": 0.0}), "blend_overrides", "outside the allowed range"),
    (lambda x: replace(x, overrides={"clicks": 1.0}), "blend_overrides", "unknown head 'clicks'"),
])
def test_bad_input_names_the_field(core: RankingCore, change: object, field: str, message: str) -> None:
    x = change(candidates(core, 10))  # type: ignore[operator]
    with pytest.raises(InvalidRequest) as raised:
        core.rank(x)
    assert any(v.field == field and message in v.description for v in raised.value.violations), raised.value


def test_too_many_candidates(core: RankingCore) -> None:
    small = RankingCore(core.state.bundle, core.policy, plan=core.state.engine.plan,
                        limits=replace(core.limits, max_candidates=5))
    with pytest.raises(InvalidRequest, match="received 10 candidates; expected at most 5"):
        small.rank(candidates(core, 10))


def test_every_problem_is_reported_at_once(core: RankingCore) -> None:
    x = replace(candidates(core, 10), surface="feed", overrides={"risk": 0.0}, creator_ids=np.zeros(3, np.int64))
    with pytest.raises(InvalidRequest) as raised:
        core.rank(x)
    assert {v.field for v in raised.value.violations} == {"surface", "blend_overrides", "candidates.creator_ids"}


def test_reload_swaps_plan_and_refuses_corrupt_files(core: RankingCore, plan_dirs: tuple[Path, Path],
                                                     bundle_dir: Path, tmp_path: Path) -> None:
    before = core.state
    state = core.reload(plan_path=plan_dirs[1])
    assert state.plan_version == 2
    assert core.state is state
    assert core.rank(candidates(core, 20)).plan_version == 2
    # a corrupt bundle: copied, then its weights truncated
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "model.pt").write_bytes((broken / "model.pt").read_bytes()[:100])
    with pytest.raises(ReloadError, match="reload refused, still serving model"):
        core.reload(bundle_path=broken)
    assert core.state is state  # unchanged
    with pytest.raises(ReloadError, match="is not a traffic plan"):
        core.reload(plan_path=tmp_path)
    assert core.state is state
    assert before.plan_version == 1
    assert load_plan(plan_dirs[0]).version == 1



def test_a_surface_with_its_own_policy_is_served_by_it(core: RankingCore) -> None:
    """shelf: a policy with a 0.6 originals floor; live: a surface only the policy map names; content: default."""
    from fairness.policy import load_policy

    shelf = load_policy("default", overrides=["name=shelf_policy", "allocation.originals_floor=0.6",
                                              "eligibility.max_risk=1.0", "eligibility.min_prosperity=0.0"])
    live = load_policy("default", overrides=["name=live_policy", "allocation.item_cap=0.1"])
    both = RankingCore(core.state.bundle, core.policy, plan=core.state.plan,
                       surface_policies={"shelf": shelf, "live": live})
    assert both.limits.surfaces == ("content", "shelf", "live")
    x = replace(candidates(core, 300, seed=9), explain=True)
    content, on_shelf, on_live = (both.rank(replace(x, surface=s)) for s in ("content", "shelf", "live"))
    assert (content.policy_name, on_shelf.policy_name, on_live.policy_name) == ("default", "shelf_policy",
                                                                                "live_policy")
    assert on_shelf.explanation is not None
    eligible = on_shelf.explanation.eligible_original
    assert eligible.sum() > 0
    assert on_shelf.weights[eligible].sum() >= 0.6 - 1e-9
    assert content.weights[eligible].sum() < 0.6
    assert on_live.weights.max() <= 0.1 + 1e-12 < content.weights.max()
    with pytest.raises(InvalidRequest, match="surface"):
        both.rank(replace(x, surface="feed"))


def many(core: RankingCore, sizes: list[int]) -> tuple[RankInput, list[RankInput]]:
    """One many-request input and the same requests one by one."""
    singles = [candidates(core, n, seed=seed) for seed, n in enumerate(sizes)]
    joined = RankInput(request_id="many", surface="content",
                       item_ids=np.concatenate([x.item_ids for x in singles]),
                       creator_ids=np.concatenate([x.creator_ids for x in singles]),
                       cluster_ids=np.concatenate([x.cluster_ids for x in singles]),
                       original=np.concatenate([x.original for x in singles]),
                       features=np.concatenate([x.features for x in singles]),
                       request=np.repeat(np.arange(len(sizes)), sizes))
    return joined, singles


def test_many_requests_in_one_call_equal_one_call_each(core: RankingCore) -> None:
    joined, singles = many(core, [30, 50, 20])
    assert joined.n_requests == 3
    together = core.rank(joined)
    start = 0
    for x in singles:
        alone = core.rank(x)
        n = len(x.item_ids)
        np.testing.assert_allclose(together.weights[start: start + n], alone.weights, atol=1e-9)
        assert together.weights[start: start + n].sum() == pytest.approx(1.0, abs=1e-9)
        # the ranking lists request 0's candidates first, then request 1's, each best first
        assert np.array_equal(together.ranking[start: start + n] - start, alone.ranking)
        start += n


def test_many_requests_are_checked_per_request(core: RankingCore) -> None:
    joined, singles = many(core, [10, 10])
    repeated = replace(joined, item_ids=np.concatenate([singles[0].item_ids, singles[0].item_ids]))
    core.rank(repeated)  # the same item in two requests is fine
    twice = repeated.item_ids.copy()
    twice[1] = twice[0]
    with pytest.raises(InvalidRequest, match="duplicated ids"):
        core.rank(replace(repeated, item_ids=twice))
    small = RankingCore(core.state.bundle, core.policy, limits=replace(core.limits, max_candidates=10))
    small.rank(joined)  # 20 candidates, 10 per request
    with pytest.raises(InvalidRequest, match="received 11 candidates in request 1; expected at most 10"):
        small.rank(replace(joined, request=np.repeat([0, 1], [9, 11])))
    with pytest.raises(InvalidRequest, match="contiguous runs"):
        core.rank(replace(joined, request=np.tile([0, 1], 10)))
    with pytest.raises(InvalidRequest, match="received 3 request indices; expected one per candidate"):
        core.rank(replace(joined, request=np.zeros(3, np.int64)))


def test_observed_exposure_moves_prices_and_a_new_plan_keeps_what_was_learned(
        core: RankingCore, plan_dirs: tuple[Path, Path]) -> None:
    x = candidates(core, 100)
    engine = core.state.engine
    before = engine.prices(x.creator_ids, x.cluster_ids)[0].copy()
    # all the exposure went to these candidates' creators, far above their planned shares: the controller
    # raises their prices (controllers see shares of the exposure reported, not absolute amounts)
    creators, first = np.unique(x.creator_ids, return_index=True)
    for _ in range(3):
        core.observe(creator=creators, cluster=x.cluster_ids[first], exposure=np.ones(len(creators)))
    raised = core.state.engine.prices(x.creator_ids, x.cluster_ids)[0]
    assert raised.mean() > before.mean() + 0.05
    core.set_plan(load_plan(plan_dirs[1]))
    assert core.state.plan_version == 2
    carried = core.state.engine.prices(x.creator_ids, x.cluster_ids)[0]
    fresh = RankingCore(core.state.bundle, core.policy, plan=load_plan(plan_dirs[1])).state.engine
    limit = core.policy.controller.max_price
    # the new plan's duals plus the correction learned under the old one
    expected = np.clip(fresh.prices(x.creator_ids, x.cluster_ids)[0] + raised - before, -limit, limit)
    np.testing.assert_allclose(carried, expected, atol=1e-12)
    assert core.rank(x).plan_version == 2
