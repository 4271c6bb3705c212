"""rpo: Robust Preference Optimization (RPO / RE-PO), a replication and library.

Layers point one way (each imports only those to its left)::

    core (pure torch) <- data <- training (TRL) <- toy, evaluate <- pipeline, report <- cli, notebooks

The math core is imported eagerly; the TRL trainer lazily, because importing TRL costs ~10 s.
"""

from rpo import _deprecated
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
    "pair_losses",
    "preference_log_probs",
    "e_step",
    "e_step_and_loss",
    "rpo_loss",
    "ema_update",
    "full_update",
    "em_operator",
    "init_eta",
    "RobustConfig",
    "RobustTrainer",
]

__version__ = "0.1.0"

_LAZY = {"RobustConfig": "rpo.training.config", "RobustTrainer": "rpo.training.trainer"}

_deprecated.install()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rpo' has no attribute {name!r}")
