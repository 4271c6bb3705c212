"""rpo: Robust Preference Optimization (RPO / RE-PO), a replication and library.

Layers point one way (each imports only those to its left)::

    core (pure torch) <- data <- training (TRL) <- toy, evaluate <- pipeline, report <- cli, notebooks

The math core is imported eagerly; the TRL trainer lazily, because importing TRL costs ~10 s.
"""

from rpo import _deprecated
from rpo.core import *  # noqa: F403  (the math core's public names, stated once in rpo.core.__all__)
from rpo.core import __all__ as _core_names

__all__ = [*_core_names, "RobustConfig", "RobustTrainer"]  # noqa: F405  (the last two are lazy, below)

__version__ = "0.1.0"

_LAZY = {"RobustConfig": "rpo.training.config", "RobustTrainer": "rpo.training.trainer"}

_deprecated.install()


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rpo' has no attribute {name!r}")
