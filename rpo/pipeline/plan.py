"""The plan: a profile expanded into runs (one notebook execution each), and each run's files and status.

A *run* is one execution of one notebook with one set of parameters (literals). Training runs carry a
``configs`` list (each config with its ``seeds``), so one kernel start and one TRL import (~10 s,
shared/notes/stack.md) are paid for several trainings. Files of a run, in ``papermill_runs/<profile>/``:

* ``<run-id>.ipynb``        the executed notebook; present only once the run succeeded (os.replace)
* ``<run-id>.json``         metrics, written by the notebook through :func:`rpo.pipeline.provenance.write_metrics`
* ``<run-id>.failed.json``  error and traceback of the last failed attempt (removed on success)
* ``<run-id>.failed.ipynb`` the notebook as far as it got
* ``plan.json``             the expanded plan of the last ``rpo run`` (what the tables expect)

A run is *done* when its ``.ipynb`` exists and its ``.json`` is a whole metrics record of this run
(:func:`rpo.pipeline.provenance.record_problem`); done runs are skipped (resume). A run whose JSON is
unreadable, partial or another run's is *corrupt* and executed again.

A run id (:func:`rpo.pipeline.provenance.run_id`) hashes the notebook's name and parameters, the
notebook file's content and the rpo package's sources (:func:`~rpo.pipeline.provenance.code_version`):
editing a notebook or the library re-executes what it affects instead of reusing runs of the old code.
``plan.json`` lists the ids the whole plan expects (``expected_run_ids``); the tables read only those,
so runs of older code left in the folder never stand in for the current ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpo import paths
from rpo.io import loads
from rpo.pipeline.profiles import Profile
from rpo.pipeline.provenance import code_version, config_hash, record_problem, run_id


@dataclass(frozen=True)
class Run:
    notebook: str  # stem in notebooks/
    params: dict
    stage: int = 0
    reads_runs: bool = False  # an analysis of earlier stages: re-executed when any of them executed
    code: dict | None = None  # provenance.code_version of the notebook (None: the id hashes name + params only)

    @property
    def id(self) -> str:
        return run_id(self.notebook, self.params, self.code)


@dataclass
class Plan:
    profile: Profile
    seeds: dict  # study name -> number of seeds
    grid: str = "full"
    runs: list[Run] = field(default_factory=list)
    expected_ids: list[str] | None = None  # every id of the whole plan (``runs`` may be an --only subset)

    def to_json(self) -> dict:
        return {
            "profile": self.profile.name,
            "grid": self.grid,
            "seeds": self.seeds,
            "runs": [{"id": r.id, "notebook": r.notebook, "stage": r.stage, "params": r.params} for r in self.runs],
            "expected_run_ids": sorted(
                self.expected_ids if self.expected_ids is not None else (r.id for r in self.runs)
            ),
        }


def expand(
    profile: Profile, seeds: int | None = None, only: str | None = None, grid: str = "full", notebooks_dir=None
) -> Plan:
    """Every run of a profile. Configs requested by several studies are trained once, with the largest
    seed count any of them asks for; they are packed ``configs_per_run`` at a time, in study order. Run
    ids cover the notebooks in ``notebooks_dir`` (default: the project's) and the library's sources."""
    nb_dir = Path(paths.notebooks() if notebooks_dir is None else notebooks_dir)
    codes: dict[str, dict] = {}

    def code(notebook: str) -> dict:
        return codes.setdefault(notebook, code_version(nb_dir / f"{notebook}.py"))

    n_seeds = {s.name: seeds or s.seeds for s in profile.studies}
    wanted: dict[str, dict] = {}  # config hash -> config, first-seen order
    count: dict[str, int] = {}
    for study in profile.studies:
        for cfg in study.configs:
            h = config_hash(cfg)
            wanted.setdefault(h, dict(cfg))
            count[h] = max(count.get(h, 0), n_seeds[study.name])
    runs = [Run(s.notebook, dict(s.params), s.stage, s.reads_runs, code(s.notebook)) for s in profile.steps]
    items = [{**wanted[h], "seeds": list(range(count[h]))} for h in wanted]
    k = max(1, profile.configs_per_run)
    for i in range(0, len(items), k):
        params = {**profile.train_params, "configs": items[i : i + k]}
        if profile.train_command:
            params["train_command"] = profile.train_command
        runs.append(Run(profile.train_notebook, params, profile.train_stage, code=code(profile.train_notebook)))
    expected = [r.id for r in runs]
    if only:
        runs = [r for r in runs if r.notebook == Path(only).stem]
        if not runs:
            names = sorted({s.notebook for s in profile.steps} | {profile.train_notebook})
            raise ValueError(f"--only {only!r} matches no notebook of profile {profile.name!r}: {names}")
    return Plan(profile, n_seeds, grid, runs, expected)


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
    """ "done" (ipynb and a whole metrics record present), "corrupt" (ipynb present, metrics JSON
    unreadable, partial or another run's: :func:`problem`), "failed" (last attempt failed) or "pending"."""
    p = run_files(run_dir, rid)
    if p["ipynb"].exists():
        if problem(run_dir, rid) is None:
            return "done"
        return "corrupt"
    return "failed" if p["failed"].exists() else "pending"


def problem(run_dir, rid: str) -> str | None:
    """Why the metrics JSON of a run cannot count (None when it can): absent, bad JSON, or a record that
    :func:`rpo.pipeline.provenance.record_problem` refuses."""
    path = run_files(run_dir, rid)["json"]
    if not path.exists():
        return f"{path.name} is missing"
    try:
        rec = loads(path.read_text(encoding="utf-8"), path)
    except (ValueError, UnicodeDecodeError) as e:
        return str(e)
    why = record_problem(rec, rid)
    return None if why is None else f"{path}: {why}"
