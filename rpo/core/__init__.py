"""The math core, pure torch (imports nothing else of rpo, no TRL, no transformers): Table 1's losses
(:mod:`~rpo.core.losses`), the EM algorithm (:mod:`~rpo.core.em`), the reliability tracker owning eta
(:mod:`~rpo.core.reliability`), every method's per-example objective (:mod:`~rpo.core.objectives`),
the one method registry (:mod:`~rpo.core.methods`), intervals (:mod:`~rpo.core.stats`), and section 4
by simulation and symbolically (:mod:`~rpo.core.theory`, :mod:`~rpo.core.derivations`, sympy)."""

from rpo.core.em import (
    e_step,
    e_step_and_loss,
    em_operator,
    ema_update,
    full_update,
    init_eta,
    preference_log_probs,
    rpo_loss,
)
from rpo.core.losses import LOSSES, pair_losses
from rpo.core.methods import METHODS
from rpo.core.reliability import ReliabilityTracker

__all__ = [
    "LOSSES",
    "METHODS",
    "ReliabilityTracker",
    "e_step",
    "e_step_and_loss",
    "em_operator",
    "ema_update",
    "full_update",
    "init_eta",
    "pair_losses",
    "preference_log_probs",
    "rpo_loss",
]
