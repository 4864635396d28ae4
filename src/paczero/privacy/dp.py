"""Differential-privacy accounting for the DP zeroth-order baselines, on the ``dp-accounting`` library.

One DP step publishes, for its K directions, (Σ_{i∈B} clip_C(v_i) + noise) / (q·N), B a Poisson sample of
the pool with rate q. Under the add/remove-one neighbouring relation one example changes the clipped sum by at
most C (its L2 norm for Gaussian noise, L1 for Laplace): the sensitivity is C, the noise scale is
multiplier·C, and the normaliser q·N is public. A step is therefore one
``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` (or its Laplace analogue); T steps are that event
self-composed T times. The accountant prices the composition (RDP by default, PLD as an option; pure ε-DP
composition for Laplace) and the noise multiplier is calibrated by a search that returns the side satisfying
the target, never the side above it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS, compute_epsilon

from paczero.channel import attack_bound_from_dp, mi_matching_epsilon
from paczero.privacy.ledger import BudgetExhausted, Guarantee, Ledger

NOISES = ("gaussian", "laplace")
ACCOUNTANTS = {"gaussian": ("rdp", "pld"), "laplace": ("pure", "pld")}
NEIGHBOURING = NeighboringRelation.ADD_OR_REMOVE_ONE  # the relation the sensitivity C is stated for
PLD_DISCRETIZATION = 1e-3  # PLD's pessimistic discretisation: an upper bound on ε at any interval
MIN_MULTIPLIER = 0.05

# RDP orders whose series does not converge are dropped by dp-accounting with a warning per order; the ε it
# returns stays a valid (slightly looser) bound, so the warning is noise in a calibration search.
logging.getLogger("absl").setLevel(logging.ERROR)


def poisson_sample(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Rows of a Poisson sample: each of n examples joins independently with probability ``rate`` (may be
    empty), the sampling the accountant's ``PoissonSampledDpEvent`` assumes."""
    return np.flatnonzero(rng.random(n) < rate)


def default_accountant(noise: str) -> str:
    """RDP for Gaussian noise; pure ε-DP composition for Laplace."""
    return ACCOUNTANTS[noise][0]


def step_event(noise: str, multiplier: float, rate: float) -> dp_accounting.DpEvent:
    """One step: Poisson sampling at ``rate``, then noise of scale multiplier·C on a sum of sensitivity C."""
    inner = (
        dp_accounting.GaussianDpEvent(multiplier)
        if noise == "gaussian"
        else dp_accounting.LaplaceDpEvent(multiplier)
    )
    return dp_accounting.PoissonSampledDpEvent(rate, inner)


def _accountant(name: str) -> dp_accounting.PrivacyAccountant:
    if name == "rdp":
        return rdp.RdpAccountant(neighboring_relation=NEIGHBOURING)
    return pld.PLDAccountant(NEIGHBOURING, value_discretization_interval=PLD_DISCRETIZATION)


def epsilon_spent(
    noise: str, multiplier: float, rate: float, steps: int, delta: float, accountant: str
) -> float:
    """ε after ``steps`` steps at δ (δ is ignored by ``pure``: Laplace steps composed as pure ε-DP).

    ``pure``: a step of Laplace noise with ε₀ = 1/multiplier, Poisson-sampled at rate q, is
    log(1 + q(e^ε₀ − 1))-DP (amplification by subsampling, add/remove); T steps compose to T times that.
    """
    if steps == 0:
        return 0.0
    if accountant == "pure":
        if noise != "laplace":
            raise ValueError("pure ε-DP accounting applies to Laplace noise only")
        return steps * math.log1p(rate * math.expm1(1.0 / multiplier))
    acc = _accountant(accountant)
    return float(acc.compose(step_event(noise, multiplier, rate), steps).get_epsilon(delta))


