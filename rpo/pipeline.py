"""The papermill pipeline: expand a profile into runs, execute them in parallel, resume, record failures.

A *run* is one execution of one notebook with one set of parameters (literals). Training runs carry a
``configs`` list (each config with its ``seeds``), so one kernel start and one TRL import (~10 s,
shared/notes/stack.md) are paid for several trainings. Files of a run, in ``papermill_runs/<profile>/``:

* ``<run-id>.ipynb``        the executed notebook; present only once the run succeeded (os.replace)
* ``<run-id>.json``         metrics, written by the notebook through :func:`write_metrics`
* ``<run-id>.failed.json``  error and traceback of the last failed attempt (removed on success)
* ``<run-id>.failed.ipynb`` the notebook as far as it got
* ``plan.json``             the expanded plan of the last ``rpo run`` (what the tables expect)

A run is *done* when both its ``.ipynb`` and ``.json`` exist; done runs are skipped (resume). Every file
is written to a temporary name and moved into place with ``os.replace``, so a killed pipeline leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from rpo.io import atomic_write_text  # noqa: F401  (re-exported: rpo.pipeline.atomic_write_text)
from rpo.profiles import Profile, get_profile

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in IPython tracebacks
REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
RUNS = REPO / "papermill_runs"

# Versions recorded with every run: the stack whose internals the trainer depends on.
VERSIONED = ("rpo", "torch", "transformers", "trl", "datasets", "accelerate", "peft", "tokenizers",
             "numpy", "pandas", "scikit-learn", "papermill", "jupytext", "alpaca-eval")


# ---------------------------------------------------------------- hashing, atomic writes, provenance

def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: equal parameters give equal strings (and hashes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def stable_hash(obj, n: int = 10) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def run_id(notebook: str, params: dict) -> str:
    """``<notebook>-<hash>``: a stable hash of the notebook name and its parameters (order-free)."""
    stem = Path(notebook).stem
    return f"{stem}-{stable_hash({'notebook': stem, 'params': params})}"


def config_hash(cfg: dict) -> str:
    """Hash of one training config without its seed (the key the tables group seeds under)."""
    return stable_hash({k: v for k, v in cfg.items() if k not in ("seed", "seeds")})


def _json_default(obj):
    # numpy / torch scalars and arrays, Paths: what notebooks typically hand over.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")


@lru_cache(maxsize=None)
def git_commit() -> str:
    """HEAD of the repository, with ``-dirty`` when tracked files differ from it; "unknown" outside git.
    The pipeline's own outputs (``results/``, README's generated results block) do not count: a study
    rewrites them while it runs, and they cannot change the numbers."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)README.md"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
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
    ``{"config": {... "seed": s}, "metrics": {"clean_acc": 0.81, ...}}`` (what ``rpo.tables`` reads).
    With ``path`` None (a notebook run by hand) nothing is written; the record is returned either way.
    """
    if isinstance(metrics, list):
        for i, rec in enumerate(metrics):
            if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict) \
                    or not isinstance(rec.get("metrics"), dict):
                raise ValueError(f"metrics[{i}] must be a dict with dict entries 'config' and 'metrics', "
                                 f"got {rec!r:.200}")
            if "seed" not in rec["config"]:
                raise ValueError(f"metrics[{i}]['config'] has no 'seed': {rec['config']!r:.200}")
    elif not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict or a list of records, got {type(metrics).__name__}")
    record = {
        "schema": 1,
        "run_id": Path(path).name.removesuffix(".json") if path else None,
        "params": params,
        "metrics": metrics,
        "git_commit": git_commit(),
        "package_versions": package_versions(),
    }
    json.dumps(record, default=_json_default)  # fail here, naming the value, before touching disk
    if path:
        atomic_write_json(path, record)
    return record


# ---------------------------------------------------------------- plan

@dataclass(frozen=True)
class Run:
    notebook: str           # stem in notebooks/
    params: dict
    stage: int = 0
    reads_runs: bool = False  # an analysis of earlier stages: re-executed when any of them executed

    @property
    def id(self) -> str:
        return run_id(self.notebook, self.params)


@dataclass
class Plan:
    profile: Profile
    seeds: dict                         # study name -> number of seeds
    grid: str = "full"
    runs: list[Run] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"profile": self.profile.name, "grid": self.grid, "seeds": self.seeds,
                "runs": [{"id": r.id, "notebook": r.notebook, "stage": r.stage, "params": r.params}
                         for r in self.runs]}


def expand(profile: Profile, seeds: int | None = None, only: str | None = None, grid: str = "full") -> Plan:
    """Every run of a profile. Configs requested by several studies are trained once, with the largest
    seed count any of them asks for; they are packed ``configs_per_run`` at a time, in study order."""
    n_seeds = {s.name: seeds or s.seeds for s in profile.studies}
    wanted: dict[str, dict] = {}            # config hash -> config, first-seen order
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
        params = {**profile.train_params, "configs": items[i:i + k]}
        if profile.train_command:
            params["train_command"] = profile.train_command
        runs.append(Run(profile.train_notebook, params, profile.train_stage))
    if only:
        runs = [r for r in runs if r.notebook == Path(only).stem]
        if not runs:
            names = sorted({s.notebook for s in profile.steps} | {profile.train_notebook})
            raise ValueError(f"--only {only!r} matches no notebook of profile {profile.name!r}: {names}")
    return Plan(profile, n_seeds, grid, runs)


# ---------------------------------------------------------------- status

def paths(run_dir, rid: str) -> dict:
    d = Path(run_dir)
    return {"ipynb": d / f"{rid}.ipynb", "json": d / f"{rid}.json", "tmp": d / f"{rid}.tmp.ipynb",
            "failed": d / f"{rid}.failed.json", "failed_ipynb": d / f"{rid}.failed.ipynb"}


def status(run_dir, rid: str) -> str:
    """"done" (ipynb and metrics present), "failed" (last attempt failed) or "pending"."""
    p = paths(run_dir, rid)
    if p["ipynb"].exists() and p["json"].exists():
        return "done"
    return "failed" if p["failed"].exists() else "pending"


# ---------------------------------------------------------------- execution

def check_kernel(kernel_name: str = "python3") -> str:
    """The interpreter ``kernel_name`` starts; raise if it is not this one (e.g. a user-level kernelspec
    shadowing the virtualenv's), because the notebooks would then run without the pinned stack."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as e:
        raise RuntimeError(f"no Jupyter kernel {kernel_name!r}: run `{sys.executable} -m ipykernel install "
                           f"--sys-prefix --name {kernel_name}`") from e
    exe = spec.argv[0]
    if exe in ("python", "python3", "{python}"):  # ipykernel's native spec: this interpreter
        return sys.executable
    if Path(exe).resolve().parent != Path(sys.executable).resolve().parent and \
            Path(exe).absolute().parent != Path(sys.executable).absolute().parent:
        raise RuntimeError(f"kernel {kernel_name!r} ({spec.resource_dir}) starts {exe}, not this interpreter "
                           f"{sys.executable}: run `{sys.executable} -m ipykernel install --sys-prefix "
                           f"--name {kernel_name}` (and remove the other kernelspec)")
    return exe


def set_worker_env(threads: int = 1) -> None:
    """Environment inherited by the kernels: one torch thread (tiny models), offline, quiet."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def execute(run: Run, run_dir, notebooks_dir=NOTEBOOKS, kernel_name: str = "python3",
            timeout_s: int | None = None) -> dict:
    """Execute one run with papermill; record success or failure. Never raises for a notebook error
    (it is written to ``<run-id>.failed.json``); returns ``{"id", "status", "seconds", "error"}``."""
    import jupytext
    import papermill

    rid, p = run.id, paths(run_dir, run.id)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    for stale in ("tmp", "json"):  # left by an attempt that was killed
        p[stale].unlink(missing_ok=True)
    source = Path(notebooks_dir) / f"{run.notebook}.py"
    start = time.time()
    try:
        if not source.exists():
            raise FileNotFoundError(f"notebook {source} does not exist")
        nb = jupytext.read(source)
        # injected only where the parameters cell declares them: the analysis notebooks read the runs
        # of *this* runs folder (a test's tmp folder, say), not the repository's
        injected = {"run_id": rid, "metrics_path": str(p["json"].resolve()),
                    "runs_root": str(Path(run_dir).resolve().parent)}
        params = {**run.params, **_declared(nb, injected)}
        papermill.execute_notebook(nb, str(p["tmp"]), parameters=params, kernel_name=kernel_name, language="python",
                                   cwd=str(source.parent), progress_bar=False, log_output=False,
                                   execution_timeout=timeout_s)
        if not p["json"].exists():  # a notebook that reports nothing still leaves a provenance record
            write_metrics(p["json"], run.params, {})
        rec = json.loads(p["json"].read_text())
        if not isinstance(rec, dict):
            raise ValueError(f"{p['json']}: the notebook wrote a {type(rec).__name__}, expected a JSON object")
        # a notebook that wrote its JSON by hand still gets the provenance write_metrics records
        for key, value in (("run_id", rid), ("params", run.params), ("git_commit", git_commit()),
                           ("package_versions", package_versions())):
            rec.setdefault(key, value)
        rec["pipeline"] = {"notebook": run.notebook, "seconds": round(time.time() - start, 2)}
        atomic_write_json(p["json"], rec)
        os.replace(p["tmp"], p["ipynb"])  # the run counts as done from this instant
        p["failed"].unlink(missing_ok=True)
        p["failed_ipynb"].unlink(missing_ok=True)
        return {"id": rid, "status": "done", "seconds": time.time() - start, "error": None}
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, the others go on
        record_failure(run, run_dir, e, time.time() - start)
        return {"id": rid, "status": "failed", "seconds": time.time() - start,
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"}


def _declared(nb, extra: dict) -> dict:
    """The entries of ``extra`` that the notebook's parameters cell declares (papermill warns about the
    others). A notebook without ``metrics_path`` gets a provenance-only record from :func:`execute`."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    src = cells[0].source if cells else ""
    return {k: v for k, v in extra.items() if re.search(rf"^{k}\s*[:=]", src, re.M)}


