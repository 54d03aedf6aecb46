"""The fairness policy: every knob of the blend, the per-request allocator, the planner and the controller.

A policy is a TOML file (`fairness/configs/default.toml` is the shipped one) validated into the frozen
pydantic model `FairnessPolicy`. Each field declares its type, bounds and meaning; settings that
contradict each other (floors that sum past 1, a floor above the cap it lives under, budgets missing
in budget mode) are rejected with a message that names the conflict and the relaxation to make.

    policy = load_policy()                                          # the shipped default
    policy = load_policy("my_policy.toml", overrides=["allocation.tau=0.2"])
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fairness.toml_config import ConfigError, format_validation_error, parse_overrides, read_toml, set_dotted

POLICY_DIR = Path(__file__).parent / "configs"
DEFAULT_POLICY = POLICY_DIR / "default.toml"
HEADS = ("gmv", "prosperity", "risk", "complaint")

Share = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveShare = Annotated[float, Field(gt=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Range = Annotated[tuple[float, float], Field(description="[low, high]")]


class PolicyError(ConfigError):
    """A fairness policy is invalid or self-contradictory; the message names the conflict and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlendSection(_Section):
    mode: Literal["weights", "budgets"] = Field(
        description="'weights': risk and complaint are penalized by the weights below. 'budgets': by the dual "
                    "prices of the planner's risk and complaint budgets (the weights below are then unused).")
    gmv: NonNegative = Field(description="Weight of E[GMV] / gmv_scale (reward).")
    prosperity: NonNegative = Field(description="Weight of the prosperity (healthy engagement) probability (reward).")
    risk: NonNegative = Field(description="Weight of the governance-risk probability (penalty).")
    complaint: NonNegative = Field(description="Weight of the complaint probability (penalty).")
    gmv_scale: Positive = Field(
        description="E[GMV] per impression that counts as one unit of utility: a fixed currency scale, so that "
                    "utilities are comparable across requests and with plan prices (see fairness/blend.py).")
    override_range: dict[str, Range] = Field(
        description="Per head, the [low, high] range a per-request weight override may take.")

    @model_validator(mode="after")
    def _check_ranges(self) -> BlendSection:
        problems = []
        for head, (low, high) in self.override_range.items():
            if head not in HEADS:
                problems.append(f"blend.override_range.{head}: unknown head; expected one of {list(HEADS)}")
            elif not 0.0 <= low <= high:
                problems.append(f"blend.override_range.{head} = [{low:g}, {high:g}] must satisfy 0 <= low <= high")
            elif not low <= getattr(self, head) <= high:
                problems.append(f"blend.{head} = {getattr(self, head):g} lies outside its own override range "
                                f"[{low:g}, {high:g}]; widen the range or change the weight")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def weights(self) -> dict[str, float]:
        return {head: float(getattr(self, head)) for head in HEADS}


class BudgetsSection(_Section):
    risk: Share | None = Field(default=None, description="Max exposure-weighted mean risk probability (planner "
                                                         "budget R); \"none\": no risk budget.")
    complaint: Share | None = Field(default=None, description="Max exposure-weighted mean complaint probability "
                                                              "(planner budget C); \"none\": no complaint budget.")

    @field_validator("risk", "complaint", mode="before")
    @classmethod
    def _none_word(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() == "none" else value


class AllocationSection(_Section):
    tau: Positive = Field(description="Smoothing of the per-request allocation (objective - tau/2 ||w||^2): larger "
                                      "spreads traffic, smaller approaches top-1.")
    item_cap: PositiveShare = Field(description="Max traffic share of one candidate in a request.")
    creator_cap: PositiveShare = Field(description="Max traffic share of one creator (account) in a request.")
    cluster_cap: PositiveShare = Field(description="Max traffic share of one operator cluster in a request.")
    originals_floor: Share = Field(description="Min traffic share of eligible originals in a request (relaxed, "
                                               "and reported, when the eligible originals present cannot hold it).")
    slate: Literal["deterministic", "sample"] = Field(
        description="How weights become a ranking: sort by weight, or sample with logged propensities.")


class EligibilitySection(_Section):
    min_prosperity: Share = Field(description="An original is floor-eligible when its predicted prosperity is at "
                                              "least this (a quality bar).")
    max_risk: Share = Field(description="... and its predicted risk at most this.")
    newcomer_rounds: NonNegative = Field(description="A creator younger than this many rounds is a newcomer.")
    newcomer_impressions: NonNegative = Field(description="... or one with fewer impressions than this.")


class PlannerSection(_Section):
    beta: PositiveShare = Field(description="Merit exponent of the anti-Matthew targets m^beta (beta < 1 is "
                                            "concave: damps rich-get-richer).")
    kappa: Annotated[float, Field(ge=1.0)] = Field(
        description="Headroom of the anti-Matthew cap: an operator cluster gets at most kappa x its concave merit "
                    "share (cluster merit = the max over its accounts, so splitting gains nothing).")
    cluster_cap: PositiveShare = Field(description="Max share of all exposure one operator cluster may take, "
                                                   "whatever its merit.")
    originals_floor: Share = Field(description="Share of all exposure guaranteed to eligible originals, split "
                                               "over their clusters by cluster merit.")
    newcomer_share: Share = Field(description="Share of all exposure reserved for newcomer exploration.")
    newcomer_floor: Share = Field(description="Most any one newcomer cluster is guaranteed from newcomer_share.")
    lcb_z: NonNegative = Field(description="Merit is a lower confidence bound, mean - lcb_z x standard error, so "
                                           "noisy newcomers are not over-rewarded.")
    ridge: NonNegative = Field(description="Ridge on the planner's shares, per average pair ((ridge P / 2) ||x||^2 "
                                           "over P pairs, the same strength at any size): 0 is the LP, whose targets "
                                           "pile on the best clusters up to their caps; > 0 spreads targets in "
                                           "proportion to value and makes them unique.")
    horizon_rounds: Positive = Field(description="Rounds (days) the plan covers.")
    ttl_seconds: Positive = Field(description="Seconds after creation at which a plan is stale.")
    solver: Literal["auto", "highs", "clarabel", "dual_ascent"] = Field(
        description="'auto' picks HiGHS for LPs and Clarabel for QPs up to the size limit, dual ascent beyond.")


class ControllerSection(_Section):
    gain: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        description="Integral gain: price change per unit of relative exposure error per update.")
    max_price: Positive = Field(description="Prices are clipped to [-max_price, max_price] (bounded, stable).")
    smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="Exponential smoothing of the realized exposure share before it is compared to the target.")