def epsilon_curve(
    noise: str, multiplier: float, rate: float, delta: float, accountant: str
) -> Callable[[int], float]:
    """t ↦ ε after t identical steps, equal to ``epsilon_spent`` but cheap enough to price every step.

    RDP composes by addition, so one step's RDP at every order is computed once (dp-accounting's own
    per-order computation, read from a one-step accountant) and t steps are t times it; the conversion to ε
    is the library's ``compute_epsilon``. A test pins this to the library's T-fold composition.
    """
    if accountant != "rdp":
        return lambda t: epsilon_spent(noise, multiplier, rate, t, delta, accountant)
    one_step = rdp.RdpAccountant(DEFAULT_RDP_ORDERS, NEIGHBOURING)
    one_step.compose(step_event(noise, multiplier, rate))
    per_step = one_step._rdp.copy()  # no public getter; the equality test guards against a rename
    return lambda t: 0.0 if t == 0 else float(compute_epsilon(DEFAULT_RDP_ORDERS, t * per_step, delta)[0])


def calibrate_multiplier(
    epsilon: float, delta: float, steps: int, rate: float, noise: str = "gaussian", accountant: str = "rdp"
) -> float:
    """The smallest noise multiplier (to a relative 1e-7) whose ε after ``steps`` steps at δ is ≤ ``epsilon``.

    Gaussian/PLD and Laplace/PLD use dp-accounting's calibration, which returns the side of the root that
    satisfies the budget; Laplace/pure inverts the composition in closed form and then rounds up until the
    forward formula agrees, so floating-point error cannot overshoot either.
    """
    if epsilon <= 0:
        raise ValueError(f"the target ε must be positive, got {epsilon}")
    if accountant not in ACCOUNTANTS[noise]:
        raise ValueError(
            f"{noise} noise is accounted with {' or '.join(ACCOUNTANTS[noise])}, not {accountant}"
        )
    if accountant == "pure":
        eps0 = math.log1p(math.expm1(epsilon / steps) / rate)
        multiplier = 1.0 / eps0
        while epsilon_spent(noise, multiplier, rate, steps, delta, accountant) > epsilon:
            multiplier = math.nextafter(multiplier, math.inf)
        return multiplier

    def meets(multiplier: float) -> bool:
        return epsilon_spent(noise, multiplier, rate, steps, delta, accountant) <= epsilon

    high = 1.0  # bracket [high/2, high] with ε(high/2) > target ≥ ε(high), found by doubling or halving
    while not meets(high):
        high *= 2.0
    while True:
        if high / 2.0 < MIN_MULTIPLIER:  # tiny σ blows up PLD's discretisation; such an ε protects nothing
            raise ValueError(f"ε = {epsilon} is met by a noise multiplier below {MIN_MULTIPLIER}: check it")
        if not meets(high / 2.0):
            break
        high /= 2.0
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _accountant(accountant),
            lambda m: dp_accounting.SelfComposedDpEvent(step_event(noise, m, rate), steps),
            epsilon,
            delta,
            dp_accounting.ExplicitBracketInterval(high / 2.0, high),
            tol=1e-7 * high,
        )
    )


@dataclass(frozen=True)
class DpPlan:
    """What a DP run fixes before training, all public: the target, sampling, clipping and calibrated noise.

    ``clip`` is C in the units of the per-example vectors the mechanism sums (projected gradients g for
    dpzero/dp-aggzo, g ≡ loss difference/(2ε_zo) for dp-zo); it is also the add/remove sensitivity of the sum.
    Noise of scale ``noise_multiplier``·C (Gaussian std or Laplace scale) is added to the sum, which is then
    divided by ``expected_batch`` = q·N.
    """

    epsilon: float
    delta: float
    steps: int
    sampling_rate: float
    noise: str
    accountant: str
    clip: float
    expected_batch: float
    noise_multiplier: float

    @property
    def sensitivity(self) -> float:
        """Largest change of the clipped sum when one example is added or removed (add/remove relation)."""
        return self.clip

    @property
    def noise_scale(self) -> float:
        """Std (Gaussian) or scale (Laplace) of the noise on each released, normalised coordinate."""
        return self.noise_multiplier * self.sensitivity / self.expected_batch

    @classmethod
    def build(
        cls,
        epsilon: float,
        delta: float,
        steps: int,
        sampling_rate: float,
        clip: float,
        pool_size: int,
        noise: str = "gaussian",
        accountant: str | None = None,
    ) -> DpPlan:
        accountant = accountant or default_accountant(noise)
        delta = 0.0 if accountant == "pure" else delta
        multiplier = calibrate_multiplier(epsilon, delta, steps, sampling_rate, noise, accountant)
        return cls(
            epsilon=epsilon,
            delta=delta,
            steps=steps,
            sampling_rate=sampling_rate,
            noise=noise,
            accountant=accountant,
            clip=clip,
            expected_batch=sampling_rate * pool_size,
            noise_multiplier=multiplier,
        )


