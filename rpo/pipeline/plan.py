"""The plan: a profile expanded into runs (one notebook execution each), and each run's files and status.

A *run* is one execution of one notebook with one set of parameters (literals). Training runs carry a
``configs`` list (each config with its ``seeds``), so one kernel start and one TRL import (~10 s,
shared/notes/stack.md) are paid for several trainings. Files of a run, in ``papermill_runs/<profile>/``:

* ``<run-id>.ipynb``        the executed notebook; present only once the run succeeded (os.replace)
* ``<run-id>.json``         metrics, written by the notebook through :func:`rpo.pipeline.provenance.write_metrics`
* ``<run-id>.failed.json``  error and traceback of the last failed attempt (removed on success)
* ``<run-id>.failed.ipynb`` the notebook as far as it got
* ``plan.json``             the expanded plan of the last ``rpo run`` (what the tables expect)

A run is *done* when both its ``.ipynb`` and ``.json`` exist; done runs are skipped (resume).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpo.pipeline.profiles import Profile
from rpo.pipeline.provenance import config_hash, run_id


@dataclass(frozen=True)
class Run:
    notebook: str  # stem in notebooks/
    params: dict
    stage: int = 0
    reads_runs: bool = False  # an analysis of earlier stages: re-executed when any of them executed

    @property
    def id(self) -> str:
        return run_id(self.notebook, self.params)


@dataclass
class Plan:
    profile: Profile
    seeds: dict  # study name -> number of seeds
    grid: str = "full"
    runs: list[Run] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "profile": self.profile.name,
            "grid": self.grid,
            "seeds": self.seeds,
            "runs": [{"id": r.id, "notebook": r.notebook, "stage": r.stage, "params": r.params} for r in self.runs],
        }


def expand(profile: Profile, seeds: int | None = None, only: str | None = None, grid: str = "full") -> Plan:
    """Every run of a profile. Configs requested by several studies are trained once, with the largest
    seed count any of them asks for; they are packed ``configs_per_run`` at a time, in study order."""
    n_seeds = {s.name: seeds or s.seeds for s in profile.studies}
    wanted: dict[str, dict] = {}  # config hash -> config, first-seen order
    count: dict[str, int] = {}
    for study in profile.studies:
        for cfg in study.configs:
            h = config_hash(cfg)
            wanted.setdefault(h, dict(cfg))
            count[h] = max(count.get(h, 0), n_seeds[study.name])
    runs = [Run(s.notebook, dict(s.params), s.stage, s.reads_runs) for s in profile.steps]
    items = [{**wanted[h], "seeds": list(range(count[h]))} for h in wanted]
    k = max(1, profile.configs_per_run)
    for i in range(0, len(items), k):
        params = {**profile.train_params, "configs": items[i : i + k]}
        if profile.train_command:
            params["train_command"] = profile.train_command
        runs.append(Run(profile.train_notebook, params, profile.train_stage))
    if only:
        runs = [r for r in runs if r.notebook == Path(only).stem]
        if not runs:
            names = sorted({s.notebook for s in profile.steps} | {profile.train_notebook})
            raise ValueError(f"--only {only!r} matches no notebook of profile {profile.name!r}: {names}")
    return Plan(profile, n_seeds, grid, runs)


def run_files(run_dir, rid: str) -> dict:
    d = Path(run_dir)
    return {
        "ipynb": d / f"{rid}.ipynb",
        "json": d / f"{rid}.json",
        "tmp": d / f"{rid}.tmp.ipynb",
        "failed": d / f"{rid}.failed.json",
        "failed_ipynb": d / f"{rid}.failed.ipynb",
    }


def status(run_dir, rid: str) -> str:
    """ "done" (ipynb and metrics present), "failed" (last attempt failed) or "pending"."""
    p = run_files(run_dir, rid)
    if p["ipynb"].exists() and p["json"].exists():
        return "done"
    return "failed" if p["failed"].exists() else "pending"