class FairnessPolicy(_Section):
    name: str = Field(description="Short name echoed in plans and responses.")
    blend: BlendSection
    budgets: BudgetsSection
    allocation: AllocationSection
    eligibility: EligibilitySection
    planner: PlannerSection
    controller: ControllerSection

    @model_validator(mode="after")
    def _check_conflicts(self) -> FairnessPolicy:
        problems = []
        p = self.planner
        if p.originals_floor + p.newcomer_share > 1.0:
            problems.append(
                f"planner floors sum past 1: originals_floor {p.originals_floor:g} + newcomer_share "
                f"{p.newcomer_share:g} = {p.originals_floor + p.newcomer_share:g}; lower one so the sum is at most 1")
        if p.newcomer_floor > p.cluster_cap:
            problems.append(
                f"planner.newcomer_floor {p.newcomer_floor:g} exceeds planner.cluster_cap {p.cluster_cap:g}: a "
                "newcomer would be guaranteed more than any operator may get; lower newcomer_floor to at most "
                f"{p.cluster_cap:g} or raise cluster_cap")
        if p.newcomer_floor > p.newcomer_share:
            problems.append(
                f"planner.newcomer_floor {p.newcomer_floor:g} exceeds planner.newcomer_share {p.newcomer_share:g}, "
                "the total it is drawn from; lower newcomer_floor or raise newcomer_share")
        a = self.allocation
        if a.creator_cap > a.cluster_cap:
            problems.append(
                f"allocation.creator_cap {a.creator_cap:g} exceeds allocation.cluster_cap {a.cluster_cap:g}; a creator "
                "is inside its cluster, so its cap can never bind: lower creator_cap to at most cluster_cap")
        if self.blend.mode == "budgets" and (self.budgets.risk is None or self.budgets.complaint is None):
            problems.append(
                "blend.mode = 'budgets' prices risk and complaints by their budgets' duals, but budgets.risk = "
                f"{self.budgets.risk} and budgets.complaint = {self.budgets.complaint}; set both budgets or use "
                "blend.mode = 'weights'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Short content hash: plans and responses echo it so a mismatch is visible."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_policy(
    source: str | Path | Mapping[str, Any] = DEFAULT_POLICY,
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> FairnessPolicy:
    """Load and validate a policy from a TOML path, a built-in name ('default') or a dict, with overrides."""
    if isinstance(source, Mapping):
        data, where = json.loads(json.dumps(source)), "the policy dict"
    else:
        path = Path(source)
        if not path.suffix and not path.exists():
            path = POLICY_DIR / f"{source}.toml"
            if not path.is_file():
                known = sorted(p.stem for p in POLICY_DIR.glob("*.toml"))
                raise PolicyError(f"unknown policy {str(source)!r}; expected a .toml path or a built-in name {known}")
        data, where = read_toml(path), str(path)
    override_map = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    for dotted, value in override_map.items():
        try:
            set_dotted(data, dotted, value)
        except ConfigError as err:
            raise PolicyError(str(err)) from None
    try:
        return FairnessPolicy.model_validate(data)
    except ValidationError as err:
        raise PolicyError(format_validation_error(err, root=FairnessPolicy, header=f"invalid fairness policy {where}:",
                                                  fix_in=where)) from None
