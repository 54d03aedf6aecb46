"""The transport-agnostic ranking core: decode, validate, predict, blend, price, allocate, explain.

The gRPC servicer (serving/server.py) only converts messages to and from the plain types here; the
simulator's ecorank policy (experiments/policies/engine.py), batch scoring and tests call
`RankingCore.rank` directly, and get the same answers (tested). A `RankInput` may carry many requests at
once (`request`: the request index of every candidate), which is how the simulator ranks a whole round in
one model call and one batched allocation. The core holds one
immutable `Loaded` state (model bundle + fairness engine with its plan); `reload` builds, validates and
warms up a new state off to the side and swaps the reference in one assignment, so a request sees either
the old state or the new one, never a mix, and a bad file never replaces a good one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fairness.blend import BlendInputError, HeadPredictions
from fairness.engine import CandidateBatch, Explanation, FairnessEngine
from fairness.planner import TrafficPlan, load_plan
from fairness.policy import HEADS, FairnessPolicy
from mtl.bundle import Bundle, load_bundle
from mtl.data import DataError

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Bool = NDArray[np.bool_]

DEFAULT_SURFACES = ("content", "shelf")
DEFAULT_MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class Violation:
    """One bad field: where, what was received, what was expected (google.rpc.BadRequest.FieldViolation)."""

    field: str
    description: str


class InvalidRequest(ValueError):
    """The request cannot be ranked; every violation names the field, what was received and the fix."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class ReloadError(RuntimeError):
    """A bundle or plan could not be loaded, validated or warmed up; the serving state is unchanged."""


@dataclass(frozen=True)
class Limits:
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    surfaces: tuple[str, ...] = DEFAULT_SURFACES


@dataclass(frozen=True)
class RankInput:
    """One request's candidates, decoded: every array has one entry per candidate."""

    request_id: str
    surface: str
    item_ids: I64
    creator_ids: I64
    cluster_ids: I64
    original: Bool
    features: F32  # (N, F) in the model's feature order
    overrides: Mapping[str, float] = field(default_factory=dict)
    explain: bool = False
    market: str = ""
    # Many requests in one call: the request index (0..R-1) of every candidate, each request's candidates
    # contiguous. None: one request. Limits and duplicate checks apply per request.
    request: I64 | None = None

    @property
    def n_requests(self) -> int:
        return 1 if self.request is None or len(self.request) == 0 else int(self.request[-1]) + 1


@dataclass(frozen=True)
class Ranked:
    weights: F64                 # (N,) each request's weights sum to 1
    ranking: I64                 # (N,) candidate indices, request by request, highest weight first in each
    predictions: dict[str, F64]  # head -> (N,)
    explanation: Explanation | None
    model_version: str
    plan_version: int            # 0: no plan
    policy_name: str
    degraded: bool
    degraded_reason: str
    model_seconds: float = 0.0   # predict (the multi-task model and calibration)
    solver_seconds: float = 0.0  # blend, prices, allocation, ranking


@dataclass(frozen=True)
class Loaded:
    """What one request is served with; replaced whole on reload."""

    bundle: Bundle
    engine: FairnessEngine  # the default policy's
    surface_engines: Mapping[str, FairnessEngine] = field(default_factory=dict)  # surfaces with a policy of their own

    def engine_for(self, surface: str) -> FairnessEngine:
        return self.surface_engines.get(surface, self.engine)

    @property
    def plan(self) -> TrafficPlan | None:
        return self.engine.plan

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.bundle.schema.dense)

    @property
    def plan_version(self) -> int:
        return self.engine.plan.version if self.engine.plan is not None else 0


def decode_features(rows: int, cols: int, data: bytes, *, field_name: str = "candidates.features") -> F32:
    """(rows, cols) float32 view of a row-major little-endian blob, without copying; checks the byte length."""
    expected = rows * cols * 4
    if len(data) != expected:
        raise InvalidRequest([Violation(
            f"{field_name}.data",
            f"received {len(data)} bytes; expected rows x cols x 4 = {rows} x {cols} x 4 = {expected} "
            "(float32, row-major). Send np.asarray(x, '<f4').tobytes() with rows and cols set to x.shape")])
    return np.frombuffer(data, dtype="<f4").reshape(rows, cols)


