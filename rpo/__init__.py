"""rpo: Robust Preference Optimization (RPO / RE-PO), a replication and library.

Layers point one way: math core (``rpo.losses``, ``rpo.em``: pure torch) <- trainer
(``rpo.trainer``: TRL) <- pipeline (``rpo.pipeline``: papermill) <- notebooks and CLI.

The math core is imported eagerly; the TRL trainer lazily, because importing TRL costs ~10 s.
"""

from rpo.em import e_step, e_step_and_loss, em_operator, ema_update, full_update, init_eta, preference_log_probs, rpo_loss
from rpo.losses import LOSSES, pair_losses

__all__ = [
    "LOSSES",
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

_LAZY = {"RobustConfig": "rpo.trainer", "RobustTrainer": "rpo.trainer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rpo' has no attribute {name!r}")
