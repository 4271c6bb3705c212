"""The papermill pipeline: profiles (:mod:`~rpo.pipeline.profiles`: which notebooks run with which
configs), provenance (:mod:`~rpo.pipeline.provenance`: run ids, commits, versions, metrics records), the
plan (:mod:`~rpo.pipeline.plan`), local execution (:mod:`~rpo.pipeline.execute`) and Slurm
(:mod:`~rpo.pipeline.slurm`). ``rpo run`` is :func:`run_profile`."""

from rpo.io import atomic_write_json, atomic_write_text
from rpo.paths import run_dir as run_dir_of
from rpo.pipeline.execute import check_kernel, execute, record_failure, run_plan, set_worker_env, summarize
from rpo.pipeline.plan import Plan, Run, expand, run_files, status
from rpo.pipeline.profiles import GRIDS, PROFILES, get_profile
from rpo.pipeline.provenance import (
    canonical_json,
    config_hash,
    git_commit,
    package_versions,
    run_id,
    stable_hash,
    write_metrics,
)
from rpo.pipeline.run import run_profile

__all__ = [
    "GRIDS",
    "PROFILES",
    "Plan",
    "Run",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "check_kernel",
    "config_hash",
    "execute",
    "expand",
    "get_profile",
    "git_commit",
    "package_versions",
    "record_failure",
    "run_dir_of",
    "run_files",
    "run_id",
    "run_plan",
    "run_profile",
    "set_worker_env",
    "stable_hash",
    "status",
    "summarize",
    "write_metrics",
]
