"""The ecorank engine as a simulator policy: models + blend + plan + price controller + per-request allocator.

Fed by observable signals only. The four heads come from a trained multi-task bundle when the scenario
names one (`policies.heads_bundle`, as the closed loop does; the other learned policies then rank with
the same model), else from `estimate_heads`, a stand-in built from the response model's structure. With
a bundle, each round goes through the serving core itself (`serving.core.RankingCore`: one model call and
one batched allocation for all requests), the code path of the gRPC server; without, through its
`FairnessEngine` directly. Creator statistics come from the candidates the policy has seen, exposure
from the observable account history, operator clusters from the detector (`AccountHistory.cluster_key`).
Every `planner.horizon_rounds` rounds it re-plans from those statistics (with a bundle the predictions
arrive with the allocation, so the first plan is made after round 0, which is served with hard caps only;
the estimator plans before allocating); in between, the price controllers move prices from the exposure
each creator and cluster actually received. Slates are ranked from the traffic weights.

With `policies.ecorank_retrain_every` > 0 (and a bundle) the policy also learns from its own impressions:
the runner hands it each round's impressions (observable features, slot, realized outcomes, the audit's
noisy risk label), and every that many rounds it fine-tunes its model on the most recent
`ecorank_retrain_window` rounds (`mtl.train.fine_tune`: warm start, recalibrated) and swaps it into the
core (`RankingCore.set_bundle`). Learning only from what it chose to show is Chaney et al.'s confounded
loop, on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from experiments.config import ScenarioConfig
from experiments.policies.base import F64, Slate
from experiments.policies.estimates import cached_bundle, estimate_heads, observed_features
from experiments.simulator.observation import Observation, Truth
from fairness.blend import HeadPredictions, blend_terms, suggest_gmv_scale
from fairness.engine import CandidateBatch, FairnessEngine
from fairness.planner import PlanInputs, TrafficPlan, merit_lower_bound, plan_traffic
from fairness.policy import FairnessPolicy, load_policy
from fairness.slate import slate_from_weights

if TYPE_CHECKING:  # torch loads only when a bundle is configured: `ecorank simulate` without one stays light
    from mtl.bundle import Bundle
    from serving.core import RankingCore

ORIGINALITY_FLAG = 0.7  # the originality score above which the fingerprint check calls an item original


class _CreatorStats:
    """Exponentially weighted per-account statistics of what the policy has seen (observable only)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.names = ("count", "reward", "reward_sq", "utility", "risk", "complaint", "originality", "prosperity")
        self.sums: dict[str, F64] = {name: np.zeros(0) for name in self.names}

    def add(self, account: np.ndarray, n_accounts: int, values: dict[str, F64]) -> None:
        for name in self.names:
            grown = np.zeros(n_accounts)
            grown[: len(self.sums[name])] = self.sums[name][:n_accounts]
            weights = np.ones(len(account)) if name == "count" else values[name]
            self.sums[name] = self.decay * grown + np.bincount(account, weights=weights, minlength=n_accounts)

    def mean(self, name: str) -> F64:
        return self.sums[name] / np.maximum(self.sums["count"], 1e-12)


