"""P-MMF (Xu et al., WWW 2023) with accounts as providers: online dual mirror descent toward max-min exposure.

Xu, Chen, Xu, Shen, Zhang, Wang and Dong, "P-MMF: Provider Max-min Fairness Re-ranking in Recommender
System", WWW 2023 (code: XuChen0427/P-MMF). The re-ranker maximizes accumulated relevance plus
lambda times the minimum over providers of exposure / target share. Its online algorithm keeps a dual
price mu_p per provider and, for each request,

  1. selects the top-K items by relevance - mu_provider, then shows them in relevance order;
  2. takes the gradient g = B_t / (T K) - (share of the K slots each provider got): the remaining budget
     per slot (which starts at the target share rho) minus the realized share;
  3. takes a momentum step g <- alpha g + (1 - alpha) g_prev and a mirror-descent step under the
     weighted Euclidean map ||rho * mu||^2:  mu~ = mu - eta g / rho^2;
  4. projects mu~ onto the dual feasible set M = {mu : sum_{p in S} rho_p mu_p >= -lambda for all S}
     (in the same rho-weighted norm).

An over-exposed provider's price rises (its items drop), an under-exposed provider's price falls below
zero (its items rise), and M bounds how far prices may fall in total: sum of the negative rho_p mu_p at
least -lambda, so lambda is the budget of the boost the worst-off providers may get.

Account level, NOT operator-cluster aware: every live account is a provider with the same target share,
so an operator's twenty accounts hold twenty shares. That is the point of the comparison with the
cluster-aware ecorank engine (scenario S3).

Adaptations to the simulator, and why:

* Relevance is P1's blend utility mapped onto [0, 1] (`fairco.unit_relevance`), the paper's scale
  (it passes preference scores through a sigmoid); prices are in those units. With eta = 0 the prices
  stay 0 and the policy returns exactly P1's ranking.
* Providers are the live accounts, targets rho = 1 / (number of live accounts): equal weights, i.e. plain
  max-min exposure among accounts (the paper weights providers by their item counts, which the policy
  cannot observe). An account no request retrieved still has a target and a falling price: max-min
  fairness is over providers, as in the paper where every item is a candidate of every request.
* One dual step per round, from the round's mean gradient: the simulator serves a round's requests in one
  vectorized call, so prices are frozen within a round (a mini-batch step; the paper steps per request).
* Exposure is position-weighted, 1/log2(k + 2) at 0-based slot k, computed on the slate this policy
  returns (the simulator's examination model), instead of the paper's slot counts. This is exactly what
  `obs.accounts.exposure` will add for the round, without waiting a round for it.
* Step size per account: the paper's eta / rho^2 step makes a provider's price move by eta * n * (relative
  error) with n providers, so one eta cannot serve 50 and 1000 accounts. We set the paper's eta to
  `pmmf_eta` * rho, so a price moves by pmmf_eta * (realized / target - 1) per round (relevance units per
  unit of relative exposure-share error): scale-free across presets. With equal weights the mirror map is
  Euclidean up to a constant, so this is the paper's update with a rescaled step.
* No budgets running down: the paper's code works on finite batches of T requests, masks a provider
  once it used up its (1 + 1/|P|) rho T K slots and uses the remaining budget B_t / (T K) in the gradient.
  An open-ended simulation has no batch end, so the gradient's target is rho itself, and the prices
  alone enforce the targets in the long run.

Defaults (configs/base.toml), measured on S1 tiny, seeds 0-2 (account Gini, GMV vs P1; P1's Gini 0.53):
pmmf_eta = 0.01 -> 0.42 at -6% GMV (0.03 -> 0.33 at -12%, 0.1 -> 0.24 at -14%). pmmf_momentum = 0.5
rather than the code's 0.1: the paper smooths per-request gradients, ours are already means over a
round's requests, and 0.1 made the prices lag (Gini 0.47). pmmf_lambda = 0.1 is the code's value; in
20 tiny rounds at this eta the bound never binds (0.03 to 1.0 gave the same runs), in longer runs it
caps the boost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.config import ScenarioConfig
from experiments.policies.base import F64, I64, Slate, top_k
from experiments.policies.baselines import BlendPolicy
from experiments.policies.fairco import RoundMemory, grown, unit_relevance
from experiments.simulator.observation import Observation, Truth
from experiments.simulator.users import examination


@dataclass(frozen=True)
class _Prices:
    mu: F64  # per account: dual price, in relevance units
    gradient: F64  # per account: momentum gradient of the previous step

    @staticmethod
    def empty() -> _Prices:
        return _Prices(np.zeros(0), np.zeros(0))


def project_negative_mass(nu: F64, budget: float) -> F64:
    """Euclidean projection of nu onto {x : sum_i min(x_i, 0) >= -budget}.

    This is P-MMF's feasible set in the variables nu = rho * mu: "sum over every subset >= -lambda" binds
    only for the subset of negative entries. The projection leaves positive entries alone and lifts the
    negative ones by a common tau, clipped at 0: x_i = min(nu_i + tau, 0), with tau >= 0 the water level
    where sum_i min(nu_i + tau, 0) = -budget (exact, from the sorted negative entries; no solver).
    """
    negative = np.minimum(nu, 0.0)
    if negative.sum() >= -budget:
        return nu
    if budget <= 0:
        return np.maximum(nu, 0.0)
    # With the m most negative entries still below 0 after lifting, sum = prefix_m + m * tau = -budget.
    ordered = np.sort(negative[negative < 0])  # ascending: most negative first
    count = np.arange(1, len(ordered) + 1)
    tau = (-budget - np.cumsum(ordered)) / count
    # The right m is the largest one whose entries all stay negative: ordered[m - 1] + tau_m < 0.
    valid = ordered + tau < 0
    m = int(np.flatnonzero(valid)[-1])
    level = float(tau[m])
    lifted: F64 = np.where(nu < 0, np.minimum(nu + level, 0.0), nu)
    return lifted


class PMMFPolicy:
    """P-MMF provider max-min fair re-ranking, accounts as providers; see the module docstring."""

    name = "pmmf"
    uses_ground_truth = False

    def __init__(self, config: ScenarioConfig) -> None:
        p = config.policies
        self.blend = BlendPolicy(config)
        self.eta, self.lam, self.alpha = p.pmmf_eta, p.pmmf_lambda, p.pmmf_momentum
        self.memory: RoundMemory[_Prices] = RoundMemory(_Prices.empty)

    @property
    def prices(self) -> F64:
        """Dual price per account after the latest round's update (read-only view)."""
        view = self.memory.state.mu.view()
        view.setflags(write=False)
        return view

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        utility, _, span = unit_relevance(self.blend, obs)
        account = obs.candidates.account
        alive = obs.accounts.alive
        n = len(alive)
        before = self.memory.start(obs.round)
        mu = grown(before.mu, n)
        # 1. The K best by relevance - price (in u units: span * relevance - span * mu, see unit_relevance),
        #    shown in relevance order.
        chosen = top_k(utility - span * mu[account], obs.n_slots)
        order = top_k(np.take_along_axis(utility, chosen, axis=1), obs.n_slots)
        positions = np.take_along_axis(chosen, order, axis=1)
        self.memory.state = self.update(before, positions=positions, account=account, alive=alive)
        return Slate(positions=positions, propensity=np.ones(positions.shape))

    def update(self, before: _Prices, *, positions: I64, account: I64, alive: np.ndarray) -> _Prices:
        """Steps 2-4 for one round: gradient from the slate's exposure shares, momentum, mirror step, projection."""
        n = len(alive)
        mu, previous = grown(before.mu, n), grown(before.gradient, n)
        live = int(alive.sum())
        if live == 0:
            return _Prices(mu, previous)
        shown = np.take_along_axis(account, positions, axis=1)
        weights = np.broadcast_to(examination(positions.shape[1]), shown.shape)
        exposure = np.bincount(shown.ravel(), weights=weights.ravel(), minlength=n).astype(np.float64, copy=False)
        total = float(exposure[alive].sum())
        share = exposure / total if total > 0 else np.zeros(n)
        rho = np.where(alive, 1.0 / live, 0.0)
        gradient = np.where(alive, rho - share, 0.0)
        gradient = self.alpha * gradient + (1.0 - self.alpha) * previous
        # Mirror step mu - eta_paper * g / rho^2 with eta_paper = eta * rho: mu - eta * g / rho.
        stepped = np.where(alive, mu - self.eta * np.divide(gradient, rho, out=np.zeros(n), where=alive), mu)
        nu = project_negative_mass(rho[alive] * stepped[alive], self.lam)
        projected = stepped.copy()
        projected[alive] = nu / rho[alive]
        return _Prices(projected, gradient)
