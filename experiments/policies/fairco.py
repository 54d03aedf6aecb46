"""FairCo (Morik et al., SIGIR 2020) at account level, plus helpers shared by the fair-ranking baselines.

Morik, Singh, Hong and Joachims, "Controlling Fairness and Bias in Dynamic Learning-to-Rank", SIGIR 2020.
FairCo ranks by a proportional controller on top of the relevance estimate:

    sigma_tau(d) = R(d) + lambda * err_tau(d),
    err_tau(d)   = (tau - 1) * max_G' D_{tau-1}(G', G(d)),
    D_{tau-1}(G', G) = 1/(tau-1) * sum_{t < tau} [ Exp_t(G') / M(G') - Exp_t(G) / M(G) ],

so err is the cumulative exposure-per-merit the group of d is behind the best-treated group: the
error grows with time for as long as the disparity persists (integral action), which is what makes
the disparity vanish at rate O(1/tau) for any lambda > 0. The authors' code (`get_unfairness` in
MarcoMorik/Dynamic-Fairness) computes it exactly so, from the cumulative exposure, with KP = 0.01.

The baselines here are deliberately account-level, NOT operator-cluster aware: every account is its
own group, so an operator with twenty accounts is twenty groups. That is the point of the comparison
with the cluster-aware ecorank engine (scenario S3).

Adaptations to the simulator, and why:

* Relevance R is the P1 blend utility of the estimated heads (`BlendPolicy.scores`), mapped affinely
  onto [0, 1] (`unit_relevance`): the paper's relevances are probabilities and merit must be > 0 for
  exposure / merit to mean anything. The map is increasing, so it does not change P1's order, and
  `fairco_lambda = 0` reproduces P1 exactly.
* Exposure is the account's realized cumulative position-weighted exposure under this policy
  (`obs.accounts.exposure`, examination 1/log2(k + 1), the same position-based model the paper uses).
* Merit M(a) is the account's mean relevance over all its candidate appearances so far, this round
  included: the paper's M(G) is the mean over the group's items of R(d), where R(d) is the average
  relevance over the users who arrive; here the users who "arrive" at an account are the requests that
  retrieved it, and the policy sees those every round. Per-round means alone would be noisier (a few
  appearances for a small account), and the true merit is hidden.
* One controller step per round: the simulator serves a round's requests in one vectorized call, so
  the error is frozen within a round (a batched controller; the paper updates after every user).
* Disparity per round, error scaled by the global time: the population changes (entry and exit), so
  the disparity is measured as the paper's per-round average D, over the rounds each account was alive
  when this policy ranked: rho_a = E_a / (n_a M_a) is the account's exposure per round and per unit
  merit, D(b, a) = rho_b - rho_a, and err(a) = (tau - 1) * max_b D(b, a) with tau - 1 = obs.round the
  rounds served so far. With a fixed population (every n_a = tau - 1) this is exactly the paper's
  error. The alternatives are worse for a changing population: the raw cumulative exposure
  (the paper's formula verbatim) makes a newcomer arriving in round 100 owe 100 rounds of exposure and
  crowd out everyone for many rounds; a debt counted over each account's own lifetime,
  n_a * (max rho - rho_a), ranks long-time incumbents above equally under-exposed newcomers (measured:
  it cut tiny S1 newcomer survival from 0.51 to 0.18). Accounts with no past round or no candidate
  appearance yet get no error (no information). Because the max is shared by every candidate of a
  round, FairCo ranks by relevance - lam * (tau - 1) * rho_a: the max sets the error's level, not the order.

Scale of lambda: the error is in exposure / merit units. A typical account earns about 5 exposure per
round at merit about 0.6 in both presets (requests and accounts scale together), so rho is about 8 and
the error of an account half as exposed as the best grows by about 4 per round, while relevance gaps
between neighbouring candidates are about 0.01 to 0.1. The paper's KP = 0.01 (its relevances are in
[0, 1] like ours) lets the controller overrule relevance after a round or two; the default
`fairco_lambda = 0.001` acts over about ten rounds. Measured on S1 tiny, seeds 0-2 (account Gini, GMV vs
P1): P1 0.53; lambda 0.001 -> 0.41 at -5% GMV; 0.003 -> 0.29 at -12%; 0.01 -> 0.22 at -15%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from experiments.config import ScenarioConfig
from experiments.policies.base import F64, Slate, deterministic_slate
from experiments.policies.baselines import BlendPolicy
from experiments.simulator.observation import Observation, Truth

State = TypeVar("State")

MERIT_FLOOR = 1e-4  # as the authors' code: keeps exposure / merit finite for a zero-merit account


def unit_relevance(blend: BlendPolicy, obs: Observation) -> tuple[F64, F64, float]:
    """P1's blend utility u (R, M), the same mapped onto [0, 1], and the span of that map.

    Each head is normalized per request to [0, 1] (all four are nonnegative), so
    u lies in [-(w_risk + w_complaint), w_gmv + w_prosperity]; relevance = (u + w_risk + w_complaint) / span
    with span = the sum of the four weights. A policy that adds a term c in relevance units ranks the same
    as one that adds span * c to u, which is how the policies keep P1's exact ranking at zero strength.
    """
    utility = blend.scores(obs)
    w = blend.weights
    low = w.risk + w.complaint
    span = w.gmv + w.prosperity + w.risk + w.complaint
    if span <= 0:  # all weights 0: P1 ranks by column order; every candidate equally relevant
        return utility, np.full(utility.shape, 0.5), 1.0
    return utility, (utility + low) / span, span


def grown(values: F64, n: int) -> F64:
    """Per-account state extended with zeros to n accounts (account ids only ever grow)."""
    if len(values) >= n:
        return values
    return np.concatenate([values, np.zeros(n - len(values))])


class RoundMemory(Generic[State]):
    """State a policy carries from round to round of one run, robust to repeated and restarted calls.

    `start(round)` returns the state as of the start of that round: the state after the previous round
    when the run moves on, the same start-of-round state again when a round is ranked twice (so a second
    call returns the same slate), and a fresh state when the round goes backwards (a new run reusing the
    policy object; the runner builds one policy per run, this only guards other callers). States are
    replaced, never mutated, so keeping the start-of-round one is a reference, not a copy.
    """

    def __init__(self, initial: Callable[[], State]) -> None:
        self._initial = initial
        self.state: State = initial()
        self._before: State = self.state
        self.round = -1

    def start(self, round_: int) -> State:
        if round_ < self.round:
            self.state = self._initial()
        elif round_ == self.round:
            self.state = self._before
        self._before = self.state
        self.round = round_
        return self.state


@dataclass(frozen=True)
class _FairCoState:
    relevance_sum: F64  # per account: summed relevance of its candidate appearances
    appearances: F64  # per account: number of candidate appearances
    rounds: F64  # per account: rounds it was alive when this policy ranked (before the current one)

    @staticmethod
    def empty() -> _FairCoState:
        return _FairCoState(np.zeros(0), np.zeros(0), np.zeros(0))


class FairCoPolicy:
    """FairCo exposure controller with accounts as groups; see the module docstring."""

    name = "fairco"
    uses_ground_truth = False

    def __init__(self, config: ScenarioConfig) -> None:
        self.blend = BlendPolicy(config)
        self.lam = config.policies.fairco_lambda
        self.memory: RoundMemory[_FairCoState] = RoundMemory(_FairCoState.empty)
        self.last_error: F64 = np.zeros(0)  # per account, the error used in the latest round (for inspection)

    def rank(self, obs: Observation, *, rng: np.random.Generator, truth: Truth | None = None) -> Slate:
        utility, relevance, span = unit_relevance(self.blend, obs)
        history = obs.accounts
        n = len(history.alive)
        before = self.memory.start(obs.round)
        account = obs.candidates.account.ravel()
        relevance_sum = grown(before.relevance_sum, n) + np.bincount(account, weights=relevance.ravel(), minlength=n)
        appearances = grown(before.appearances, n) + np.bincount(account, minlength=n)
        rounds = grown(before.rounds, n)
        error = self.error(exposure=history.exposure, relevance_sum=relevance_sum, appearances=appearances,
                           rounds=rounds, alive=history.alive, elapsed=obs.round)
        self.memory.state = _FairCoState(relevance_sum, appearances, rounds + history.alive)
        self.last_error = error
        # Ranking by relevance + lam * err equals ranking by u + span * lam * err (see unit_relevance).
        return deterministic_slate(utility + span * self.lam * error[obs.candidates.account], obs.n_slots)

    @staticmethod
    def error(*, exposure: F64, relevance_sum: F64, appearances: F64, rounds: F64, alive: np.ndarray,
              elapsed: int) -> F64:
        """err(a) = elapsed * (max over live accounts b of rho_b - rho_a), rho = exposure / (rounds * merit)."""
        merit = np.maximum(np.divide(relevance_sum, appearances, out=np.zeros_like(relevance_sum),
                                     where=appearances > 0), MERIT_FLOOR)
        known = alive & (appearances > 0) & (rounds > 0)
        if not known.any():
            return np.zeros(len(exposure))
        rho = np.divide(exposure, rounds * merit, out=np.zeros_like(exposure), where=known)
        best = float(rho[known].max())
        return np.where(known, elapsed * (best - rho), 0.0)
