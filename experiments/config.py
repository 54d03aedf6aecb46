"""Typed, validated scenario configuration for the creator-marketplace simulator.

Values live in TOML files, never in code: `configs/base.toml` holds every parameter, a preset
(`configs/presets/{tiny,default}.toml`) sets the sizes, and a scenario file
(`configs/scenarios/S*.toml`) changes what makes the scenario what it is. A scenario file may carry
`[preset.tiny]` / `[preset.default]` tables for size-dependent values. Resolution order, later wins:

    base  ->  preset  ->  scenario  ->  scenario's [preset.<name>]  ->  --set key=value overrides

The models below only declare types, bounds and meaning (each field's `description` is its
documentation); `load_scenario` resolves and validates, and every problem is reported as a
`ConfigError` that names the key, the value received, what was expected and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fairness.toml_config import (
    ConfigError,
    deep_merge,
    format_validation_error,
    parse_overrides,
    read_toml,
    set_dotted,
)

__all__ = ["ConfigError", "ScenarioConfig", "load_scenario", "parse_overrides"]

CONFIG_DIR = Path(__file__).parent / "configs"
BASE_FILE = CONFIG_DIR / "base.toml"
PRESET_DIR = CONFIG_DIR / "presets"
SCENARIO_DIR = CONFIG_DIR / "scenarios"

ACCOUNT_TYPES = ("original", "low_effort", "reuploader", "matrix")
REPLACED_WHOLE = ("type_prior",)  # a scenario's type mix is a new mix, not merged into the base one

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Section):
    rounds: PositiveInt = Field(description="Rounds (days) simulated per run.")
    burn_in: NonNegativeInt = Field(description="Rounds excluded from summary metrics.")
    window: PositiveInt = Field(description="Rounds in a sliding metrics window (window Gini, ...).")


class UsersConfig(_Section):
    n_users: PositiveInt = Field(description="Number of users (fixed population; users churn, not leave).")
    dim: Annotated[int, Field(ge=2)] = Field(description="Dimension of taste and item embeddings.")
    taste_clusters: PositiveInt = Field(description="Taste clusters users are drawn around.")
    taste_spread: NonNegativeFloat = Field(description="Noise around a cluster centre before normalizing.")
    activity_alpha: PositiveFloat = Field(description="Beta(alpha, beta) prior of daily activity probability.")
    activity_beta: PositiveFloat = Field(description="Beta(alpha, beta) prior of daily activity probability.")
    price_sensitivity_sigma: NonNegativeFloat = Field(description="LogNormal(0, sigma) price sensitivity.")
    patience: PositiveFloat = Field(description="Initial and maximum patience P.")
    patience_recovery: NonNegativeFloat = Field(description="Patience regained per active round.")
    patience_max_loss: NonNegativeFloat = Field(description="Most patience lost per round: clip(value - 1, -loss, 0).")
    patience_floor: NonNegativeFloat = Field(description="Below this patience a user goes dormant.")
    dormancy_return_p: Probability = Field(description="Geometric(p) parameter of dormant spells.")
    seen_memory: PositiveInt = Field(description="Recently seen contents remembered for duplicate detection.")
    value_purchase: NonNegativeFloat = Field(description="Weight of a purchase in the user's round value.")
    value_complaint: NonNegativeFloat = Field(description="Weight of a complaint in the user's round value.")


class AccountTypeConfig(_Section):
    quality_alpha: PositiveFloat = Field(description="Beta(alpha, beta) of the account's mean quality.")
    quality_beta: PositiveFloat = Field(description="Beta(alpha, beta) of the account's mean quality.")
    gaming: Probability = Field(description="Clickbait gaming g: buys clicks, not value.")
    defect_rate: Probability = Field(description="Probability a purchase is defective (a complaint).")
    production_rate: NonNegativeFloat = Field(description="Poisson mean of new items per round.")
    item_cost: NonNegativeFloat = Field(description="Production cost per item.")
    originality_mean: Probability = Field(description="Mean observable originality score of its items.")


class AccountsConfig(_Section):
    initial_operators: PositiveInt = Field(description="Operators at round 0 (matrix operators own many accounts).")
    type_prior: dict[str, NonNegativeFloat] = Field(description="Type mix of operators at start and entry.")
    matrix_size: PositiveInt = Field(description="Accounts per matrix operator when adversaries are not adaptive.")
    initial_satisfaction: float = Field(description="Creator satisfaction S at entry.")
    account_cost: NonNegativeFloat = Field(description="Fixed cost per account per round.")
    obfuscation_cost: NonNegativeFloat = Field(description="Extra cost per item per unit of obfuscation z.")
    legacy_share: Probability = Field(description="Share of initial honest accounts that are legacy incumbents.")
    legacy_popularity_scale: NonNegativeFloat = Field(description="Scale of legacy accounts' Pareto popularity.")
    legacy_popularity_shape: PositiveFloat = Field(description="Pareto shape of legacy popularity (heavier < 2).")
    initial_items_per_account: NonNegativeFloat = Field(description="Poisson mean of live items seeded per account.")
    original: AccountTypeConfig
    low_effort: AccountTypeConfig
    reuploader: AccountTypeConfig
    matrix: AccountTypeConfig

    @model_validator(mode="after")
    def _check_prior(self) -> AccountsConfig:
        unknown = sorted(set(self.type_prior) - set(ACCOUNT_TYPES))
        if unknown:
            raise ValueError(f"type_prior has unknown account types {unknown}; "
                             f"expected keys from {list(ACCOUNT_TYPES)}")
        if sum(self.type_prior.values()) <= 0:
            raise ValueError(f"type_prior weights sum to 0 ({self.type_prior}); "
                             "give at least one type a positive weight")
        return self

    def of(self, account_type: str) -> AccountTypeConfig:
        value: AccountTypeConfig = getattr(self, account_type)
        return value

    def prior_vector(self) -> list[float]:
        return [float(self.type_prior.get(t, 0.0)) for t in ACCOUNT_TYPES]


class ItemsConfig(_Section):
    lifetime: PositiveInt = Field(description="Rounds an item stays live (retrievable).")
    style_noise: NonNegativeFloat = Field(description="Item embedding = normalize(style + noise * eps).")
    quality_noise: NonNegativeFloat = Field(description="Item quality = clip(mean quality + N(0, noise)).")
    price_mu: float = Field(description="Mean log price point of a seller (account).")
    price_sigma: NonNegativeFloat = Field(description="Spread of sellers' log price points.")
    item_price_sigma: NonNegativeFloat = Field(description="Spread of an item's log price around its seller's point.")
    copy_noise: NonNegativeFloat = Field(description="Embedding noise of a copy at obfuscation 0.")
    copy_noise_per_obfuscation: NonNegativeFloat = Field(description="Extra copy embedding noise per unit z.")
    copy_quality_factor: Probability = Field(description="Copy quality = source quality * factor.")
    copy_price_factor: PositiveFloat = Field(description="Copy price = source price * factor.")
    matrix_noise: NonNegativeFloat = Field(description="Embedding noise of a matrix near-duplicate.")
    matrix_price_sigma: NonNegativeFloat = Field(description="Log-price spread of a farm's posts around its template.")
    recent_exposure_decay: Probability = Field(description="EMA decay of item exposure that copiers chase.")


class RetrievalConfig(_Section):
    candidates: Annotated[int, Field(ge=2)] = Field(description="M: candidates retrieved per request.")
    random_share: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(description="Share of M drawn at random.")
    gumbel_scale: NonNegativeFloat = Field(description="Scale of Gumbel noise added to affinity.")
    trending_share: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        description="Share of M from the trending source, sampled by creator popularity.")
    trending_power: NonNegativeFloat = Field(description="Trending weight = (1 + creator popularity) ** power.")
    trending_pool: PositiveInt = Field(description="Trending pool per bucket, in multiples of the trending slots.")
    buckets: PositiveInt = Field(description="User buckets of the approximate nearest-neighbour stage.")
    shortlist: PositiveInt = Field(description="Items each bucket pre-selects before exact per-user ranking.")


class RankingConfig(_Section):
    slots: PositiveInt = Field(description="K: slots filled per request.")


class ResponseConfig(_Section):
    click_intercept: float = Field(description="Click logit intercept.")
    click_affinity: float = Field(description="Click logit weight of taste-item affinity.")
    click_quality: float = Field(description="Click logit weight of item quality.")
    click_popularity: float = Field(description="Click logit weight of log(1 + creator popularity F).")
    click_gaming: float = Field(description="Click logit weight of gaming g.")
    purchase_intercept: float = Field(description="Purchase | click logit intercept.")
    purchase_quality: float = Field(description="Purchase logit weight of quality.")
    purchase_affinity: float = Field(description="Purchase logit weight of affinity.")
    price_reference: float = Field(description="Log price at which price sensitivity is neutral.")
    engage_intercept: float = Field(description="Engagement | click logit intercept.")
    engage_quality: float = Field(description="Engagement logit weight of quality.")
    engage_affinity: float = Field(description="Engagement logit weight of affinity.")
    engage_gaming: float = Field(description="Engagement logit weight of gaming (negative: clickbait disappoints).")
    complaint_gaming: NonNegativeFloat = Field(description="Complaint | purchase += this * g * (1 - quality).")
    duplicate_report: Probability = Field(description="Probability of a report on seeing an already-seen content.")
    duplicate_click_factor: Probability = Field(description="Click probability multiplier on a seen content.")


class PopularityConfig(_Section):
    feedback: bool = Field(description="Whether clicks and purchases feed creator popularity (rich-get-richer).")
    decay: Probability = Field(description="F <- decay * F + clicks + purchase_weight * purchases.")
    purchase_weight: NonNegativeFloat = Field(description="Popularity gained per purchase.")


class CreatorsConfig(_Section):
    impression_value: NonNegativeFloat = Field(description="Creator utility per impression.")
    gmv_share: NonNegativeFloat = Field(description="Creator utility per unit of GMV.")
    satisfaction_decay: Probability = Field(description="S <- decay * S + utility.")
    exit_enabled: bool = Field(description="Whether creators leave (unprofitable or unviable).")
    unprofitable_rounds: PositiveInt = Field(description="Exit after S < 0 this many rounds running.")
    viability_window: PositiveInt = Field(description="Rounds over which viability is judged.")
    viability_min_impressions: NonNegativeInt = Field(description="Exit below this many impressions per window.")


class EntryConfig(_Section):
    enabled: bool = Field(description="Whether new operators enter.")
    rate: NonNegativeFloat = Field(description="Poisson mean of new operators per round.")
    profit_sensitivity: NonNegativeFloat = Field(description="Type mix ~ prior * exp(s * recent mean profit).")
    profit_window: PositiveInt = Field(description="Rounds of profit the entry mix looks back on.")
    max_exponent: PositiveFloat = Field(description="Clip of the profit exponent (keeps the mix finite).")


class WaveConfig(_Section):
    reupload_start: int = Field(description="Round from which the re-upload wave runs (-1: never).")
    reupload_share: Probability = Field(description="Share of entrants that are re-uploaders during the wave.")
    target_top_sources: PositiveInt = Field(description="Wave copiers copy among the this-many most exposed originals.")
    matrix_operators: NonNegativeInt = Field(description="Matrix farms planted at round 0 (S3).")
    matrix_operator_size: PositiveInt = Field(description="Accounts per planted matrix farm.")


class AdversariesConfig(_Section):
    adaptive: bool = Field(description="Whether adversaries adapt their strategy by multiplicative weights.")
    update_every: PositiveInt = Field(description="Rounds between strategy updates.")
    eta: NonNegativeFloat = Field(description="Multiplicative-weights learning rate on profit.")
    obfuscation_levels: list[Probability] = Field(min_length=1, description="Arms for obfuscation z.")
    matrix_sizes: list[PositiveInt] = Field(min_length=1, description="Arms for accounts per matrix operator.")
    copy_lags: list[NonNegativeInt] = Field(min_length=1, description="Arms for the copy lag (minimum source age).")
    obfuscation: Probability = Field(description="Obfuscation z when not adaptive.")
    copy_lag: NonNegativeInt = Field(description="Copy lag when not adaptive.")


class DetectorConfig(_Section):
    initial_recall: Probability = Field(description="Recall of the copy / matrix-link detector at round 0.")
    target_recall: Probability = Field(description="Recall that retraining recovers toward.")
    obfuscation_penalty: Probability = Field(description="Detection probability = recall * (1 - penalty * z).")
    drift: Probability = Field(description="Recall lost per round per unit of mean obfuscation of new bad items.")
    retrain_every: PositiveInt = Field(description="Rounds between detector retraining (audits).")
    audit_gain: NonNegativeFloat = Field(description="Recovery = gain * share found undetected by the audit.")


class SignalsConfig(_Section):
    estimates_are_truth: bool = Field(description="Observable signals equal the truth (S0 control).")
    quality_noise: NonNegativeFloat = Field(description="Noise of the observable quality signal.")
    originality_noise: NonNegativeFloat = Field(description="Noise of the observable originality score.")
    originality_obfuscation_gain: NonNegativeFloat = Field(description="Originality score gained per unit z.")


class LabelsConfig(_Section):
    risk_false_negative: Probability = Field(description="Audit misses a true violation with this probability.")
    risk_false_positive: Probability = Field(description="Audit flags a clean impression with this probability.")


class PoliciesConfig(_Section):
    blend_gmv: NonNegativeFloat = Field(description="P1 / oracle weight of expected GMV (normalized per request).")
    blend_prosperity: NonNegativeFloat = Field(description="P1 / oracle weight of engagement probability.")
    blend_risk: NonNegativeFloat = Field(description="P1 / oracle penalty on risk probability.")
    blend_complaint: NonNegativeFloat = Field(description="P1 / oracle penalty on complaint probability.")
    prior_strength: NonNegativeFloat = Field(description="Pseudo-purchases of the empirical complaint-rate prior.")
    history_weight: NonNegativeFloat = Field(
        description="Exponent of the creator track-record multiplier on estimated GMV (0 = ignore history).")
    history_prior_impressions: NonNegativeFloat = Field(
        description="Pseudo-impressions shrinking a creator's GMV per impression toward the population rate.")
    complaint_prior: Probability = Field(
        description="Complaints per purchase assumed before any purchase was observed (then: the population rate).")
    detected_risk: Probability = Field(description="Risk estimate of a detected duplicate or operator-cluster member.")
    explore_temperature: PositiveFloat = Field(description="Plackett-Luce temperature of the logging policy.")
    fairco_lambda: NonNegativeFloat = Field(
        description="FairCo controller gain: score = relevance in [0, 1] + lambda * exposure-debt error "
                    "(exposure / merit units; 0 = P1's ranking).")
    pmmf_eta: NonNegativeFloat = Field(
        description="P-MMF dual step: an account's price moves this much (relevance units) per unit of relative "
                    "exposure-share error per round (0 = prices stay at 0, P1's top-K set).")
    pmmf_lambda: NonNegativeFloat = Field(
        description="P-MMF max-min weight (dual feasible set): the mean over live accounts of min(price, 0) stays "
                    ">= -lambda, which bounds the total boost of under-exposed accounts.")
    pmmf_momentum: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        description="P-MMF gradient momentum alpha: g <- alpha * g_round + (1 - alpha) * g_previous (1 = none).")
    floor_alpha: Probability = Field(
        description="Account floors: each live account is guaranteed this fraction of an equal share of exposure "
                    "(0 = P1's ranking).")
    ecorank_policy: str = Field(
        description="Fairness policy of the ecorank engine policy: a built-in name (fairness/configs/NAME.toml) or a "
                    "path to a policy .toml file.")
    ecorank_overrides: list[str] = Field(
        description="Overrides of the ecorank fairness policy, KEY=VALUE each (e.g. planner.kappa=1.0).")
    ecorank_retrain_every: NonNegativeInt = Field(
        description="With a heads bundle: every this many rounds ecorank fine-tunes its model on its own logged "
                    "impressions (observable features and outcomes, the noisy audit's risk label); 0 = never.")
    ecorank_retrain_window: PositiveInt = Field(description="Rounds of ecorank's own impressions it retrains on.")
    ecorank_retrain_epochs: PositiveInt = Field(description="Epochs of each retraining.")
    heads_bundle: str = Field(
        description="A trained model bundle (folder) whose four heads every learned policy ranks with (ecorank "
                    "through the serving core); empty: the observable estimator (experiments/policies/estimates.py).")


class MetricsConfig(_Section):
    survival_horizon: PositiveInt = Field(description="Newcomer survival is measured this many rounds after entry.")
    impressions_milestone: PositiveInt = Field(description="Newcomer milestone: rounds to this many impressions.")
    mobility_lag: PositiveInt = Field(description="Mobility = Spearman of exposure ranks t vs t + lag.")
    top_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = Field(description="Top-share metric fraction.")
    bootstrap_samples: PositiveInt = Field(description="Paired bootstrap resamples for the CIs.")
    snapshot_every: PositiveInt = Field(description="Rounds between accounts.parquet snapshots.")


class OutputsConfig(_Section):
    impressions: Literal["all", "explore", "none"] = Field(
        description="Policies whose impressions are logged: all, only the exploration policy, or none."
    )


class ScenarioConfig(_Section):
    id: str = Field(description="Short id, e.g. S1.")
    name: str = Field(description="Machine name, e.g. matthew_lockin.")
    title: str = Field(description="One-line human title.")
    description: str = Field(description="What the scenario tests and what a good engine should do.")
    preset: str = Field(description="Preset the sizes came from.")
    run: RunConfig
    users: UsersConfig
    accounts: AccountsConfig
    items: ItemsConfig
    retrieval: RetrievalConfig
    ranking: RankingConfig
    response: ResponseConfig
    popularity: PopularityConfig
    creators: CreatorsConfig
    entry: EntryConfig
    wave: WaveConfig
    adversaries: AdversariesConfig
    detector: DetectorConfig
    signals: SignalsConfig
    labels: LabelsConfig
    policies: PoliciesConfig
    metrics: MetricsConfig
    outputs: OutputsConfig

    @model_validator(mode="after")
    def _check_consistency(self) -> ScenarioConfig:
        problems = []
        if self.run.burn_in >= self.run.rounds:
            problems.append(
                f"run.burn_in = {self.run.burn_in} must be smaller than run.rounds = {self.run.rounds}; "
                "lower burn_in or raise rounds"
            )
        if self.ranking.slots > self.retrieval.candidates:
            problems.append(
                f"ranking.slots = {self.ranking.slots} exceeds retrieval.candidates = {self.retrieval.candidates}; "
                "a request cannot fill more slots than it has candidates"
            )
        if self.retrieval.random_share + self.retrieval.trending_share >= 0.9:
            problems.append(
                f"retrieval.random_share + retrieval.trending_share = "
                f"{self.retrieval.random_share + self.retrieval.trending_share:g} leaves under 10% of candidates "
                "to affinity retrieval; lower one of them"
            )
        if self.retrieval.shortlist < self.retrieval.candidates:
            problems.append(
                f"retrieval.shortlist = {self.retrieval.shortlist} is smaller than retrieval.candidates = "
                f"{self.retrieval.candidates}; raise the shortlist"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------------
# Resolution: files -> merged dict -> validated model


def scenario_files() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml"))


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def list_scenarios() -> list[dict[str, str]]:
    """id, name, title and file of every built-in scenario."""
    rows = []
    for path in scenario_files():
        data = read_toml(path)
        rows.append({"id": str(data.get("id", "")), "name": str(data.get("name", "")),
                     "title": str(data.get("title", "")), "file": str(path)})
    return rows


def resolve_scenario_path(scenario: str | Path) -> Path:
    """Find a scenario by id (`S1`, case-insensitive), name (`matthew_lockin`) or file path."""
    path = Path(scenario)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"scenario file {str(path)!r} does not exist; pass an existing .toml file, "
                              f"or a built-in id or name ({_known_scenarios()})")
        return path
    key = str(scenario).strip().lower()
    for row in list_scenarios():
        if key in (row["id"].lower(), row["name"].lower()):
            return Path(row["file"])
    raise ConfigError(
        f"unknown scenario {str(scenario)!r}; expected a built-in id or name ({_known_scenarios()}) "
        "or a path to a scenario .toml file. `ecorank scenarios` lists them."
    )


def load_scenario(
    scenario: str | Path,
    *,
    preset: str = "default",
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> ScenarioConfig:
    """Resolve and validate a scenario; raise ConfigError with a fix-it message on any problem."""
    if preset not in available_presets():
        raise ConfigError(f"unknown preset {preset!r}; expected one of {available_presets()}")
    scenario_path = resolve_scenario_path(scenario)
    scenario_data = read_toml(scenario_path)
    preset_tables = scenario_data.pop("preset", {})
    if not isinstance(preset_tables, dict) or not set(preset_tables) <= set(available_presets()):
        received = sorted(preset_tables) if isinstance(preset_tables, dict) else preset_tables
        raise ConfigError(f"{scenario_path}: [preset.<name>] tables must be named after presets "
                          f"{available_presets()}; received {received!r}")

    merged = read_toml(BASE_FILE)
    merged = deep_merge(merged, read_toml(PRESET_DIR / f"{preset}.toml"), replace=REPLACED_WHOLE)
    merged = deep_merge(merged, scenario_data, replace=REPLACED_WHOLE)
    merged = deep_merge(merged, preset_tables.get(preset, {}), replace=REPLACED_WHOLE)
    merged["preset"] = preset
    override_map = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    for dotted, value in override_map.items():
        set_dotted(merged, dotted, value)
    try:
        return ScenarioConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(format_validation_error(
            err, root=ScenarioConfig, header=f"invalid scenario config {scenario_path} (preset {preset!r}):",
            fix_in="the scenario file")) from None


def _known_scenarios() -> str:
    return ", ".join(f"{r['id']} {r['name']}" for r in list_scenarios())
