"""serving.batch: a table of many requests scores exactly as each request does alone through RankingCore.rank
(the engine the gRPC server runs), in the input's row order, whatever the chunking; bad tables say what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fairness.policy import HEADS
from serving.batch import (
    REQUEST_COLUMN,
    BatchInputError,
    BatchScorer,
    score_parquet,
    synthetic_candidates,
)
from serving.core import RankingCore, RankInput
from tests.scores import ATOL, RTOL, assert_same_scores


def _table(core: RankingCore, requests: int = 12, per_request: int = 30, seed: int = 0) -> pa.Table:
    assert core.state.engine.plan is not None
    return synthetic_candidates(core.state.engine.plan.creators, core.state.feature_names, requests=requests,
                                per_request=per_request, rng=np.random.default_rng(seed))


def _alone(core: RankingCore, table: pa.Table, request_id: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One request's rows (input positions) and its answer from RankingCore.rank alone, candidates by item id."""
    rows = np.flatnonzero(table.column(REQUEST_COLUMN).to_numpy() == request_id)
    rows = rows[np.argsort(table.column("item_id").to_numpy()[rows])]
    part = table.take(pa.array(rows))
    ranked = core.rank(RankInput(
        request_id=str(request_id), surface="content", item_ids=part.column("item_id").to_numpy(),
        creator_ids=part.column("creator_id").to_numpy(), cluster_ids=part.column("cluster_id").to_numpy(),
        original=part.column("original").to_numpy(zero_copy_only=False),
        features=np.column_stack([part.column(n).to_numpy() for n in core.state.feature_names]).astype(np.float32),
        explain=True))
    assert ranked.explanation is not None
    rank = np.empty(len(rows), np.int64)
    rank[ranked.ranking] = np.arange(len(rows))
    return rows, {"weight": ranked.weights, "rank": rank, "utility": ranked.explanation.base_utility,
                  **ranked.predictions}


def test_every_request_scores_as_it_does_alone_in_input_order(core: RankingCore) -> None:
    table = _table(core)
    scores = BatchScorer(core, batch_size=100).score(table)  # 100: several requests per engine call, 4 calls

    assert scores.column_names == BatchScorer.output_columns(per_request=True)
    assert scores.num_rows == table.num_rows
    for column in ("item_id", "creator_id", REQUEST_COLUMN):  # the input's row order, ids carried over
        assert scores.column(column).equals(table.column(column))
    for request_id in range(12):
        rows, alone = _alone(core, table, request_id)
        # within float32 noise (tests/scores.py): alone, the request is another batch for the model
        for name in ("utility", *HEADS):
            np.testing.assert_allclose(scores.column(name).to_numpy()[rows], alone[name], rtol=RTOL, atol=ATOL,
                                       err_msg=f"request {request_id}, {name}")
        np.testing.assert_allclose(scores.column("weight").to_numpy()[rows], alone["weight"], atol=1e-6,
                                   err_msg=f"request {request_id}, weight")
        np.testing.assert_array_equal(scores.column("rank").to_numpy()[rows], alone["rank"])
    sums = pc.sum(scores.column("weight")).as_py()
    assert sums == pytest.approx(12.0)  # each request's weights sum to 1


def test_the_answer_does_not_depend_on_chunking_or_row_order(core: RankingCore) -> None:
    table = _table(core, requests=9, per_request=25, seed=1)
    one_call = BatchScorer(core, batch_size=100_000).score(table)
    tiny_chunks = BatchScorer(core, batch_size=7).score(table)  # smaller than a request: one request per call
    assert_same_scores(tiny_chunks, one_call)

    # the same chunks (requests sorted by id inside the scorer), so the very same numbers
    reversed_rows = pa.array(np.arange(table.num_rows)[::-1])
    chunked = BatchScorer(core, batch_size=60)
    assert chunked.score(table.take(reversed_rows)).equals(chunked.score(table).take(reversed_rows))