def _result(future, run: Run, run_dir) -> dict:
    """A worker's outcome; a worker that died (e.g. killed for memory: BrokenProcessPool) is recorded
    as a failure of its run, like a notebook error, and the others go on."""
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001
        record_failure(run, run_dir, e, seconds=0.0)
        return {"id": run.id, "status": "failed", "seconds": 0.0, "error": f"{type(e).__name__}: {e}"}


def record_failure(run: Run, run_dir, e: BaseException, seconds: float) -> None:
    p = paths(run_dir, run.id)
    err = {"run_id": run.id, "notebook": run.notebook, "params": run.params, "error_type": type(e).__name__,
           "error": str(e)[-4000:], "traceback": "".join(traceback.format_exception(e))[-20000:],
           "cell_traceback": _ANSI.sub("", "\n".join(getattr(e, "traceback", []) or []))[-20000:],
           "seconds": round(seconds, 2), "git_commit": git_commit(), "package_versions": package_versions()}
    atomic_write_json(p["failed"], err)
    if p["tmp"].exists():
        os.replace(p["tmp"], p["failed_ipynb"])


def _worker(args):
    run, run_dir, notebooks_dir, kernel_name, timeout_s, threads, fn = args
    set_worker_env(threads)
    return fn(run, run_dir, notebooks_dir, kernel_name, timeout_s)


