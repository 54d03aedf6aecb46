"""The versioned TrafficPlan: planned exposure and dual prices, and its on-disk form.

Design note /work/shared/design/allocator.md: the offline planner runs every few minutes; the duals of
its creator, cluster and budget rows become the prices served online (adjusted utility = utility -
prices, so a negative price is a boost), published as a versioned TrafficPlan "(Parquet + manifest
with checksum and TTL)". Online fallback order: current plan -> last good plan -> hard caps only, so
`load_plan` refuses anything it cannot vouch for, and `save_plan` never leaves a half-written plan.

    plan = plan_traffic(inputs, policy, version=7)
    path = save_plan(plan, Path("plans"))        # plans/v000007/{creators,clusters}.parquet + manifest.json
    plan = load_plan(path)
    prices = plan.creator_prices(candidate_creator_ids) + plan.cluster_prices(candidate_cluster_ids)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cvxpy as cp
import numpy as np
import pandas as pd

from fairness.planner.dual_ascent import solve_dual_ascent
from fairness.planner.inputs import F64, I64, Bool, PlanInputs
from fairness.planner.program import (
    BUDGETS,
    FLOOR_HEADROOM,
    ExposureProgram,
    Solution,
    SolverFailure,
    build_program,
    solve_cvxpy,
)
from fairness.policy import FairnessPolicy

FORMAT = "ecorank-traffic-plan/1"
MANIFEST = "manifest.json"
CREATORS_FILE = "creators.parquet"
CLUSTERS_FILE = "clusters.parquet"
CREATOR_COLUMNS = {"creator": "int64", "cluster": "int64", "merit": "float64", "cap": "float64",
                   "target": "float64", "price": "float64"}
CLUSTER_COLUMNS = {"cluster": "int64", "target": "float64", "cap": "float64", "floor": "float64",
                   "floor_requested": "float64", "floor_slack": "float64", "price": "float64"}

# solver="auto", from the measurements of benchmarks/planner.py (2 cores, default policy, synthetic inputs;
# benchmarks/RESULTS.md). The goal is 1e5 pairs in at most 10 s.
#   LP (ridge 0): HiGHS (dual simplex, an exact vertex) up to HIGHS_SIZE_LIMIT pairs: 1.0 s at 3e4, but
#     10.9-11.5 s at 1e5 (superlinear); Clarabel (interior point: the centre of the optimal face, the same
#     objective within 3e-8) from there to AUTO_SIZE_LIMIT: 5.2-5.4 s at 1e5;
#   QP (ridge > 0): Clarabel up to AUTO_SIZE_LIMIT: 4.1-4.3 s at 1e5, 15-16 s at 3e5;
#   beyond AUTO_SIZE_LIMIT: dual ascent, 1.9-2.6 s at 3e5 and 7.4-12 s at 1e6 (HiGHS did not finish 3e5).
HIGHS_SIZE_LIMIT = 30_000
AUTO_SIZE_LIMIT = 100_000
# Dual ascent needs ridge > 0. For an LP policy (planner.ridge = 0) beyond AUTO_SIZE_LIMIT it solves the
# ridge program with gamma = LP_RIDGE x max(1, max |value|) x P: the ridge then costs ~LP_RIDGE/2 of the
# value scale on an even plan (x = 1/P). Measured (benchmarks/planner.py, 1e3-1e5 pairs): objective
# 0.06-0.12% below HiGHS' LP optimum, in 1-2x the time of the QP at ridge 0.01 x P.
LP_RIDGE = 1e-4
# Slacks below this (shares, or this fraction of the row's bound when larger) are solver noise, not
# relaxations, and are not reported.
REPORT_TOLERANCE = 1e-9


class PlanError(ValueError):
    """A plan cannot be built, saved or loaded; the message names the file or field, the problem and the fix."""


@dataclass(frozen=True, eq=False)
class TrafficPlan:
    """Planned exposure targets and dual prices of one planner run (shares of the horizon's impressions).

    `creators`: creator, cluster, merit, cap (anti-Matthew U_a), target (planned E_a), price (dual of the
    creator cap, >= 0). `clusters`: cluster, target (E_g), cap, floor (after caps won), floor_requested
    (before), floor_slack (how far the plan misses the floor), price (cap dual - floor dual; negative is a
    boost). Prices are in utility units per unit of exposure share and are subtracted from utility online.
    """

    version: int
    policy_name: str
    policy_fingerprint: str
    created_at: float
    horizon_rounds: float
    ttl_seconds: float
    creators: pd.DataFrame
    clusters: pd.DataFrame
    budget_prices: dict[str, float]
    segment_prices: dict[str, float]
    status: str
    objective: float
    solver: str
    solve_seconds: float
    relaxed: tuple[str, ...]
    stats: dict[str, float | int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The vectorized lookups binary-search the id columns, so they must be sorted and unique.
        for name, table, key in (("creators", self.creators, "creator"), ("clusters", self.clusters, "cluster")):
            if key not in table.columns or not (table[key].is_monotonic_increasing and table[key].is_unique):
                raise PlanError(f"TrafficPlan.{name}: expected a {key!r} column of unique ids in ascending order; "
                                f"sort with .sort_values({key!r}) (plan_traffic() does)")

    def expired(self, now: float | None = None) -> bool:
        """True once `ttl_seconds` have passed since `created_at` (unix seconds; now defaults to the clock)."""
        return (time.time() if now is None else now) >= self.created_at + self.ttl_seconds

    def creator_prices(self, creator_ids: I64) -> F64:
        """Price of each creator id (vectorized); 0.0 for ids not in the plan."""
        return _lookup(self.creators["creator"].to_numpy(), self.creators["price"].to_numpy(), creator_ids)

    def cluster_prices(self, cluster_ids: I64) -> F64:
        """Price of each cluster id (vectorized); 0.0 for ids not in the plan."""
        return _lookup(self.clusters["cluster"].to_numpy(), self.clusters["price"].to_numpy(), cluster_ids)

    def creator_targets(self, creator_ids: I64) -> F64:
        """Planned exposure share of each creator id (vectorized); 0.0 for ids not in the plan."""
        return _lookup(self.creators["creator"].to_numpy(), self.creators["target"].to_numpy(), creator_ids)

    def equals(self, other: TrafficPlan) -> bool:
        """Same fields and the same tables (column names, dtypes and values)."""
        scalars = ("version", "policy_name", "policy_fingerprint", "created_at", "horizon_rounds", "ttl_seconds",
                   "budget_prices", "segment_prices", "status", "objective", "solver", "solve_seconds", "relaxed",
                   "stats")
        return (all(getattr(self, name) == getattr(other, name) for name in scalars)
                and self.creators.equals(other.creators) and self.clusters.equals(other.clusters)
                and list(self.creators.dtypes) == list(other.creators.dtypes)
                and list(self.clusters.dtypes) == list(other.clusters.dtypes))


def _lookup(keys: I64, values: F64, query: I64) -> F64:
    """values[keys == q] for each q (keys sorted ascending, as plans keep them), 0.0 where q is absent."""
    query = np.asarray(query, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(query.shape)
    position = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    return np.where(keys[position] == query, values[position], 0.0)


# Planning ------------------------------------------------------------------------------------------


def plan_traffic(inputs: PlanInputs, policy: FairnessPolicy, *, version: int = 1, now: float | None = None,
                 progress: bool = False) -> TrafficPlan:
    """Solve the amortized exposure program of the design note and package its targets and prices.

    Infeasible floors, supply or budgets never raise: their slacks give way at the penalty price and
    `relaxed` says which and by how much. Raises PlanInputError for malformed inputs and PlanError
    only when every applicable solver fails numerically.
    """
    created_at = time.time() if now is None else float(now)
    program = build_program(inputs, policy.planner, policy.budgets)
    solution, notes = solve_program(program, policy.planner.solver, progress=progress)

    creator_target = np.bincount(program.pair_creator, weights=solution.x, minlength=program.n_creators)
    cluster_target = np.bincount(program.pair_cluster, weights=solution.x, minlength=program.n_clusters)
    creators = pd.DataFrame({
        "creator": inputs.creator, "cluster": inputs.cluster, "merit": inputs.merit,
        "cap": program.cluster_cap[program.creator_cluster], "target": creator_target, "price": solution.creator_dual,
    }).sort_values("creator", kind="stable").reset_index(drop=True)
    clusters = pd.DataFrame({
        "cluster": program.cluster_ids, "target": cluster_target, "cap": program.cluster_cap, "floor": program.floor,
        "floor_requested": program.floor_requested, "floor_slack": solution.floor_slack,
        "price": solution.cluster_price,
    })
    stats: dict[str, float | int | str] = {
        **solution.stats, "pairs": program.n_pairs, "creators": program.n_creators, "clusters": program.n_clusters,
        "penalty": program.penalty, "ridge": float(solution.stats.get("ridge", program.ridge)),
        "utility": float(program.value @ solution.x),
    }
    if notes:
        stats["notes"] = "; ".join(notes)
    return TrafficPlan(
        version=int(version), policy_name=policy.name, policy_fingerprint=policy.fingerprint(),
        created_at=created_at, horizon_rounds=float(policy.planner.horizon_rounds),
        ttl_seconds=float(policy.planner.ttl_seconds), creators=creators, clusters=clusters,
        budget_prices={name: float(solution.budget_dual.get(name, 0.0)) for name in BUDGETS},
        segment_prices={name: float(price) for name, price in zip(inputs.segments, solution.supply_dual, strict=True)},
        status=solution.status, objective=float(solution.objective), solver=solution.solver,
        solve_seconds=float(solution.seconds), relaxed=relaxations(program, solution, inputs.segments), stats=stats,
    )


def choose_solver(program: ExposureProgram, solver: str) -> str:
    """'auto': HiGHS for an LP (ridge 0) up to HIGHS_SIZE_LIMIT pairs, Clarabel for the QP (and for the LP
    past HiGHS' limit) up to AUTO_SIZE_LIMIT, dual ascent beyond (see the constants for the timings)."""
    if solver != "auto":
        return solver
    if program.n_pairs > AUTO_SIZE_LIMIT:
        return "dual_ascent"
    return "highs" if program.ridge == 0 and program.n_pairs <= HIGHS_SIZE_LIMIT else "clarabel"


def solve_program(program: ExposureProgram, solver: str = "auto", *, progress: bool = False,
                  options: Mapping[str, Mapping[str, float | int | bool]] | None = None,
                  ) -> tuple[Solution, list[str]]:
    """Solve with the chosen solver; if a cvxpy solver fails or is only "inaccurate", fall back (and say so).

    Fallbacks: HiGHS -> Clarabel; Clarabel -> HiGHS for an LP, dual ascent for a QP (HiGHS' QP solver
    took 14 s at 1e4 pairs where Clarabel took 0.2 s, and failed on a strongly regularized one). An
    inaccurate answer is kept only when the fallback does no better: Clarabel's interior point reports
    "inaccurate" on degenerate LPs (a cluster cap of 0 next to demands of 1e-7) with cap prices of 1e10
    that HiGHS' simplex gets exactly. `options` maps a cvxpy solver's name to its settings.
    """
    chosen = choose_solver(program, solver)
    fallback = {"highs": "clarabel", "clarabel": "highs" if program.ridge == 0 else "dual_ascent"}
    order = [chosen] if chosen == "dual_ascent" else [chosen, fallback[chosen]]
    notes: list[str] = []
    failures: list[str] = []
    inaccurate: Solution | None = None
    for name in order:
        if name == "dual_ascent":
            if program.ridge == 0:
                ridge = LP_RIDGE * max(1.0, float(np.abs(program.value).max(initial=0.0))) * max(1, program.n_pairs)
                notes.append(f"dual ascent solved the LP (planner.ridge = 0) with ridge {ridge:.4g} "
                             f"(LP_RIDGE = {LP_RIDGE:g} of the value scale per average pair)")
                program = program.with_ridge(ridge)
            solution = solve_dual_ascent(program, progress=progress)
        else:
            try:
                solution = solve_cvxpy(program, name, options=(options or {}).get(name))
            except (SolverFailure, cp.SolverError) as err:
                failures.append(f"{name}: {err}")
                continue
            if solution.status != "optimal" and name != order[-1]:
                inaccurate = inaccurate or solution
                failures.append(f"{name}: status {solution.status!r}")
                continue
        if solution.status != "optimal" and inaccurate is not None:
            break  # the fallback did no better: keep the first answer
        notes.extend(f"fell back after {failure}" for failure in failures)
        return solution, notes
    if inaccurate is not None:
        notes.extend(f"fell back after {failure}" for failure in failures)
        notes.append(f"kept {inaccurate.solver}'s inaccurate answer: no fallback did better")
        return inaccurate, notes
    raise PlanError(f"every solver failed on the planner program ({program.n_pairs} pairs): {'; '.join(failures)}. "
                    "Check the inputs' scale (values of order 1, shares summing to 1), or set planner.ridge > 0 "
                    "and planner.solver = 'dual_ascent'")


def relaxations(program: ExposureProgram, solution: Solution, segments: tuple[str, ...]) -> tuple[str, ...]:
    """Human-readable list of the constraints that gave way, and by how much (shares of all impressions)."""
    p, out = program, []

    def noticeable(slack: F64, bound: F64) -> Bool:
        return slack > np.maximum(REPORT_TOLERANCE, 1e-6 * bound)

    short = noticeable(solution.supply_slack, p.supply)
    for s in np.flatnonzero(short):
        out.append(f"supply of segment {segments[s]!r} short by {solution.supply_slack[s]:.4g} of "
                   f"{p.supply[s]:.4g}: demand, caps and budgets cannot place it all")
    clipped = p.floor_requested - p.floor > np.maximum(REPORT_TOLERANCE, 1e-6 * p.floor_requested)
    if clipped.any():
        worst = int(np.argmax(np.where(clipped, p.floor_requested - p.floor, -np.inf)))
        out.append(f"{int(clipped.sum())} cluster floors lowered to {FLOOR_HEADROOM:g} x what the cluster can hold "
                   "under its cluster cap, creators' caps and demand (requested "
                   f"{p.floor_requested[clipped].sum():.4g} in all, kept {p.floor[clipped].sum():.4g}; largest cut: "
                   f"cluster {int(p.cluster_ids[worst])} {p.floor_requested[worst]:.4g} -> {p.floor[worst]:.4g})")
    missed = noticeable(solution.floor_slack, p.floor)
    if missed.any():
        worst = int(np.argmax(np.where(missed, solution.floor_slack, -np.inf)))
        out.append(f"{int(missed.sum())} cluster floors missed by {solution.floor_slack[missed].sum():.4g} in all "
                   f"(largest: cluster {int(p.cluster_ids[worst])} short {solution.floor_slack[worst]:.4g} of "
                   f"{p.floor[worst]:.4g})")
    for name, slack in solution.budget_slack.items():
        bound = p.budget_bound[name]
        if slack > max(REPORT_TOLERANCE, 1e-6 * bound):
            out.append(f"{name} budget {bound:.4g} exceeded by {slack:.4g} (its price is the penalty "
                       f"{p.penalty:.4g}: no feasible plan serves the supply within it)")
    return tuple(out)


# On disk -------------------------------------------------------------------------------------------


def save_plan(plan: TrafficPlan, directory: Path) -> Path:
    """Write the plan to `directory / v{version:06d}` and return that path.

    The folder holds creators.parquet, clusters.parquet and manifest.json (format, version, policy,
    times, TTL, budget and segment prices, status, solver stats, relaxations, each Parquet file's sha256,
    rows and column dtypes, and the sha256 of the manifest itself). It is written under a temporary name
    and renamed into place, so readers see a whole plan or none. Versions are immutable: an existing one
    is never overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"v{plan.version:06d}"
    if final.exists():
        raise PlanError(f"{final} already exists: plan versions are immutable; save with a new version "
                        f"(plan_traffic(..., version={plan.version + 1})) or remove the old folder")
    for name, table, columns in ((CREATORS_FILE, plan.creators, CREATOR_COLUMNS),
                                 (CLUSTERS_FILE, plan.clusters, CLUSTER_COLUMNS)):
        problems = _column_problems(table, columns)
        if problems:
            raise PlanError(f"cannot save plan version {plan.version}: {name[:-8]} table {problems}; build plans "
                            "with plan_traffic()")
    temporary = directory / f".v{plan.version:06d}.tmp-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        files = {}
        for name, table in ((CREATORS_FILE, plan.creators), (CLUSTERS_FILE, plan.clusters)):
            table.to_parquet(temporary / name, index=False)
            files[name] = {"sha256": _sha256(temporary / name), "rows": len(table),
                           "columns": {column: str(dtype) for column, dtype in table.dtypes.items()}}
        manifest = {
            "format": FORMAT, "version": plan.version,
            "policy": {"name": plan.policy_name, "fingerprint": plan.policy_fingerprint},
            "created_at": plan.created_at, "horizon_rounds": plan.horizon_rounds, "ttl_seconds": plan.ttl_seconds,
            "budget_prices": plan.budget_prices, "segment_prices": plan.segment_prices,
            "status": plan.status, "objective": plan.objective, "solver": plan.solver,
            "solve_seconds": plan.solve_seconds, "stats": plan.stats, "relaxed": list(plan.relaxed), "files": files,
        }
        try:
            manifest["manifest_sha256"] = _manifest_digest(manifest)
            text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        except ValueError as err:
            raise PlanError(f"cannot save plan version {plan.version}: a manifest value is not finite ({err}); "
                            "the solve went wrong, check plan.status and plan.stats") from None
        with open(temporary / MANIFEST, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def load_plan(path: Path) -> TrafficPlan:
    """Read and verify a plan folder written by `save_plan`: manifest, checksums, rows, columns, dtypes.

    Raises PlanError naming the file, what is wrong and how to fix it; never returns a plan it could
    not verify (online, the caller then falls back to the last good plan).
    """
    path = Path(path)
    rebuild = "rebuild it with plan_traffic(...) and save_plan(...)"
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise PlanError(f"{path} is not a traffic plan: expected {MANIFEST} in it; pass the folder save_plan "
                        f"returned, or {rebuild}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PlanError(f"{manifest_path} is not valid JSON ({err}); the plan is corrupt: {rebuild}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PlanError(f"{manifest_path}: format {found!r}, expected {FORMAT!r}; {rebuild} with this ecorank")
    problems = _manifest_problems(manifest)
    if problems:
        raise PlanError(f"{manifest_path}: {'; '.join(problems)}; the manifest was edited or truncated: {rebuild}")
    digest = _manifest_digest(manifest)
    if manifest.get("manifest_sha256") != digest:
        raise PlanError(f"{manifest_path}: its content hash {digest[:12]}... does not match the recorded "
                        f"manifest_sha256 {str(manifest.get('manifest_sha256'))[:12]}...; the manifest was edited "
                        f"after the plan was saved: {rebuild}")

    tables = {}
    for name, columns in ((CREATORS_FILE, CREATOR_COLUMNS), (CLUSTERS_FILE, CLUSTER_COLUMNS)):
        file, expected = path / name, manifest["files"][name]
        if not file.is_file():
            raise PlanError(f"{file} is missing; the plan folder is incomplete: {rebuild}")
        digest = _sha256(file)
        if digest != expected["sha256"]:
            raise PlanError(f"{file}: sha256 {digest[:12]}... does not match the manifest's {expected['sha256'][:12]}"
                            f"...; the file changed after the plan was saved: {rebuild}")
        try:
            table = pd.read_parquet(file)
        except Exception as err:  # any reader error means the same thing: unreadable
            raise PlanError(f"{file} is not readable Parquet ({err}); {rebuild}") from None
        table_problems = _column_problems(table, columns)
        if len(table) != expected["rows"]:
            table_problems.append(f"{len(table)} rows, the manifest says {expected['rows']}")
        if table_problems:
            raise PlanError(f"{file}: {'; '.join(table_problems)}; {rebuild}")
        tables[name] = table

    return TrafficPlan(
        version=int(manifest["version"]), policy_name=manifest["policy"]["name"],
        policy_fingerprint=manifest["policy"]["fingerprint"], created_at=float(manifest["created_at"]),
        horizon_rounds=float(manifest["horizon_rounds"]), ttl_seconds=float(manifest["ttl_seconds"]),
        creators=tables[CREATORS_FILE], clusters=tables[CLUSTERS_FILE],
        budget_prices={k: float(v) for k, v in manifest["budget_prices"].items()},
        segment_prices={k: float(v) for k, v in manifest["segment_prices"].items()},
        status=manifest["status"], objective=float(manifest["objective"]), solver=manifest["solver"],
        solve_seconds=float(manifest["solve_seconds"]), relaxed=tuple(manifest["relaxed"]),
        stats=dict(manifest["stats"]),
    )


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own digest field: prices and TTL live in the
    manifest, so it is checked like the tables."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _column_problems(table: pd.DataFrame, columns: Mapping[str, str]) -> list[str]:
    """What differs from the expected columns (names, order, dtypes) and any non-finite value."""
    found = {str(column): str(dtype) for column, dtype in table.dtypes.items()}
    if list(found) != list(columns):
        return [f"columns {list(found)}, expected {list(columns)}"]
    problems = [f"column {column!r} has dtype {found[column]}, expected {dtype}"
                for column, dtype in columns.items() if found[column] != dtype]
    if not problems:
        numbers = table.select_dtypes("float64").to_numpy()
        if not np.isfinite(numbers).all():
            problems.append(f"{int((~np.isfinite(numbers)).sum())} non-finite values")
    return problems


_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "version": int, "policy": dict, "created_at": (int, float), "horizon_rounds": (int, float),
    "ttl_seconds": (int, float), "budget_prices": dict, "segment_prices": dict, "status": str,
    "objective": (int, float), "solver": str, "solve_seconds": (int, float), "stats": dict, "relaxed": list,
    "files": dict,
}


def _manifest_problems(manifest: dict[str, Any]) -> list[str]:
    problems = [f"field {key!r} missing" if key not in manifest else
                f"field {key!r} is {type(manifest[key]).__name__}, expected {_type_names(kind)}"
                for key, kind in _MANIFEST_TYPES.items()
                if key not in manifest or not isinstance(manifest[key], kind) or isinstance(manifest[key], bool)]
    if problems:
        return problems
    policy = manifest["policy"]
    if not isinstance(policy.get("name"), str) or not isinstance(policy.get("fingerprint"), str):
        problems.append("field 'policy' must hold the strings 'name' and 'fingerprint'")
    for name in (CREATORS_FILE, CLUSTERS_FILE):
        entry = manifest["files"].get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not isinstance(
                entry.get("rows"), int):
            problems.append(f"files.{name} must hold 'sha256' (str) and 'rows' (int)")
    for key in ("budget_prices", "segment_prices"):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in manifest[key].values()):
            problems.append(f"field {key!r} must map names to numbers")
    return problems


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
