"""What a policy may see: the observable view of a round, built by copying from the world.

`Observation` holds read-only numpy copies of observable signals only, and no reference to the world,
so a policy cannot reach hidden state (true quality, gaming, account type, operator, satisfaction)
through it. The oracle reference alone also receives a `Truth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from experiments.config import ScenarioConfig
from experiments.simulator.retrieval import Retrieved
from experiments.simulator.state import F64, I64, World
from experiments.simulator.users import expectations

CANDIDATE_FEATURES = (
    "affinity", "price", "quality_signal", "originality", "popularity", "account_age", "item_age",
    "account_impressions", "account_clicks", "account_purchases", "account_complaints", "account_gmv",
)


_Array = TypeVar("_Array", bound=NDArray[Any])


def _frozen(array: _Array) -> _Array:
    out = array.copy(order="K")  # like np.array(array, copy=True): keeps the memory layout
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Candidates:
    """Observable per-candidate signals; every array is (R, M)."""

    item: I64  # global item id
    account: I64  # account id (a public creator id)
    affinity: F64  # retrieval affinity
    price: F64
    quality_signal: F64  # noisy quality score (aesthetic / static-frame style)
    originality: F64  # piracy-fingerprint originality score in [0, 1]
    popularity: F64  # the creator's observed popularity (followers)
    account_age: F64  # rounds since the account appeared
    item_age: F64
    dup_cluster: I64  # detected duplicate-cluster id (content root), -1 none
    operator_cluster: I64  # detected operator cluster id, -1 none
    account_impressions: F64  # the account's past counts, from this policy's own impressions
    account_clicks: F64
    account_purchases: F64
    account_complaints: F64
    account_gmv: F64

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.item.shape
        return rows, cols


@dataclass(frozen=True)
class AccountHistory:
    """Observable per-account history, indexed by account id (0 .. n_accounts - 1)."""

    alive: NDArray[np.bool_]
    age: F64
    popularity: F64
    impressions: F64  # cumulative
    exposure: F64  # cumulative position-weighted exposure
    recent_exposure: F64  # exposure over the last metrics window
    clicks: F64
    purchases: F64
    complaints: F64
    gmv: F64
    operator_cluster: I64  # detected operator cluster, -1 none

    def cluster_key(self) -> I64:
        """Allocation cluster per account: the detected operator cluster, else the account alone.

        Undetected accounts get a negative key unique to them, so keys never collide with operator ids.
        """
        accounts = np.arange(len(self.alive), dtype=np.int64)
        return np.where(self.operator_cluster >= 0, self.operator_cluster, -1 - accounts)

    def cluster_exposure(self, *, recent: bool = False) -> tuple[I64, F64, I64]:
        """Exposure summed per allocation cluster: (cluster keys, exposure per key, key index per account).

        Cumulative exposure by default, the last metrics window with `recent=True`.
        """
        keys, index = np.unique(self.cluster_key(), return_inverse=True)
        values = self.recent_exposure if recent else self.exposure
        return keys, np.bincount(index, weights=values, minlength=len(keys)).astype(np.float64), index


@dataclass(frozen=True)
class Observation:
    round: int
    n_slots: int  # K
    user: I64  # (R,) requesting user ids
    candidates: Candidates
    accounts: AccountHistory


@dataclass(frozen=True)
class Truth:
    """Ground truth for the oracle reference only; every array is (R, M)."""

    p_click: F64  # at the top slot, before duplicate effects
    p_purchase: F64  # | click
    p_engage: F64  # | click
    p_complaint: F64  # | purchase
    price: F64
    violation: NDArray[np.bool_]


def observe(world: World, config: ScenarioConfig, retrieved: Retrieved, round_: int) -> Observation:
    items, acc = world.items, world.accounts
    rows = retrieved.rows
    owner = items.account[rows]
    n = acc.n
    start = max(0, round_ - config.run.window)
    candidates = Candidates(
        item=_frozen(items.id[rows]), account=_frozen(owner), affinity=_frozen(retrieved.affinity),
        price=_frozen(items.price[rows]), quality_signal=_frozen(items.quality_signal[rows]),
        originality=_frozen(items.originality[rows]), popularity=_frozen(acc.popularity[owner]),
        account_age=_frozen((round_ - acc.born[owner]).astype(float)),
        item_age=_frozen((round_ - items.born[rows]).astype(float)),
        dup_cluster=_frozen(items.detected_dup[rows]), operator_cluster=_frozen(acc.detected_cluster[owner]),
        account_impressions=_frozen(acc.impressions[owner]), account_clicks=_frozen(acc.clicks[owner]),
        account_purchases=_frozen(acc.purchases[owner]), account_complaints=_frozen(acc.complaints[owner]),
        account_gmv=_frozen(acc.gmv[owner]),
    )
    history = AccountHistory(
        alive=_frozen(acc.alive), age=_frozen((round_ - acc.born[:n]).astype(float)),
        popularity=_frozen(acc.popularity[:n]), impressions=_frozen(acc.impressions[:n]),
        exposure=_frozen(acc.exposure[:n]), recent_exposure=_frozen(acc.exposure_hist[:n, start:round_].sum(axis=1)),
        clicks=_frozen(acc.clicks[:n]), purchases=_frozen(acc.purchases[:n]),
        complaints=_frozen(acc.complaints[:n]), gmv=_frozen(acc.gmv[:n]),
        operator_cluster=_frozen(acc.detected_cluster[:n]),
    )
    return Observation(round=round_, n_slots=min(config.ranking.slots, rows.shape[1]), user=_frozen(retrieved.user),
                       candidates=candidates, accounts=history)


def reveal_truth(world: World, config: ScenarioConfig, retrieved: Retrieved) -> Truth:
    e = expectations(world, config, retrieved.user, retrieved.rows, retrieved.affinity)
    return Truth(p_click=_frozen(e.p_click), p_purchase=_frozen(e.p_purchase), p_engage=_frozen(e.p_engage),
                 p_complaint=_frozen(e.p_complaint), price=_frozen(e.price),
                 violation=_frozen(world.items.violation[retrieved.rows]))