def run_plan(plan: Plan, run_dir, *, jobs: int = 1, notebooks_dir=NOTEBOOKS, kernel_name: str = "python3",
             execute_fn=execute, progress: bool = True, force: bool = False) -> list[dict]:
    """Execute the plan's pending runs stage by stage, ``jobs`` at a time; skip done runs (resume).

    ``execute_fn(run, run_dir, notebooks_dir, kernel_name, timeout_s) -> dict`` is :func:`execute`;
    tests substitute a fake. With ``jobs == 1`` runs execute in this process (the kernel is still a
    child process), otherwise in a pool of spawned worker processes.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "plan.json", plan.to_json())
    prof = plan.profile
    results = []
    todo = [r for r in plan.runs if force or status(run_dir, r.id) != "done"]
    results += [{"id": r.id, "status": "skipped", "seconds": 0.0, "error": None}
                for r in plan.runs if r not in todo]
    # A notebook not written yet is reported (and its runs stay "not run" in the tables), not failed.
    absent = sorted({r.notebook for r in todo if not (Path(notebooks_dir) / f"{r.notebook}.py").exists()})
    if absent:
        n = sum(r.notebook in absent for r in todo)
        print(f"rpo run: {n} run(s) not executed: notebook(s) missing from {notebooks_dir}: "
              f"{', '.join(absent)}", file=sys.stderr)
        results += [{"id": r.id, "status": "absent", "seconds": 0.0, "error": f"notebooks/{r.notebook}.py missing"}
                    for r in todo if r.notebook in absent]
        todo = [r for r in todo if r.notebook not in absent]
    n_skipped = sum(r["status"] == "skipped" for r in results)
    bar = tqdm(total=n_skipped + len(todo), initial=n_skipped, desc=f"rpo run {prof.name}",
               unit="run", disable=not progress, dynamic_ncols=True)
    failed = 0
    executed = False
    try:
        for stage in sorted({r.stage for r in plan.runs if r.notebook not in absent}):
            stale = [r for r in plan.runs if r.stage == stage and r.reads_runs and r not in todo and executed
                     and r.notebook not in absent]
            if stale:  # their inputs changed in this call: refresh them
                results = [o for o in results if o["id"] not in {r.id for r in stale}]
                bar.n -= len(stale)
                bar.refresh()
            batch = [(r, run_dir, notebooks_dir, kernel_name, prof.timeout_s, prof.threads_per_job, execute_fn)
                     for r in todo + stale if r.stage == stage]
            executed |= bool(batch)
            if jobs <= 1:
                outcomes = map(_worker, batch)
                pool = None
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor, as_completed

                pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))
                futures = {pool.submit(_worker, b): b[0] for b in batch}
                outcomes = (_result(f, futures[f], run_dir) for f in as_completed(futures))
            try:
                for out in outcomes:
                    results.append(out)
                    if out["status"] == "failed":
                        failed += 1
                        bar.write(f"FAILED {out['id']}: {out['error']} (see {run_dir / out['id']}.failed.json)")
                    bar.set_postfix(failed=failed, stage=stage)
                    bar.update(1)
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return results


def run_dir_of(profile: str, grid: str = "full", runs_root=RUNS) -> Path:
    """Where a profile's runs live: ``papermill_runs/<profile>``, or ``<profile>-<grid>`` for a non-full
    grid, so that the CI grid's short trainings never stand in for the full study's cells."""
    return Path(runs_root) / (profile if grid == "full" else f"{profile}-{grid}")


def run_profile(profile: str, *, seeds: int | None = None, jobs: int | None = None, only: str | None = None,
                grid: str = "full", runs_root=RUNS, notebooks_dir=NOTEBOOKS, kernel_name: str = "python3",
                slurm: bool = False, progress: bool = True, force: bool = False) -> list[dict]:
    """``rpo run``: expand the profile and execute (locally, or on Slurm with ``slurm=True``)."""
    prof = get_profile(profile, grid)
    plan = expand(prof, seeds=seeds, only=only, grid=grid)
    run_dir = run_dir_of(prof.name, grid, runs_root)
    if slurm:
        return run_slurm(plan, run_dir, notebooks_dir=notebooks_dir, kernel_name=kernel_name, force=force)
    check_kernel(kernel_name)
    return run_plan(plan, run_dir, jobs=jobs or prof.jobs, notebooks_dir=notebooks_dir,
                    kernel_name=kernel_name, progress=progress, force=force)


def run_slurm(plan: Plan, run_dir, *, notebooks_dir=NOTEBOOKS, kernel_name: str = "python3",
              force: bool = False, **slurm_params) -> list[dict]:
    """Send the plan's pending runs to a Slurm queue with submitit, one job per run, stage by stage.
    The paper profiles' training notebook itself launches ``accelerate launch`` (ZeRO-3) per config."""
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("the --slurm backend needs submitit: `pip install rpo[cluster]` "
                           "(or `pip install submitit==1.5.4`)") from e
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "plan.json", plan.to_json())
    executor = submitit.AutoExecutor(folder=run_dir / "slurm")
    executor.update_parameters(**{"timeout_min": 24 * 60, "gpus_per_node": 8, "cpus_per_task": 32,
                                  **slurm_params})
    results = []
    todo = [r for r in plan.runs if force or status(run_dir, r.id) != "done"]
    for stage in sorted({r.stage for r in todo}):
        batch = [r for r in todo if r.stage == stage]
        jobs = [executor.submit(_worker, (r, run_dir, notebooks_dir, kernel_name, plan.profile.timeout_s,
                                          plan.profile.threads_per_job, execute)) for r in batch]
        for job in tqdm(jobs, desc=f"slurm stage {stage}", unit="run"):
            results.append(job.result())
    return results


def summarize(results: list[dict]) -> str:
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed", "absent")}
    return (f"{counts['done']} run(s) executed, {counts['skipped']} already done (skipped), "
            f"{counts['failed']} failed, {counts['absent']} not executed (notebook missing)")
