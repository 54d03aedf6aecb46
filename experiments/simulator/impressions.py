"""impressions.parquet: one row per shown (request, candidate), the training data of the MTL models.

Columns: identifiers, the observable features the policy saw, the slot position, the logging
policy's propensity and the four labels (`gmv`, `prosperity`, `risk`, `complaint`) plus `click` and
`purchase`. The `risk` label is a delayed audit's verdict with label noise. Written one row group
per round, so readers can stream it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from experiments.config import ScenarioConfig
from experiments.simulator.observation import CANDIDATE_FEATURES
from experiments.simulator.state import World
from experiments.simulator.story import RoundRecord

SCHEMA = pa.schema([
    pa.field("policy", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("round", pa.int32()),
    pa.field("request_id", pa.int64(), metadata={"doc": "unique per (seed, round, user)"}),
    pa.field("user", pa.int32()),
    pa.field("position", pa.int16(), metadata={"doc": "slot, 1 = top"}),
    pa.field("item", pa.int64()),
    pa.field("account", pa.int64()),
    pa.field("operator_cluster", pa.int64(), metadata={"doc": "detected operator cluster, -1 none"}),
    pa.field("dup_cluster", pa.int64(), metadata={"doc": "detected duplicate cluster, -1 none"}),
    *[pa.field(name, pa.float32()) for name in CANDIDATE_FEATURES],
    pa.field("propensity", pa.float64(), metadata={
        "doc": "logging policy's probability of this candidate at this position given the slots above"}),
    pa.field("click", pa.int8()),
    pa.field("purchase", pa.int8()),
    pa.field("gmv", pa.float32(), metadata={"doc": "purchase amount, 0 without purchase"}),
    pa.field("prosperity", pa.int8(), metadata={"doc": "healthy engagement (long view / follow)"}),
    pa.field("risk", pa.int8(), metadata={"doc": "governance violation per a delayed, noisy audit"}),
    pa.field("complaint", pa.int8()),
])


def impressions_table(world: World, config: ScenarioConfig, record: RoundRecord, *, policy: str, seed: int,
                      rng: np.random.Generator) -> pa.Table:
    obs, slate, resp = record.observation, record.slate, record.responses
    n_requests, n_slots = slate.positions.shape
    cand = obs.candidates

    def shown(values: np.ndarray) -> np.ndarray:
        return np.take_along_axis(values, slate.positions, axis=1).ravel()

    # Delayed audit: the item is a violation (copy, low-effort, matrix spam) or the purchase was defective.
    truth = world.items.violation[record.shown] | (resp.purchase & resp.complaint)
    flip = rng.random(truth.shape)
    labels = noisy_labels(truth, flip, config.labels.risk_false_negative, config.labels.risk_false_positive)
    users = np.repeat(obs.user, n_slots)
    columns = {
        "policy": pa.array(np.full(users.size, policy)),
        "seed": np.full(users.size, seed, np.int64),
        "round": np.full(users.size, record.round, np.int32),
        "request_id": (record.round * world.users.n + users).astype(np.int64),
        "user": users.astype(np.int32),
        "position": np.tile(np.arange(1, n_slots + 1, dtype=np.int16), n_requests),
        "item": shown(cand.item),
        "account": shown(cand.account),
        "operator_cluster": shown(cand.operator_cluster),
        "dup_cluster": shown(cand.dup_cluster),
        **{name: shown(getattr(cand, name)).astype(np.float32) for name in CANDIDATE_FEATURES},
        "propensity": slate.propensity.ravel(),
        "click": resp.click.ravel().astype(np.int8),
        "purchase": resp.purchase.ravel().astype(np.int8),
        "gmv": resp.gmv.ravel().astype(np.float32),
        "prosperity": resp.engage.ravel().astype(np.int8),
        "risk": labels.ravel().astype(np.int8),
        "complaint": resp.complaint.ravel().astype(np.int8),
    }
    return pa.table(columns, schema=SCHEMA)


def noisy_labels(truth: np.ndarray, uniforms: np.ndarray, false_negative: float, false_positive: float) -> np.ndarray:
    """Flip true labels to 0 with probability false_negative and clean ones to 1 with false_positive."""
    return np.where(truth, uniforms >= false_negative, uniforms < false_positive)


class ImpressionWriter:
    """Streams one row group per round into a Parquet file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


def merge_parts(parts: list[Path], destination: Path) -> int:
    """Concatenate part files row group by row group into one file (bounded memory); return rows."""
    rows = 0
    with pq.ParquetWriter(destination, SCHEMA, compression="zstd") as writer:
        for part in parts:
            reader = pq.ParquetFile(part)
            for group in range(reader.num_row_groups):
                table = reader.read_row_group(group)
                rows += table.num_rows
                writer.write_table(table)
    return rows
