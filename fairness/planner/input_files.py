"""Planner inputs on disk: three Parquet tables keyed by ids, so that a plan can be computed anywhere.

    inputs/creators.parquet   creator (int64), cluster (int64), merit, original (bool), newcomer (bool)
    inputs/segments.parquet   segment (string, 'market/surface'), supply (shares summing to 1)
    inputs/pairs.parquet      creator (id), segment (name), value, demand, risk, complaint

Pairs refer to creators and segments by id and name, not by position, so the tables can be written by
any job (a warehouse query, the loop) and read back in any row order. `ecorank plan --inputs DIR` reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairness.planner.inputs import PlanInputError, PlanInputs

TABLES = {  # file -> the columns load_inputs reads (types: the module docstring)
    "creators": ("creator", "cluster", "merit", "original", "newcomer"),
    "segments": ("segment", "supply"),
    "pairs": ("creator", "segment", "value", "demand", "risk", "complaint"),
}


def save_inputs(inputs: PlanInputs, folder: Path) -> Path:
    """Write the three tables (validated inputs) into `folder`; returns it."""
    inputs.validate()
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"creator": inputs.creator, "cluster": inputs.cluster, "merit": inputs.merit,
                  "original": inputs.original, "newcomer": inputs.newcomer}).to_parquet(folder / "creators.parquet",
                                                                                        index=False)
    pd.DataFrame({"segment": list(inputs.segments), "supply": inputs.supply}).to_parquet(
        folder / "segments.parquet", index=False)
    pd.DataFrame({"creator": inputs.creator[inputs.pair_creator],
                  "segment": np.asarray(inputs.segments, dtype=object)[inputs.pair_segment],
                  "value": inputs.value, "demand": inputs.demand, "risk": inputs.risk,
                  "complaint": inputs.complaint}).to_parquet(folder / "pairs.parquet", index=False)
    return folder


def load_inputs(folder: Path) -> PlanInputs:
    """Read the tables written by `save_inputs` (or any job writing the same columns) and validate them."""
    tables: dict[str, pd.DataFrame] = {}
    for name, columns in TABLES.items():
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise PlanInputError(f"planner inputs {folder}: expected {path.name} with columns {list(columns)}, "
                                 f"found no such file; write the inputs with fairness.planner.input_files.save_inputs")
        table = pd.read_parquet(path)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise PlanInputError(f"{path}: expected columns {list(columns)}, received {list(table.columns)} "
                                 f"(missing {missing}); add them")
        tables[name] = table
    creators, segments, pairs = tables["creators"], tables["segments"], tables["pairs"]
    creator_ids = creators["creator"].to_numpy(np.int64)
    segment_names = tuple(str(s) for s in segments["segment"])
    creator_row = pd.Index(creator_ids).get_indexer(pd.Index(pairs["creator"].to_numpy(np.int64)))
    segment_row = pd.Index(segment_names).get_indexer(pd.Index(pairs["segment"].astype(str)))
    for label, rows, where in (("creator", creator_row, "creators"), ("segment", segment_row, "segments")):
        unknown = rows < 0
        if unknown.any():
            examples = pairs[label][unknown].head(5).tolist()
            raise PlanInputError(f"{folder / 'pairs.parquet'}: {int(unknown.sum())} pairs name a {label} that "
                                 f"{where}.parquet does not have (e.g. {examples}); add it there or drop the pairs")
    return PlanInputs(
        creator=creator_ids, cluster=creators["cluster"].to_numpy(np.int64),
        merit=creators["merit"].to_numpy(np.float64), original=creators["original"].to_numpy(bool),
        newcomer=creators["newcomer"].to_numpy(bool), segments=segment_names,
        supply=segments["supply"].to_numpy(np.float64), pair_segment=segment_row.astype(np.int64),
        pair_creator=creator_row.astype(np.int64), value=pairs["value"].to_numpy(np.float64),
        demand=pairs["demand"].to_numpy(np.float64), risk=pairs["risk"].to_numpy(np.float64),
        complaint=pairs["complaint"].to_numpy(np.float64),
    ).validate()
