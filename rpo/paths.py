"""Where things live: the one module that knows the project's folders.

The project root is ``$RPO_HOME`` when set (``rpo --root DIR`` sets it), else the checkout this package
was imported from (an editable install: the folder holding ``pyproject.toml`` and ``notebooks/``), else
the current directory (an installed package run from a copy of the repository). Below it:

* ``notebooks/``       the jupytext notebooks the pipeline executes
* ``papermill_runs/``  executed runs, ``<profile>`` or ``<profile>-<grid>`` (:func:`run_dir`)
* ``results/``         tables, figures, manifest, reading copies of the notebooks
* ``recipes/``         cluster recipes (alignment-handbook style)
* ``.cache/``          the toy world (``$RPO_WORLD_CACHE``), saved policies, benchmark folders
* ``models/``          local model conversions made at set-up (``$RPO_MODEL_CACHE``)
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _is_project(folder: Path) -> bool:
    return (folder / "pyproject.toml").exists() and (folder / "notebooks").is_dir()


def root() -> Path:
    """The project root (see the module doc)."""
    if os.environ.get("RPO_HOME"):
        return Path(os.environ["RPO_HOME"]).resolve()
    if _is_project(_CHECKOUT):
        return _CHECKOUT
    return Path.cwd()


def notebooks() -> Path:
    return root() / "notebooks"


def runs() -> Path:
    return root() / "papermill_runs"


def results() -> Path:
    return root() / "results"


def recipes() -> Path:
    return root() / "recipes"


def readme() -> Path:
    return root() / "README.md"


def cache() -> Path:
    """The toy world's cache (also saved policies and benchmark folders live under it)."""
    return Path(os.environ.get("RPO_WORLD_CACHE") or root() / ".cache")


def model_cache() -> Path:
    return Path(os.environ.get("RPO_MODEL_CACHE") or root() / "models")


def grid_name(profile: str, grid: str = "full") -> str:
    """``<profile>`` for the full grid, ``<profile>-<grid>`` otherwise: the CI grid's short trainings
    never stand in for the full study's cells."""
    return profile if grid == "full" else f"{profile}-{grid}"


def run_dir(profile: str, grid: str = "full", runs_root=None) -> Path:
    """Where a profile's runs live: ``papermill_runs/<profile>[-<grid>]``."""
    return Path(runs() if runs_root is None else runs_root) / grid_name(profile, grid)


def policy_path(policy_root, profile: str, grid: str, config_hash: str, seed: int) -> Path:
    """Where ``02_train`` saves a trained policy and ``05_evaluate`` finds it:
    ``<policy_root>/<profile>[-<grid>]/<config hash>-s<seed>``."""
    return Path(policy_root) / grid_name(profile, grid) / f"{config_hash}-s{seed}"


def bench_path(bench_root, profile: str, grid: str) -> Path:
    """The evaluation harnesses' folder of one profile and grid (AlpacaEval outputs, arena-hard layout)."""
    return Path(bench_root) / grid_name(profile, grid)


def policies() -> Path:
    """Default root of the policies ``02_train`` saves for ``05_evaluate``."""
    return cache() / "policies"


def bench() -> Path:
    """Default root of the evaluation harnesses' folders (answers, judgments)."""
    return cache() / "bench"
