"""Provenance: stable hashes of parameters and configs (run ids, config hashes), the git commit and the
package versions recorded with every run, and the metrics record a notebook writes (:func:`write_metrics`)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from rpo import paths
from rpo.io import atomic_write_json, json_default

# Versions recorded with every run: the stack whose internals the trainer depends on.
VERSIONED = (
    "rpo",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "peft",
    "tokenizers",
    "numpy",
    "pandas",
    "scikit-learn",
    "papermill",
    "jupytext",
    "alpaca-eval",
)


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: equal parameters give equal strings (and hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)


def stable_hash(obj, n: int = 10) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def run_id(notebook: str, params: dict, code: dict | None = None) -> str:
    """``<notebook>-<hash>``: a stable hash of the notebook name, its parameters (order-free) and, given
    ``code`` (:func:`code_version`: the notebook file's content and the rpo package's sources), of the
    code that runs them, so that editing either makes a new run instead of reusing a stale one."""
    stem = Path(notebook).stem
    key = {"notebook": stem, "params": params}
    if code is not None:
        key["code"] = code
    return f"{stem}-{stable_hash(key)}"


def file_hash(path) -> str | None:
    """sha256 of a file's bytes (16 hex digits); None when there is no such file."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


@lru_cache(maxsize=None)
def library_hash() -> str:
    """sha256 over the rpo package's Python sources (relative path and bytes of every ``rpo/**/*.py``, in
    sorted order): the library version a run executed, finer than the package version, which does not
    change between commits. Computed once per process."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        h.update(path.relative_to(pkg).as_posix().encode() + b"\x00" + path.read_bytes() + b"\x00")
    return h.hexdigest()[:16]


def code_version(notebook_path) -> dict:
    """What a run's id covers besides its parameters: the notebook file's hash and :func:`library_hash`."""
    return {"notebook": file_hash(notebook_path), "rpo": library_hash()}


def record_problem(rec, rid: str | None = None) -> str | None:
    """Why a run's metrics record cannot count as a finished run (None when it can): not an object,
    lacking ``run_id`` / ``params`` / ``metrics``, another run's id, or malformed per-training records."""
    if not isinstance(rec, dict):
        return f"the record is a {type(rec).__name__}, not a JSON object"
    missing = [k for k in ("run_id", "params", "metrics") if k not in rec]
    if missing:
        return f"the record lacks key(s) {missing}"
    if rid is not None and rec["run_id"] != rid:
        return f"the record is run {rec['run_id']!r}'s, not {rid!r}'s"
    return _metrics_problem(rec["metrics"])


def _metrics_problem(metrics) -> str | None:
    if isinstance(metrics, list):
        for i, rec in enumerate(metrics):
            if (
                not isinstance(rec, dict)
                or not isinstance(rec.get("config"), dict)
                or not isinstance(rec.get("metrics"), dict)
            ):
                return f"metrics[{i}] must be a dict with dict entries 'config' and 'metrics', got {rec!r:.200}"
            if "seed" not in rec["config"]:
                return f"metrics[{i}]['config'] has no 'seed': {rec['config']!r:.200}"
    elif not isinstance(metrics, dict):
        return f"metrics must be a dict or a list of records, got {type(metrics).__name__}"
    return None


def config_hash(cfg: dict) -> str:
    """Hash of one training config without its seed (the key the tables group seeds under)."""
    return stable_hash({k: v for k, v in cfg.items() if k not in ("seed", "seeds")})


@lru_cache(maxsize=None)
def git_commit() -> str:
    """HEAD of the repository, with ``-dirty`` when tracked files differ from it; "unknown" outside git.
    The pipeline's own outputs (``results/``, README's generated results block) do not count: a study
    rewrites them while it runs, and they cannot change the numbers."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.root(), capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)results",
                ":(exclude)README.md",
            ],
            cwd=paths.root(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@lru_cache(maxsize=None)
def package_versions() -> dict:
    """Installed versions of the stack (read from package metadata: nothing is imported)."""
    out = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_metrics(path, params: dict, metrics) -> dict:
    """Write a run's metrics JSON (atomically) with its parameters, git commit and package versions.

    Called by the notebooks, with ``path`` the ``metrics_path`` parameter the pipeline injects.
    ``metrics`` is either a dict of whole-run results, or a list of per-training records
    ``{"config": {... "seed": s}, "metrics": {"clean_acc": 0.81, ...}}`` (what ``rpo.report`` reads).
    With ``path`` None (a notebook run by hand) nothing is written; the record is returned either way.
    """
    problem = _metrics_problem(metrics)
    if problem:
        raise ValueError(problem)
    record = {
        "schema": 1,
        "run_id": Path(path).name.removesuffix(".json") if path else None,
        "params": params,
        "metrics": metrics,
        "git_commit": git_commit(),
        "package_versions": package_versions(),
    }
    json.dumps(record, default=json_default)  # fail here, naming the value, before touching disk
    if path:
        atomic_write_json(path, record)
    return record
