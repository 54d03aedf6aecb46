"""World state as struct-of-arrays: users, operators, accounts and live items.

Everything the story mutates lives here, in numpy arrays indexed by id, so every step of a round is
vectorized over all entities. Accounts and operators are never compacted (their id is their row);
items are compacted every round (only live items are kept; `Items.id` is the stable global id).
Hidden ground truth and observable signals sit side by side here; `observation.py` decides what a
policy may see.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

from experiments.config import ACCOUNT_TYPES

ORIGINAL, LOW_EFFORT, REUPLOADER, MATRIX = range(4)
TYPE_NAMES = ACCOUNT_TYPES
BAD_TYPES = (LOW_EFFORT, REUPLOADER, MATRIX)

INCUMBENT, LEGACY, NEWCOMER = range(3)
COHORT_NAMES = ("incumbent", "legacy", "newcomer")

ALIVE, EXIT_UNPROFITABLE, EXIT_UNVIABLE = range(3)
EXIT_NAMES = ("alive", "unprofitable", "unviable")

NONE = -1  # "no detected cluster", "no source"

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]


def _grown(array: NDArray[np.generic], capacity: int, fill: float | int | bool) -> NDArray[np.generic]:
    grown = np.full((capacity, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


@dataclass
class Users:
    taste: F64  # (U, d) unit vectors
    activity: F64  # (U,) daily activity probability
    price_sensitivity: F64  # (U,)
    patience: F64  # (U,)
    dormant_until: I64  # (U,) first round the user may be active again
    seen: I64  # (U, H) ring buffer of recently seen content roots, -1 empty
    seen_items: I64  # (U, H) the item ids of those impressions (retrieval filters them out)
    seen_next: I64  # (U,) next ring-buffer slot

    @property
    def n(self) -> int:
        return len(self.activity)


@dataclass
class Operators:
    """An operator owns one account (honest) or many (matrix); matrix accounts share a template."""

    type: I64
    n_accounts: I64
    template: F64  # (O, d) content template of matrix operators (zeros otherwise)
    template_root: I64  # content root id of the template (-1 for non-matrix)
    template_quality: F64
    template_price: F64
    n: int = 0

    def add(self, types: I64, n_accounts: I64, template: F64, template_root: I64,
            template_quality: F64, template_price: F64) -> I64:
        count = len(types)
        needed = self.n + count
        if needed > len(self.type):
            capacity = max(needed, 2 * len(self.type), 16)
            for f in ("type", "n_accounts", "template_root"):
                setattr(self, f, _grown(getattr(self, f), capacity, NONE))
            for f in ("template", "template_quality", "template_price"):
                setattr(self, f, _grown(getattr(self, f), capacity, 0.0))
        rows = slice(self.n, needed)
        self.type[rows], self.n_accounts[rows], self.template[rows] = types, n_accounts, template
        self.template_root[rows], self.template_quality[rows] = template_root, template_quality
        self.template_price[rows] = template_price
        ids = np.arange(self.n, needed, dtype=np.int64)
        self.n = needed
        return ids

    @staticmethod
    def empty(dim: int) -> Operators:
        return Operators(
            type=np.zeros(0, np.int64), n_accounts=np.zeros(0, np.int64), template=np.zeros((0, dim)),
            template_root=np.zeros(0, np.int64), template_quality=np.zeros(0), template_price=np.zeros(0),
        )


@dataclass
class Accounts:
    """Per-account arrays; row = account id. `*_hist` are (A, rounds) per-round records."""

    type: I64
    operator: I64
    cohort: I64
    born: I64
    died: I64  # round of exit, -1 while alive
    exit_cause: I64
    style: F64  # (A, d)
    mean_quality: F64
    gaming: F64
    defect_rate: F64
    production_rate: F64
    item_cost: F64
    originality_mean: F64
    price_level: F64  # log price point of the seller's catalogue
    obfuscation: F64
    copy_lag: I64
    wave_copier: B  # copies only the most exposed originals (S2 wave)
    detected_cluster: I64  # observable: detected operator cluster id, -1 none
    popularity: F64  # F, observable
    satisfaction: F64  # S, hidden
    negative_streak: I64
    impressions: F64  # lifetime counters, observable
    exposure: F64
    clicks: F64
    purchases: F64
    complaints: F64
    gmv: F64
    impressions_hist: F64  # (A, T)
    exposure_hist: F64  # (A, T)
    utility_hist: F64  # (A, T)
    n: int = 0

    @property
    def alive(self) -> B:
        return self.died[: self.n] < 0

    def add(self, **columns: NDArray[np.generic]) -> I64:
        count = len(columns["type"])
        needed = self.n + count
        if needed > len(self.type):
            capacity = max(needed, 2 * len(self.type), 64)
            for f in fields(self):
                if f.name == "n":
                    continue
                array = getattr(self, f.name)
                fill = NONE if f.name in ("died", "detected_cluster") else 0
                setattr(self, f.name, _grown(array, capacity, fill))
        rows = slice(self.n, needed)
        for name, values in columns.items():
            getattr(self, name)[rows] = values
        self.n = needed
        return np.arange(needed - count, needed, dtype=np.int64)

    @staticmethod
    def empty(dim: int, rounds: int) -> Accounts:
        def z() -> F64:
            return np.zeros(0, np.float64)

        def zi() -> I64:
            return np.zeros(0, np.int64)

        return Accounts(
            type=zi(), operator=zi(), cohort=zi(), born=zi(),
            died=zi(), exit_cause=zi(), style=np.zeros((0, dim)), mean_quality=z(),
            gaming=z(), defect_rate=z(), production_rate=z(), item_cost=z(), originality_mean=z(),
            price_level=z(), obfuscation=z(), copy_lag=zi(), wave_copier=np.zeros(0, np.bool_), detected_cluster=zi(),
            popularity=z(), satisfaction=z(), negative_streak=zi(), impressions=z(), exposure=z(),
            clicks=z(), purchases=z(), complaints=z(), gmv=z(), impressions_hist=np.zeros((0, rounds)),
            exposure_hist=np.zeros((0, rounds)), utility_hist=np.zeros((0, rounds)),
        )


@dataclass
class Items:
    """Live items only; compacted every round. `id` is the stable global item id."""

    id: I64
    account: I64
    embedding: F64  # (N, d)
    quality: F64  # hidden
    price: F64
    defect_rate: F64  # hidden
    is_original: B  # hidden: an original creation (not a copy, not low-effort, not a matrix duplicate)
    is_copy: B  # hidden: a re-upload of another creator's item
    violation: B  # hidden: copy, low-effort or matrix spam (governance violation)
    source: I64  # global id of the copied item (-1 none), hidden
    root: I64  # content root: originals are their own root; copies share the source's; matrix the template's
    born: I64
    obfuscation: F64
    quality_signal: F64  # observable noisy quality score
    originality: F64  # observable originality (fingerprint) score
    detected_dup: I64  # observable detected duplicate-cluster id (content root), -1 none
    recent_exposure: F64  # EMA of exposure, drives which originals get copied
    next_id: int = 0

    @property
    def n(self) -> int:
        return len(self.id)

    def append(self, other: Items) -> None:
        for f in fields(self):
            if f.name != "next_id":
                setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(other, f.name)]))

    def keep(self, mask: B) -> None:
        for f in fields(self):
            if f.name != "next_id":
                setattr(self, f.name, getattr(self, f.name)[mask])

    def allocate_ids(self, count: int) -> I64:
        ids = np.arange(self.next_id, self.next_id + count, dtype=np.int64)
        self.next_id += count
        return ids


@dataclass
class Detector:
    recall: float


@dataclass
class Strategies:
    """Multiplicative-weights state of adaptive adversaries: one weight vector per bad type."""

    reuploader_arms: F64  # (a, 2): obfuscation, copy lag
    reuploader_weights: F64
    matrix_arms: F64  # (b, 2): obfuscation, matrix size
    matrix_weights: F64


@dataclass
class World:
    users: Users
    operators: Operators
    accounts: Accounts
    items: Items
    detector: Detector
    strategies: Strategies
    centers: F64  # (C, d) taste cluster centres
    prototypes: F64  # (B, d) retrieval bucket prototypes
    user_bucket: I64  # (U,) retrieval bucket of each user
    round: int = 0