def _check_bundle(bundle: Bundle) -> None:
    heads = {h.name for h in bundle.model.heads}
    missing = [h for h in HEADS if h not in heads]
    if missing:
        raise ReloadError(f"bundle {bundle.version} has heads {sorted(heads)}; serving needs {list(HEADS)} "
                          f"(missing {missing}). Train it on a schema with those heads (e.g. the built-in 'ecorank')")
    if bundle.schema.categorical:
        raise ReloadError(f"bundle {bundle.version} has categorical features "
                          f"{[c.name for c in bundle.schema.categorical]}; the service carries dense features only "
                          "(one float32 blob). Train on a dense-only schema")


class RankingCore:
    """Predict -> blend -> prices -> allocate -> explain, for one request at a time or many in a loop.

    `policy` serves every surface, except those given a policy of their own in `surface_policies` (e.g. a
    shelf with a higher originals floor); those surfaces are served even if `limits.surfaces` lacks them.
    All surfaces share the model and the traffic plan.
    """

    def __init__(self, bundle: Bundle, policy: FairnessPolicy, *, plan: TrafficPlan | None = None,
                 limits: Limits | None = None, surface_policies: Mapping[str, FairnessPolicy] | None = None) -> None:
        _check_bundle(bundle)
        self.policy = policy
        self.surface_policies = dict(surface_policies or {})
        limits = limits or Limits()
        extra = tuple(s for s in self.surface_policies if s not in limits.surfaces)
        self.limits = Limits(max_candidates=limits.max_candidates, surfaces=limits.surfaces + extra)
        self.state = self._warmed(self._state(bundle, plan))
        self._reload_lock = threading.Lock()

    def policy_for(self, surface: str) -> FairnessPolicy:
        return self.surface_policies.get(surface, self.policy)

    def _state(self, bundle: Bundle, plan: TrafficPlan | None, previous: Loaded | None = None) -> Loaded:
        """A new state; with `previous`, each engine keeps what its price controllers learned (carry-over)."""

        def engine(policy: FairnessPolicy, old: FairnessEngine | None) -> FairnessEngine:
            fresh = FairnessEngine(policy)
            if old is not None:
                fresh.creator_controller, fresh.cluster_controller = old.creator_controller, old.cluster_controller
            if plan is not None:
                fresh.set_plan(plan)  # new controllers, started from the plan's duals plus the carried corrections
            return fresh

        return Loaded(bundle=bundle, engine=engine(self.policy, previous.engine if previous else None),
                      surface_engines={s: engine(p, previous.surface_engines.get(s) if previous else None)
                                       for s, p in self.surface_policies.items()})

    # ---------------------------------------------------------------- validation

    def validate(self, request: RankInput, state: Loaded | None = None) -> None:
        """Raise InvalidRequest listing every problem with the request (all of them, not the first)."""
        state = state or self.state
        problems: list[Violation] = []
        n = len(request.item_ids)
        if n == 0:
            problems.append(Violation("candidates.item_ids", "received an empty batch; expected at least one "
                                                             "candidate"))
        groups = self._request_groups(request, n, problems)
        if len(groups) and (largest := int(groups.max())) > self.limits.max_candidates:
            where = "" if request.request is None else f" in request {int(groups.argmax())}"
            problems.append(Violation("candidates.item_ids", f"received {largest} candidates{where}; expected at "
                                      f"most {self.limits.max_candidates} per request. Split the batch"))
        for name in ("creator_ids", "cluster_ids", "original"):
            length = len(getattr(request, name))
            if length != n:
                problems.append(Violation(f"candidates.{name}", f"received {length} entries; expected one per "
                                          f"candidate ({n}, as many as item_ids)"))
        rows, cols = request.features.shape
        features = state.feature_names
        if rows != n:
            problems.append(Violation("candidates.features.rows", f"received {rows}; expected one row per "
                                      f"candidate ({n})"))
        if cols != len(features):
            problems.append(Violation("candidates.features.cols", f"received {cols}; expected {len(features)}: "
                                      f"{', '.join(features)} (GetModelInfo.feature_names, in that order)"))
        if rows * cols and not np.isfinite(request.features).all():
            bad = np.argwhere(~np.isfinite(request.features))
            r, c = (int(x) for x in bad[0])
            name = features[c] if c < len(features) else f"column {c}"
            problems.append(Violation("candidates.features.data", f"received {len(bad)} non-finite values (first: "
                                      f"row {r}, {name} = {request.features[r, c]}); expected finite float32. "
                                      "Impute missing values before sending"))
        if n and len(groups):
            repeated = _repeated_items(request.item_ids, request.request)
            if len(repeated):
                problems.append(Violation("candidates.item_ids", f"received {len(repeated)} duplicated ids (e.g. "
                                          f"{int(repeated[0])}); expected each candidate once per request"))
        if n and len(request.creator_ids) == n and len(request.cluster_ids) == n:
            # one sort by creator: a creator in two clusters shows as a cluster change inside a creator's run
            # (np.unique(axis=1) on the pairs cost 0.4 ms at 1,000 candidates)
            order = np.argsort(request.creator_ids, kind="stable")
            creator_sorted, cluster_sorted = request.creator_ids[order], request.cluster_ids[order]
            split = (creator_sorted[1:] == creator_sorted[:-1]) & (cluster_sorted[1:] != cluster_sorted[:-1])
            if split.any():
                creator = int(creator_sorted[1:][split][0])
                clusters = sorted({int(c) for c in request.cluster_ids[request.creator_ids == creator]})
                problems.append(Violation("candidates.cluster_ids", f"received creator {creator} in clusters "
                                          f"{clusters}; expected one cluster per creator (creators nest inside "
                                          "operator clusters). Send each creator's detected cluster"))
        if request.surface not in self.limits.surfaces:
            problems.append(Violation("surface", f"received {request.surface!r}; expected one of "
                                      f"{list(self.limits.surfaces)}"))
        try:  # the override ranges of the surface's own policy
            state.engine_for(request.surface).blend_weights(request.overrides)
        except BlendInputError as err:
            problems.append(Violation("blend_overrides", str(err)))
        if problems:
            raise InvalidRequest(problems)

    @staticmethod
    def _request_groups(request: RankInput, n: int, problems: list[Violation]) -> I64:
        """Candidates per request; checks the request index of a many-request input (empty on a bad index)."""
        if request.request is None:
            return np.array([n], np.int64)
        index = np.asarray(request.request)
        if len(index) != n:
            problems.append(Violation("request", f"received {len(index)} request indices; expected one per "
                                      f"candidate ({n})"))
            return np.zeros(0, np.int64)
        if n and (index[0] != 0 or (np.diff(index) < 0).any() or (np.diff(index) > 1).any()):
            problems.append(Violation("request", "received request indices that are not 0, 1, 2, ... in "
                                      "contiguous runs; expected each request's candidates together, requests "
                                      "numbered from 0 without gaps"))
            return np.zeros(0, np.int64)
        counts: I64 = np.bincount(index) if n else np.zeros(0, np.int64)
        return counts

    # ---------------------------------------------------------------- ranking

    def predict(self, features: F32, state: Loaded | None = None) -> dict[str, F64]:
        state = state or self.state
        return state.bundle.predict_dense(features)  # no table: 0.5 ms of model, not 3.4 ms of conversion at n=100

    def rank(self, request: RankInput, *, now: float | None = None) -> Ranked:
        """Validate, then rank with the state current at the call (a concurrent reload cannot mix states).

        `now` is the clock the plan's TTL is checked against (default: wall time; the simulator passes rounds).
        """
        state = self.state
        self.validate(request, state)
        started = time.perf_counter()
        try:
            predictions = self.predict(request.features, state)
        except DataError as err:  # the schema's own checks (e.g. log1p features must exceed -1)
            raise InvalidRequest([Violation("candidates.features.data", str(err))]) from None
        predicted = time.perf_counter()
        heads = HeadPredictions(**{h: predictions[h] for h in HEADS})
        n = len(request.item_ids)
        engine = state.engine_for(request.surface)
        result = engine.allocate(
            CandidateBatch(creator=np.asarray(request.creator_ids, np.int64),
                           cluster=np.asarray(request.cluster_ids, np.int64),
                           original=np.asarray(request.original, bool), heads=heads,
                           request=np.zeros(n, np.int64) if request.request is None else request.request),
            overrides=request.overrides or None, now=now)
        ranking = _ranking(result.weights, result.value, request.request)
        reasons = list(result.notes)
        if state.plan is None:
            reasons.append("no traffic plan loaded: hard caps only, no plan prices")
        return Ranked(
            weights=result.weights, ranking=ranking, predictions=predictions,
            explanation=result.explanation if request.explain else None, model_version=state.bundle.version,
            plan_version=state.plan_version, policy_name=engine.policy.name,
            degraded=bool(result.degraded.any()) or state.plan is None, degraded_reason="; ".join(reasons),
            model_seconds=predicted - started, solver_seconds=time.perf_counter() - predicted)

    # ---------------------------------------------------------------- state

    def set_plan(self, plan: TrafficPlan) -> Loaded:
        """Adopt an in-memory plan (the simulator re-plans inside a run); same swap as `reload`."""
        return self._adopt(self.state.bundle, plan)

    def set_bundle(self, bundle: Bundle) -> Loaded:
        """Adopt an in-memory bundle (a policy retrained inside a simulation); checked and warmed like `reload`."""
        _check_bundle(bundle)
        return self._adopt(bundle, self.state.plan)

    def _adopt(self, bundle: Bundle, plan: TrafficPlan | None) -> Loaded:
        with self._reload_lock:
            return self._swap(bundle, plan)

    def _swap(self, bundle: Bundle, plan: TrafficPlan | None) -> Loaded:
        """Warm up a state built from `bundle` and `plan` (controllers carried over), then swap it in; the
        caller holds the reload lock."""
        fresh = self._warmed(self._state(bundle, plan, previous=self.state))
        self.state = fresh  # one reference assignment: atomic for readers
        return fresh

    def observe(self, *, creator: I64, cluster: I64, exposure: F64) -> None:
        """Realized exposure per creator since the last call: moves every surface's price controllers."""
        state = self.state
        for engine in (state.engine, *state.surface_engines.values()):
            engine.observe(creator=creator, cluster=cluster, exposure=exposure)

    def reload(self, *, bundle_path: Path | None = None, plan_path: Path | None = None) -> Loaded:
        """Load, check and warm up a new bundle and / or plan, then swap; on any failure keep the current state.

        Raises ReloadError naming the file and what was wrong. Reloads are serialized; requests keep being
        served from the current state throughout.
        """
        with self._reload_lock:
            current = self.state
            try:
                bundle = load_bundle(bundle_path) if bundle_path is not None else current.bundle
                _check_bundle(bundle)
                plan = load_plan(plan_path) if plan_path is not None else current.plan
            except ReloadError:
                raise
            except Exception as err:  # a corrupt file of any kind must leave the good state in place
                raise ReloadError(f"reload refused, still serving model {current.bundle.version} and plan "
                                  f"v{current.plan_version}: {err}") from err
            return self._swap(bundle, plan)

    def _warmed(self, state: Loaded) -> Loaded:
        """Run one request through the new state before it serves (first-call costs, and a last check)."""
        n, cols = 8, len(state.feature_names)
        warm = RankInput(request_id="warm-up", surface=self.limits.surfaces[0], item_ids=np.arange(n),
                         creator_ids=np.arange(n), cluster_ids=np.arange(n), original=np.zeros(n, bool),
                         features=np.zeros((n, cols), np.float32))
        try:
            predictions = self.predict(warm.features, state)
        except Exception as err:
            raise ReloadError(f"model {state.bundle.version} failed its warm-up prediction: {err}") from err
        for head, values in predictions.items():
            if values.shape != (n,) or not np.isfinite(values).all():
                raise ReloadError(f"model {state.bundle.version} predicted non-finite or misshapen {head!r} on its "
                                  "warm-up batch; refusing it")
        return state


def _repeated_items(item_ids: I64, request: I64 | None) -> I64:
    """Item ids that occur twice within one request."""
    if request is None:
        unique, counts = np.unique(item_ids, return_counts=True)
        return unique[counts > 1]
    order = np.lexsort((item_ids, request))
    items, requests = item_ids[order], request[order]
    twice = (items[1:] == items[:-1]) & (requests[1:] == requests[:-1])
    return np.unique(items[1:][twice])


def _ranking(weights: F64, value: F64, request: I64 | None) -> I64:
    """Candidate indices request by request, each by weight then adjusted utility (ties in the weights are
    common: every candidate at its cap), highest first; equal both ways keeps the input order."""
    index = np.arange(len(weights))
    keys = (index, -value, -weights) if request is None else (index, -value, -weights, request)
    return np.lexsort(keys).astype(np.int64)

