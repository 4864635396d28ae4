"""The cost of the privacy bookkeeping alone: subset aggregation, release and ledger charge per release."""

from __future__ import annotations

import numpy as np

from paczero.bench.timing import timed
from paczero.mechanisms import get_mechanism
from paczero.mechanisms.base import StepInput
from paczero.privacy.ledger import Guarantee
from paczero.privacy.pac import PacLedger
from paczero.subsets import Secret, build_subsets


def bookkeeping_seconds(mechanism: str, m: int = 128, n: int = 1000, calls: int = 200) -> float:
    """Mean time of subset aggregation + release (MI calibration) + ledger charge (posterior update).

    The per-example estimates are drawn so that the subsets disagree, which forces the noisy MI branch.
    """
    rng = np.random.default_rng(0)
    subsets = build_subsets(n, m, rng)
    mech = get_mechanism(mechanism)(Secret(0, m), rng)
    ledger = PacLedger(m, calls, 0.33 if mech.guarantee is Guarantee.MI_BUDGET else None)
    gs = rng.normal(0.0, 1.0, size=(calls, n))

    def run() -> None:
        for g in gs:
            ledger.charge(mech.release(StepInput.from_estimates(g, subsets), ledger))

    return timed(run) / calls