@dataclass
class DpLedgerSummary:
    """What a user reads for a DP run: ε spent at δ, the target, the noise and the attack bound it implies."""

    guarantee: str
    epsilon_spent: float
    epsilon: float
    delta: float
    accountant: str
    noise: str
    noise_multiplier: float
    sampling_rate: float
    expected_batch: float
    clip: float
    steps: int
    attack_bound: float
    matched_mi: float
    mi_spent: None = None
    mi_budget: None = None


class DpLedger(Ledger):
    """Charges one Poisson-subsampled noise event per step; ε spent is re-priced from the step count.

    It never touches tensors or data. It refuses a step whose ε would exceed the target, and a release twice.
    """

    def __init__(self, plan: DpPlan):
        self.plan = plan
        self.steps = 0
        self._curve = epsilon_curve(
            plan.noise, plan.noise_multiplier, plan.sampling_rate, plan.delta, plan.accountant
        )
        self._epsilon: dict[int, float] = {0: 0.0}

    def epsilon_after(self, steps: int) -> float:
        if steps not in self._epsilon:
            self._epsilon[steps] = self._curve(steps)
        return self._epsilon[steps]

    @property
    def epsilon_spent(self) -> float:
        return self.epsilon_after(self.steps)

    @property
    def exhausted(self) -> bool:
        """True when one more step would take ε past the target."""
        return self.epsilon_after(self.steps + 1) > self.plan.epsilon

    def secret_batch(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The step's Poisson sample of the pool at the plan's rate, from the secret sampling generator."""
        return poisson_sample(rng, n, self.plan.sampling_rate)

    def step_fields(self, guarantee: Guarantee, cost: float | None) -> dict[str, float | None]:
        """What a step record publishes about the accounting: ε spent after this step at the run's δ."""
        return {"mi_step": None, "mi_spent": None, "epsilon_spent": self.epsilon_spent}

    def charge(self, release: Any) -> None:
        """Account for one step's release exactly once."""
        if release.charged:
            raise RuntimeError("this release was already charged")
        if self.exhausted:
            raise BudgetExhausted(
                f"step {self.steps + 1} would spend ε = {self.epsilon_after(self.steps + 1):.6g} "
                f"> target {self.plan.epsilon:.6g}"
            )
        release.charged = True
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """The steps charged and the plan they were priced under (JSON-safe), for checkpoints."""
        return {"kind": "dp", "plan": asdict(self.plan), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        plan = {"kind": "dp", "plan": asdict(self.plan)}
        saved = {key: state.get(key) for key in plan}
        if saved != plan:
            raise ValueError(f"the saved DP ledger was planned as {saved}, this run as {plan}")
        self.steps = int(state["steps"])

    def summary(self, guarantee: Guarantee) -> DpLedgerSummary:
        eps, plan = self.epsilon_spent, self.plan
        return DpLedgerSummary(
            guarantee=Guarantee(guarantee).value,
            epsilon_spent=eps,
            epsilon=plan.epsilon,
            delta=plan.delta,
            accountant=plan.accountant,
            noise=plan.noise,
            noise_multiplier=plan.noise_multiplier,
            sampling_rate=plan.sampling_rate,
            expected_batch=plan.expected_batch,
            clip=plan.clip,
            steps=self.steps,
            attack_bound=attack_bound_from_dp(eps, plan.delta),
            matched_mi=mi_matching_epsilon(eps, plan.delta),
        )
