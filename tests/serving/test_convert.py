"""serving/convert.py: every converter round-trips, and the packed fast path writes what protobuf itself would."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from serving.convert import EXPLANATION_FIELDS, HEAD_FIELDS, rank_request, to_rank_input, to_response, to_result
from serving.core import Ranked, RankingCore
from serving.generated.ecorank.v1 import traffic_pb2
from tests.serving.conftest import candidates


def test_rank_request_round_trips_to_the_core_input(core: RankingCore) -> None:
    x = candidates(core, 50, seed=3)
    wire = rank_request(x.item_ids, x.creator_ids, x.features, cluster_ids=x.cluster_ids, original=x.original,
                        surface="shelf", overrides={"risk": 2.0}, explain=True, request_id="r", market="br")
    back = to_rank_input(traffic_pb2.RankRequest.FromString(wire.SerializeToString()))
    for name in ("item_ids", "creator_ids", "cluster_ids", "original", "features"):
        assert np.array_equal(getattr(back, name), getattr(x, name)), name
    assert back.features.dtype == np.float32
    assert (back.surface, back.market, back.request_id, back.explain) == ("shelf", "br", "r", True)
    assert back.overrides == {"risk": 2.0}


def _plain(request_id: str, ranked: Ranked) -> traffic_pb2.RankResponse:
    """The same response built field by field from Python lists (the slow, obvious way)."""
    p, e = ranked.predictions, ranked.explanation
    response = traffic_pb2.RankResponse(
        request_id=request_id, weights=ranked.weights.tolist(), ranking=ranked.ranking.tolist(),
        predictions=traffic_pb2.HeadPredictions(**{h: p[h].tolist() for h in HEAD_FIELDS}),
        model_version=ranked.model_version, plan_version=ranked.plan_version, policy_name=ranked.policy_name,
        degraded=ranked.degraded, degraded_reason=ranked.degraded_reason)
    if e is not None:
        response.explanation.CopyFrom(traffic_pb2.Explanation(
            **{name: getattr(e, name).tolist() for name in EXPLANATION_FIELDS},
            binding=[",".join(e.binding(i)) for i in range(len(e.weight))]))
    return response


def test_packed_response_is_what_protobuf_writes(core: RankingCore) -> None:
    for explain in (False, True):
        ranked = core.rank(replace(candidates(core, 200, seed=4), explain=explain))
        fast, plain = to_response("id", ranked), _plain("id", ranked)
        assert fast == plain
        assert fast.SerializeToString(deterministic=True) == plain.SerializeToString(deterministic=True)
        assert fast.HasField("explanation") is explain


def test_response_round_trips_to_the_client_result(core: RankingCore) -> None:
    ranked = core.rank(replace(candidates(core, 120, seed=6), explain=True))
    wire = to_response("id", ranked).SerializeToString()
    result = to_result(traffic_pb2.RankResponse.FromString(wire))
    assert np.array_equal(result.weights, ranked.weights)  # doubles travel exactly
    assert np.array_equal(result.ranking, ranked.ranking)
    for head in HEAD_FIELDS:
        assert np.array_equal(result.predictions[head], ranked.predictions[head]), head
    assert result.explanation is not None
    assert ranked.explanation is not None
    for name in EXPLANATION_FIELDS:
        assert np.array_equal(result.explanation[name].to_numpy(), getattr(ranked.explanation, name)), name
    assert (result.model_version, result.plan_version, result.policy_name, result.degraded) == (
        ranked.model_version, ranked.plan_version, ranked.policy_name, ranked.degraded)
    frame = result.to_frame()
    assert frame["rank"].to_numpy()[ranked.ranking[0]] == 0