def test_without_request_id_it_predicts_and_blends(core: RankingCore) -> None:
    table = _table(core, requests=3, per_request=40).drop_columns([REQUEST_COLUMN])
    scores = BatchScorer(core, batch_size=50).score(table.to_pandas())  # a DataFrame works as well

    assert scores.column_names == BatchScorer.output_columns(per_request=False)
    features = np.column_stack([table.column(n).to_numpy() for n in core.state.feature_names]).astype(np.float32)
    predicted = core.predict(features)
    for head in HEADS:
        np.testing.assert_allclose(scores.column(head).to_numpy(), predicted[head], rtol=RTOL, atol=ATOL)
    # the utility is the engine's blend before prices: the one `explain` reports for a single request
    rows, alone = _alone(core, _table(core, requests=3, per_request=40), 0)
    np.testing.assert_allclose(scores.column("utility").to_numpy()[rows], alone["utility"], rtol=RTOL, atol=ATOL)


def test_score_parquet_writes_the_scores_and_keeps_old_ones(core: RankingCore, tmp_path: Path) -> None:
    data = tmp_path / "candidates"
    data.mkdir()
    table = _table(core, requests=6, per_request=20, seed=2)
    pq.write_table(table.slice(0, 50), data / "a.parquet")  # a request split across two files is fine
    pq.write_table(table.slice(50), data / "b.parquet")
    scorer = BatchScorer(core)
    summary = score_parquet(data, tmp_path / "scores", scorer)

    assert (summary.rows, summary.requests, summary.per_request) == (120, 6, True)
    assert summary.files == (tmp_path / "scores" / "scores.parquet",)
    assert pq.read_table(summary.files[0]).equals(scorer.score(table))
    with pytest.raises(BatchInputError, match="is a file or a folder that is not empty; expected a new or empty"):
        score_parquet(data, tmp_path / "scores", scorer)
    assert pq.read_table(summary.files[0]).num_rows == 120  # nothing lost
    with pytest.raises(BatchInputError, match="which does not exist; expected a Parquet file or a folder"):
        score_parquet(tmp_path / "missing", tmp_path / "other", scorer)


def test_bad_tables_say_what_was_received_and_how_to_fix_it(core: RankingCore) -> None:
    scorer = BatchScorer(core)
    table = _table(core, requests=3, per_request=10)
    feature = core.state.feature_names[0]

    with pytest.raises(BatchInputError, match=r"missing columns \['cluster_id'\]; expected \['item_id'"):
        scorer.score(table.drop_columns(["cluster_id"]))
    wrong = table.set_column(table.schema.get_field_index("creator_id"), "creator_id",
                             pa.array([f"c{i}" for i in range(table.num_rows)]))
    with pytest.raises(BatchInputError, match=r"wrong type: creator_id \(string\); expected integer ids"):
        scorer.score(wrong)
    ids = table.column(REQUEST_COLUMN).to_pylist()
    with pytest.raises(BatchInputError, match="request_id: received 1 missing values"):
        scorer.score(table.set_column(table.schema.get_field_index(REQUEST_COLUMN), REQUEST_COLUMN,
                                      pa.array([None, *ids[1:]], pa.int64())))
    # a request the engine rejects is named by its request id
    bad_request = ids[4]
    values = np.asarray(table.column(feature).to_numpy(), np.float32).copy()
    values[4] = np.nan
    with pytest.raises(BatchInputError, match=rf"request_id {bad_request!r} \(10 candidates, .*{feature}"):
        scorer.score(table.set_column(table.schema.get_field_index(feature), feature, pa.array(values)))
    with pytest.raises(BatchInputError, match="batch_size: received 0; expected a positive number"):
        BatchScorer(core, batch_size=0)
    with pytest.raises(BatchInputError, match="surface: received 'nowhere'; expected one of"):
        BatchScorer(core, surface="nowhere")
    empty = scorer.score(table.slice(0, 0))
    assert empty.num_rows == 0
    assert empty.column_names == BatchScorer.output_columns(per_request=True)
