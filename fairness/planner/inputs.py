"""Planner inputs: the arrays the offline planner reads, validated before any solver sees them.

The offline planner of the design note (docs: /work/shared/design/allocator.md, "Offline planner")
works on *pairs* (creator a, user segment s): one decision variable per pair, the share of all of the
horizon's impressions that goes to creator a in segment s. `PlanInputs` holds the per-creator arrays
(length A), the per-segment arrays (length S) and the per-pair arrays (length P), struct-of-arrays, so
that every step of the planner is vectorized.

Merit is used as a *lower confidence bound* (`merit_lower_bound`): noisy newcomers are not
over-rewarded by the anti-Matthew caps and cluster floors that merit drives.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]

# Supply shares must sum to 1 within this (they are shares of the horizon's impressions).
SUPPLY_TOLERANCE = 1e-6

_CREATOR_FIELDS = ("creator", "cluster", "merit", "original", "newcomer")
_PAIR_FIELDS = ("pair_segment", "pair_creator", "value", "demand", "risk", "complaint")
_DTYPES: dict[str, type[np.generic]] = {
    "creator": np.int64, "cluster": np.int64, "merit": np.float64, "original": np.bool_, "newcomer": np.bool_,
    "supply": np.float64, "pair_segment": np.int64, "pair_creator": np.int64, "value": np.float64,
    "demand": np.float64, "risk": np.float64, "complaint": np.float64,
}


class PlanInputError(ValueError):
    """Planner inputs are malformed; the message says what was received, what was expected and the fix."""


@dataclass(frozen=True)
class PlanInputs:
    """Everything the planner needs about one horizon (shares of all of the horizon's impressions).

    Per creator (A,): `creator` ids (unique), `cluster` (operator-cluster id; a creator alone has its own
    unique id), `merit` (>= 0, already a lower confidence bound), `original` (eligible for the originals
    floor), `newcomer` (eligible for the newcomer exploration floor).
    Per segment (S,): `segments` names, `supply` (share of the horizon's impressions; sums to 1).
    Per pair (P,): `pair_segment` (index into segments), `pair_creator` (index into the creator arrays),
    `value` (blended utility per impression), `demand` (>= 0: the most, as a share of ALL impressions,
    the creator can usefully take in that segment), `risk` and `complaint` (probabilities per impression).
    """

    creator: I64
    cluster: I64
    merit: F64
    original: Bool
    newcomer: Bool
    segments: tuple[str, ...]
    supply: F64
    pair_segment: I64
    pair_creator: I64
    value: F64
    demand: F64
    risk: F64
    complaint: F64

    @property
    def n_creators(self) -> int:
        return len(self.creator)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_creator)

    def validate(self) -> PlanInputs:
        """Check shapes, dtypes, finiteness, signs and index ranges; return self, or raise PlanInputError.

        Every problem found is listed (not only the first), each saying what was received, what was
        expected and which field to fix.
        """
        problems: list[str] = []
        for f in fields(self):
            if f.name == "segments":
                continue
            array = getattr(self, f.name)
            if not isinstance(array, np.ndarray) or array.ndim != 1:
                shape = getattr(array, "shape", type(array).__name__)
                problems.append(f"{f.name}: expected a 1-D numpy array, received {shape}; pass np.asarray(...)")
                continue
            expected = _DTYPES[f.name]
            if array.dtype != expected:
                problems.append(f"{f.name}: expected dtype {np.dtype(expected)}, received {array.dtype}; "
                                f"convert with .astype(np.{np.dtype(expected).name})")
        if problems:
            raise PlanInputError("invalid planner inputs: " + "; ".join(problems))

        n_creators, n_segments, n_pairs = len(self.creator), len(self.segments), len(self.pair_creator)
        for name in _CREATOR_FIELDS:
            if len(getattr(self, name)) != n_creators:
                problems.append(f"{name}: expected length A = {n_creators} (len(creator)), received "
                                f"{len(getattr(self, name))}; give one entry per creator")
        if len(self.supply) != n_segments:
            problems.append(f"supply: expected length S = {n_segments} (len(segments)), received {len(self.supply)}; "
                            "give one share per segment")
        for name in _PAIR_FIELDS:
            if len(getattr(self, name)) != n_pairs:
                problems.append(f"{name}: expected length P = {n_pairs} (len(pair_creator)), received "
                                f"{len(getattr(self, name))}; give one entry per (creator, segment) pair")
        if problems:
            raise PlanInputError("invalid planner inputs: " + "; ".join(problems))

        for name in ("merit", "supply", "value", "demand", "risk", "complaint"):
            array = getattr(self, name)
            bad = ~np.isfinite(array)
            if bad.any():
                problems.append(f"{name}: expected finite values, received {int(bad.sum())} NaN/inf (first at "
                                f"index {int(np.argmax(bad))}); impute or drop those entries")
        for name in ("merit", "supply", "demand"):
            array = getattr(self, name)
            negative = array < 0
            if negative.any():
                problems.append(f"{name}: expected >= 0, received {int(negative.sum())} negative values (min "
                                f"{float(array[np.isfinite(array)].min()):g}); clip at 0")
        for name in ("risk", "complaint"):
            array = getattr(self, name)
            outside = (array < 0) | (array > 1)
            if outside.any():
                problems.append(f"{name}: expected probabilities in [0, 1], received {int(outside.sum())} outside "
                                "(check that the head is calibrated)")
        if n_segments == 0:
            problems.append("segments: expected at least one segment, received none")
        elif len(set(self.segments)) != n_segments:
            problems.append(f"segments: expected unique names, received {list(self.segments)}")
        elif np.isfinite(self.supply).all() and abs(float(self.supply.sum()) - 1.0) > SUPPLY_TOLERANCE:
            problems.append(f"supply: expected shares summing to 1, received sum {float(self.supply.sum()):.9g}; "
                            "divide by the total impressions of the horizon")
        unique, counts = np.unique(self.creator, return_counts=True)
        if (counts > 1).any():
            duplicated = unique[counts > 1][:5].tolist()
            problems.append(f"creator: expected unique ids, received {int((counts > 1).sum())} duplicated (e.g. "
                            f"{duplicated}); merge their rows")
        if n_pairs:
            if self.pair_segment.min() < 0 or self.pair_segment.max() >= n_segments:
                problems.append(f"pair_segment: expected indices in [0, {n_segments - 1}] (positions in segments), "
                                f"received range [{int(self.pair_segment.min())}, {int(self.pair_segment.max())}]")
            if self.pair_creator.min() < 0 or self.pair_creator.max() >= n_creators:
                problems.append(f"pair_creator: expected row indices in [0, {n_creators - 1}] (positions in the "
                                f"creator arrays, not creator ids), received range [{int(self.pair_creator.min())}, "
                                f"{int(self.pair_creator.max())}]")
        if problems:
            raise PlanInputError("invalid planner inputs: " + "; ".join(problems))
        return self


def merit_lower_bound(mean: F64, std_err: F64, z: float) -> F64:
    """max(0, mean - z * std_err): the merit the planner uses (design note: "a lower confidence bound so
    that noisy newcomers are not over-rewarded"); z is `policy.planner.lcb_z`."""
    mean, std_err = np.asarray(mean, dtype=np.float64), np.asarray(std_err, dtype=np.float64)
    if mean.shape != std_err.shape:
        raise PlanInputError(f"merit_lower_bound: mean has shape {mean.shape} but std_err has shape "
                             f"{std_err.shape}; expected the same shape (one standard error per mean)")
    if z < 0 or not np.isfinite(z):
        raise PlanInputError(f"merit_lower_bound: expected z >= 0 (planner.lcb_z), received {z}")
    if (std_err < 0).any():
        raise PlanInputError("merit_lower_bound: expected standard errors >= 0, received "
                             f"{int((std_err < 0).sum())} negative")
    return np.maximum(0.0, mean - z * std_err)