class EnginePolicy:
    """ecorank: cluster-aware fair allocation from observable signals."""

    name = "ecorank"
    uses_ground_truth = False

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config
        path = config.policies.heads_bundle
        self.bundle: Bundle | None = cached_bundle(path) if path else None
        self._start()

    @property
    def learns(self) -> bool:
        return self.bundle is not None and self.config.policies.ecorank_retrain_every > 0

    def _start(self) -> None:
        """Fresh state: the policy as configured, no plan, no statistics (a new run starts here)."""
        p = self.config.policies
        self.fairness = load_policy(p.ecorank_policy, overrides=p.ecorank_overrides)
        self.engine = FairnessEngine(self.fairness)
        self.core: RankingCore | None = None
        self.own_impressions: list[pa.Table] = []  # one table per recent round, for retraining
        self.retrained = 0
        self.stats = _CreatorStats(decay=0.9)
        self.replan_every = max(1, round(self.fairness.planner.horizon_rounds))
        self.previous_exposure = np.zeros(0)
        self.requests_seen = 0.0
        self.last_round = -1
        self.plans = 0
        self.calibrate_gmv_scale = True

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        if obs.round <= self.last_round:  # a new run reusing this object: start afresh
            self._start()
        self.last_round = obs.round
        c = obs.candidates
        rows, cols = c.shape
        account = c.account.ravel()
        cluster_key = obs.accounts.cluster_key()
        original = c.originality.ravel() >= ORIGINALITY_FLAG
        if self.bundle is not None:
            from serving.core import RankingCore, RankInput

            features = observed_features(c, self.bundle)
            if self.core is None:
                scale = suggest_gmv_scale(self.bundle.predict_dense(features)["gmv"], quantile=0.99)
                self.core = RankingCore(self.bundle, self._with_gmv_scale(scale))
            self._feed_back(obs, cluster_key)
            ranked = self.core.rank(RankInput(
                request_id=f"round-{obs.round}", surface="content", item_ids=c.item.ravel(), creator_ids=account,
                cluster_ids=cluster_key[account], original=original, features=features,
                request=np.repeat(np.arange(rows), cols)), now=float(obs.round))
            weights = ranked.weights
            value = np.empty(rows * cols)
            value[ranked.ranking] = -np.arange(rows * cols)  # the core's ranking, as a tie-break score
            # the predictions come with the allocation, so a plan made from them serves from the next round
            self._learn_and_plan(obs, HeadPredictions(**ranked.predictions), cluster_key)
        else:
            est = estimate_heads(c, self.config)
            heads = HeadPredictions(gmv=est.gmv.ravel(), prosperity=est.prosperity.ravel(), risk=est.risk.ravel(),
                                    complaint=est.complaint.ravel())
            if self.calibrate_gmv_scale:
                self.engine = FairnessEngine(self._with_gmv_scale(suggest_gmv_scale(heads.gmv, quantile=0.99)))
                self.calibrate_gmv_scale = False
            self._feed_back(obs, cluster_key)
            self._learn_and_plan(obs, heads, cluster_key)  # the estimates come first: this round gets the plan
            result = self.engine.allocate(CandidateBatch(creator=account, cluster=cluster_key[account],
                                                         original=original, heads=heads,
                                                         request=np.repeat(np.arange(rows), cols)),
                                          now=float(obs.round))
            weights, value = result.weights, result.value
        sample = self.fairness.allocation.slate == "sample"
        positions, propensity = slate_from_weights(weights.reshape(rows, cols), obs.n_slots,
                                                   tie_break=value.reshape(rows, cols), rng=rng if sample else None)
        return Slate(positions=positions, propensity=propensity)

    def learn(self, impressions: pa.Table) -> None:
        """Keep the round's impressions; every `ecorank_retrain_every` rounds fine-tune the model on them."""
        if not self.learns or self.core is None:
            return
        p = self.config.policies
        self.own_impressions = [*self.own_impressions, impressions][-p.ecorank_retrain_window:]
        if (self.last_round + 1) % p.ecorank_retrain_every:
            return
        from mtl.train import fine_tune
        from mtl.trainer import TrainConfig

        data = pa.concat_tables(self.own_impressions)
        if data.num_rows < 100:  # too little to split and learn from: keep the current model
            return
        settings = TrainConfig(epochs=p.ecorank_retrain_epochs, batch_size=512, lr=1e-3, warmup_steps=0,
                               patience=1, seed=self.last_round)
        self.core.set_bundle(fine_tune(self.core.state.bundle, data, config=settings))
        self.retrained += 1

    def _with_gmv_scale(self, scale: float) -> FairnessPolicy:
        """The GMV term's currency scale, fixed once from the first round's predictions (observable), so that
        it is O(1) like the probability heads (fairness/blend.py, "Normalization")."""
        blend = self.fairness.blend.model_copy(update={"gmv_scale": scale})
        self.fairness = self.fairness.model_copy(update={"blend": blend})
        return self.fairness

    def _learn_and_plan(self, obs: Observation, heads: HeadPredictions, cluster_key: np.ndarray) -> None:
        """Add the round's predictions to the creator statistics; re-plan from them when a plan is due."""
        c = obs.candidates
        self._learn(heads, c.account.ravel(), c.originality.ravel(), len(obs.accounts.alive), c.shape[0])
        if self.plans == 0 or obs.round % self.replan_every == 0:
            self._replan(obs, cluster_key)

    def _learn(self, heads: HeadPredictions, account: np.ndarray, originality: F64, n_accounts: int,
               requests: int) -> None:
        terms = blend_terms(heads, self.engine.blend_weights(), gmv_scale=self.fairness.blend.gmv_scale)
        reward = terms["gmv"] + terms["prosperity"]
        self.stats.add(account, n_accounts, {
            "reward": reward, "reward_sq": reward**2, "utility": reward + terms["risk"] + terms["complaint"],
            "risk": heads.risk, "complaint": heads.complaint, "originality": originality,
            "prosperity": heads.prosperity,
        })
        self.requests_seen = self.stats.decay * self.requests_seen + requests

    def _feed_back(self, obs: Observation, cluster_key: np.ndarray) -> None:
        exposure = obs.accounts.exposure
        previous = np.zeros(len(exposure))
        previous[: len(self.previous_exposure)] = self.previous_exposure
        realized = exposure - previous
        self.previous_exposure = exposure.copy()
        shown = np.flatnonzero(realized > 0)
        if len(shown) and self.plans:
            target = self.core if self.core is not None else self.engine
            target.observe(creator=shown, cluster=cluster_key[shown], exposure=realized[shown])

    def _replan(self, obs: Observation, cluster_key: np.ndarray) -> None:
        h, s, p = obs.accounts, self.stats, self.fairness
        seen = s.sums["count"][: len(h.alive)] > 0
        creators = np.flatnonzero(h.alive[: len(seen)] & seen)
        if len(creators) == 0:
            return
        count = s.sums["count"][creators]
        mean_reward = s.mean("reward")[creators]
        variance = np.maximum(s.mean("reward_sq")[creators] - mean_reward**2, 0.0)
        merit = merit_lower_bound(mean_reward, np.sqrt(variance / np.maximum(count, 1.0)), p.planner.lcb_z)
        e = p.eligibility
        original = ((s.mean("originality")[creators] >= ORIGINALITY_FLAG) & (s.mean("risk")[creators] <= e.max_risk)
                    & (s.mean("prosperity")[creators] >= e.min_prosperity))
        # exploration floors go to young accounts that pass the risk bar: an exploration quota open to any
        # new account is the easiest thing for a farm of fresh sybil accounts to collect
        newcomer = (((h.age[creators] < e.newcomer_rounds) | (h.impressions[creators] < e.newcomer_impressions))
                    & (s.mean("risk")[creators] <= e.max_risk))
        appearance = count / max(self.requests_seen, 1e-12)  # share of requests the creator is a candidate in
        n = len(creators)
        inputs = PlanInputs(
            creator=creators.astype(np.int64), cluster=cluster_key[creators], merit=merit, original=original,
            newcomer=newcomer, segments=("feed",), supply=np.ones(1), pair_segment=np.zeros(n, np.int64),
            pair_creator=np.arange(n, dtype=np.int64), value=s.mean("utility")[creators],
            demand=np.minimum(1.0, appearance * p.allocation.creator_cap),
            risk=s.mean("risk")[creators], complaint=s.mean("complaint")[creators])
        self.plans += 1
        self._adopt(plan_traffic(inputs, p, version=self.plans, now=float(obs.round)))

    def _adopt(self, plan: TrafficPlan) -> None:
        if self.core is not None:
            self.core.set_plan(plan)
        else:
            self.engine.set_plan(plan)
