"""The contract between data and models: what goes in (InputSpec) and what comes out (HeadSpec).

A schema (`mtl/schema.py`) produces both; models (`mtl/models/`) only ever see these two, so a model
trains on any schema without knowing column names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HeadKind = Literal["binary", "regression", "ziln"]
HEAD_KINDS: tuple[HeadKind, ...] = ("binary", "regression", "ziln")

# Raw outputs per head: a logit; a value; ZILN: (purchase logit, mu, raw sigma).
OUTPUT_DIM: dict[HeadKind, int] = {"binary": 1, "regression": 1, "ziln": 3}


@dataclass(frozen=True)
class HeadSpec:
    """One prediction head.

    `label` is the label column it learns from. With `mask`, the head trains only on rows where that
    other label is positive (e.g. purchase amount only where purchase == 1).
    """

    name: str
    kind: HeadKind
    label: str
    mask: str | None = None

    @property
    def output_dim(self) -> int:
        return OUTPUT_DIM[self.kind]


@dataclass(frozen=True)
class CategoricalInput:
    buckets: int  # ids are in [0, buckets); 0 is the out-of-vocabulary / missing bucket
    embedding_dim: int


@dataclass(frozen=True)
class InputSpec:
    """Model inputs: `n_dense` standardized floats and one id per categorical feature."""

    n_dense: int
    categorical: tuple[CategoricalInput, ...]

    @property
    def width(self) -> int:
        """Width of the concatenated input vector: dense values plus every embedding."""
        return self.n_dense + sum(c.embedding_dim for c in self.categorical)
