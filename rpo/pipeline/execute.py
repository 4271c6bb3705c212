"""Execution: run a plan's pending runs with papermill, in parallel, resumable, recording failures.

Every file is written to a temporary name and moved into place with ``os.replace``, so a killed pipeline
leaves either the old file or the new one, never half of one. See :mod:`rpo.pipeline.plan` for a run's files.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

from rpo import paths
from rpo.io import atomic_write_json
from rpo.pipeline import guard
from rpo.pipeline.plan import Plan, Run, run_files, status
from rpo.pipeline.provenance import git_commit, package_versions, write_metrics

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in IPython tracebacks


def check_kernel(kernel_name: str = "python3") -> str:
    """The interpreter ``kernel_name`` starts; raise if it is not this one (e.g. a user-level kernelspec
    shadowing the virtualenv's), because the notebooks would then run without the pinned stack."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel as e:
        raise RuntimeError(
            f"no Jupyter kernel {kernel_name!r}: run `{sys.executable} -m ipykernel install "
            f"--sys-prefix --name {kernel_name}`"
        ) from e
    exe = spec.argv[0]
    if exe in ("python", "python3", "{python}"):  # ipykernel's native spec: this interpreter
        return sys.executable
    if (
        Path(exe).resolve().parent != Path(sys.executable).resolve().parent
        and Path(exe).absolute().parent != Path(sys.executable).absolute().parent
    ):
        raise RuntimeError(
            f"kernel {kernel_name!r} ({spec.resource_dir}) starts {exe}, not this interpreter "
            f"{sys.executable}: run `{sys.executable} -m ipykernel install --sys-prefix "
            f"--name {kernel_name}` (and remove the other kernelspec)"
        )
    return exe


#: the CPU kernels of every run on x86-64: where the CPU has AVX-512, torch, MKL and oneDNN otherwise take
#: kernels that round differently from the AVX2 ones, and every trained number of the toy study moves (on an
#: AVX-512 machine, unpinned: DPO's Table 2 win rate 0.551 against the committed 0.545; pinned: 0.545 exactly);
#: numpy's and scipy's OpenBLAS likewise pick SkylakeX kernels there (Haswell on an AVX2 Intel machine)
CPU_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}


def set_worker_env(threads: int = 1) -> None:
    """Environment inherited by the kernels: one torch thread (tiny models), the same CPU kernels on every
    x86-64 machine (:data:`CPU_KERNELS`; a value already set is kept), offline, quiet."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        for key, value in CPU_KERNELS.items():
            os.environ.setdefault(key, value)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def kernel_config():
    """traitlets config for the kernel of one papermill execution: IPC transport (Unix sockets) instead of
    TCP on localhost, so ipykernel has nothing to warn about ("Kernel is running over TCP without
    encryption", once per run in ``rpo run``'s output) and no port is opened. The sockets get a fresh
    name in Jupyter's runtime folder (jupyter_client's default, ``kernel-ipc-<n>`` in the working
    directory, is shared by parallel kernels beside the same notebook, which then read each other's
    messages); the kernel manager removes them at shutdown. A runtime folder too deep for the ~100-character
    limit of a Unix socket path falls back to the temporary folder, and that to TCP (whose warning the log
    level below then keeps out of the output)."""
    import tempfile
    import uuid

    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    # The kernel's own log goes to the terminal, not the notebook: keep only its critical messages. Its
    # errors are noise there (jupyter_client interrupts every kernel it shuts down, and one still busy
    # with a message logs "KeyboardInterrupt caught in kernel", often on a loaded machine); a notebook's
    # errors are in the notebook and in <run-id>.failed.json.
    config = Config({"NotebookClient": {"extra_arguments": ["--IPKernelApp.log_level=CRITICAL"]}})
    name = f"rpo-kernel-{uuid.uuid4().hex}-ipc"  # sockets: <name>-1 ... <name>-5
    for folder in (Path(jupyter_runtime_dir()).resolve(), Path(tempfile.gettempdir()).resolve()):
        if len(str(folder / name)) <= 100:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            config.KernelManager = Config({"transport": "ipc", "ip": str(folder / name)})
            break
    return config


def execute(run: Run, run_dir, notebooks_dir=None, kernel_name: str = "python3", timeout_s: int | None = None) -> dict:
    """Execute one run with papermill; record success or failure. Never raises for a notebook error
    (it is written to ``<run-id>.failed.json``); returns ``{"id", "status", "seconds", "error"}``."""
    import jupytext
    import papermill

    rid, p = run.id, run_files(run_dir, run.id)
    notebooks_dir = paths.notebooks() if notebooks_dir is None else notebooks_dir
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
        injected = {
            "run_id": rid,
            "metrics_path": str(p["json"].resolve()),
            "runs_root": str(Path(run_dir).resolve().parent),
        }
        params = {**run.params, **_declared(nb, injected)}
        papermill.execute_notebook(
            nb,
            str(p["tmp"]),
            parameters=params,
            kernel_name=kernel_name,
            language="python",
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout_s,
            config=kernel_config(),
        )
        if not p["json"].exists():  # a notebook that reports nothing still leaves a provenance record
            write_metrics(p["json"], run.params, {})
        rec = json.loads(p["json"].read_text())
        if not isinstance(rec, dict):
            raise ValueError(f"{p['json']}: the notebook wrote a {type(rec).__name__}, expected a JSON object")
        # a notebook that wrote its JSON by hand still gets the provenance write_metrics records
        for key, value in (
            ("run_id", rid),
            ("params", run.params),
            ("git_commit", git_commit()),
            ("package_versions", package_versions()),
        ):
            rec.setdefault(key, value)
        rec["pipeline"] = {"notebook": run.notebook, "seconds": round(time.time() - start, 2)}
        atomic_write_json(p["json"], rec)
        os.replace(p["tmp"], p["ipynb"])  # the run counts as done from this instant
        p["failed"].unlink(missing_ok=True)
        p["failed_ipynb"].unlink(missing_ok=True)
        return {"id": rid, "status": "done", "seconds": time.time() - start, "error": None}
    except Exception as e:  # noqa: BLE001 - any failure of one run is recorded, the others go on
        record_failure(run, run_dir, e, time.time() - start)
        return {
            "id": rid,
            "status": "failed",
            "seconds": time.time() - start,
            "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}",
        }


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
    p = run_files(run_dir, run.id)
    err = {
        "run_id": run.id,
        "notebook": run.notebook,
        "params": run.params,
        "error_type": type(e).__name__,
        "error": str(e)[-4000:],
        "traceback": "".join(traceback.format_exception(e))[-20000:],
        "cell_traceback": _ANSI.sub("", "\n".join(getattr(e, "traceback", []) or []))[-20000:],
        "seconds": round(seconds, 2),
        "git_commit": git_commit(),
        "package_versions": package_versions(),
    }
    atomic_write_json(p["failed"], err)
    if p["tmp"].exists():
        os.replace(p["tmp"], p["failed_ipynb"])


def _worker(args):
    run, run_dir, notebooks_dir, kernel_name, timeout_s, threads, fn = args
    # The kernel (a child process) inherits this environment; the caller's is given back after the run,
    # because with jobs=1 this is the caller's own process: left set, the pins reached its later children
    # (a test's subprocess on AVX2 kernels, resumed in a parent whose torch had already chosen AVX-512).
    before = dict(os.environ)
    set_worker_env(threads)
    try:
        return fn(run, run_dir, notebooks_dir, kernel_name, timeout_s)
    finally:
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)


def run_plan(plan: Plan, run_dir, **kwargs) -> list[dict]:
    """:func:`_run_plan` (below: the arguments) holding the runs folder's lock (a second ``rpo run`` on it
    fails with :class:`rpo.pipeline.guard.RunLocked`, naming the holder), after discarding what an
    interrupted run left there; SIGTERM / SIGHUP stop it like Ctrl-C, and its workers and their kernels
    exit with it (:mod:`rpo.pipeline.guard`)."""
    run_dir = Path(run_dir)
    with guard.run_lock(run_dir), guard.signals_raise():
        gone = guard.discard_leftovers(run_dir)
        if gone:
            names = ", ".join(p.name for p in gone[:5]) + (" ..." if len(gone) > 5 else "")
            print(
                f"rpo run: discarded {len(gone)} file(s) an interrupted run left in {run_dir}: {names}", file=sys.stderr
            )
        return _run_plan(plan, run_dir, **kwargs)


def _run_plan(
    plan: Plan,
    run_dir,
    *,
    jobs: int = 1,
    notebooks_dir=None,
    kernel_name: str = "python3",
    execute_fn=execute,
    progress: bool = True,
    force: bool = False,
    dispatch=None,
) -> list[dict]:
    """Execute the plan's pending runs stage by stage, ``jobs`` at a time; skip done runs (resume).

    ``execute_fn(run, run_dir, notebooks_dir, kernel_name, timeout_s) -> dict`` is :func:`execute`;
    tests substitute a fake. With ``jobs == 1`` runs execute in this process (the kernel is still a
    child process), otherwise in a pool of spawned worker processes. ``dispatch(batch)`` replaces both:
    it takes one stage's :func:`_worker` argument tuples and yields their outcomes as they finish
    (:mod:`rpo.pipeline.slurm`: one Slurm job each).
    """
    from tqdm.auto import tqdm

    notebooks_dir = paths.notebooks() if notebooks_dir is None else notebooks_dir
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "plan.json", plan.to_json())
    prof = plan.profile
    results = []
    todo = [r for r in plan.runs if force or status(run_dir, r.id) != "done"]
    results += [{"id": r.id, "status": "skipped", "seconds": 0.0, "error": None} for r in plan.runs if r not in todo]
    # A notebook not written yet is reported (and its runs stay "not run" in the tables), not failed.
    absent = sorted({r.notebook for r in todo if not (Path(notebooks_dir) / f"{r.notebook}.py").exists()})
    if absent:
        n = sum(r.notebook in absent for r in todo)
        print(
            f"rpo run: {n} run(s) not executed: notebook(s) missing from {notebooks_dir}: {', '.join(absent)}",
            file=sys.stderr,
        )
        results += [
            {"id": r.id, "status": "absent", "seconds": 0.0, "error": f"notebooks/{r.notebook}.py missing"}
            for r in todo
            if r.notebook in absent
        ]
        todo = [r for r in todo if r.notebook not in absent]
    n_skipped = sum(r["status"] == "skipped" for r in results)
    bar = tqdm(
        total=n_skipped + len(todo),
        initial=n_skipped,
        desc=f"rpo run {prof.name}",
        unit="run",
        smoothing=0,  # ETA from the average over all runs so far: runs differ (a training ~1 min, analyses s)
        disable=not progress,
        dynamic_ncols=True,
    )
    failed = 0
    executed = False
    try:
        for stage in sorted({r.stage for r in plan.runs if r.notebook not in absent}):
            stale = [
                r
                for r in plan.runs
                if r.stage == stage and r.reads_runs and r not in todo and executed and r.notebook not in absent
            ]
            if stale:  # their inputs changed in this call: refresh them
                results = [o for o in results if o["id"] not in {r.id for r in stale}]
                bar.n -= len(stale)
                bar.refresh()
            batch = [
                (r, run_dir, notebooks_dir, kernel_name, prof.timeout_s, prof.threads_per_job, execute_fn)
                for r in todo + stale
                if r.stage == stage
            ]
            executed |= bool(batch)
            pool = None
            if dispatch is not None:
                outcomes = dispatch(batch)
            elif jobs <= 1:
                outcomes = map(_worker, batch)
                pool = None
            else:
                import multiprocessing as mp
                from concurrent.futures import ProcessPoolExecutor, as_completed

                pool = ProcessPoolExecutor(
                    max_workers=jobs,
                    mp_context=mp.get_context("spawn"),
                    initializer=guard.worker_init,  # no orphans: a worker exits when this process is gone
                    initargs=(os.getpid(),),
                )
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
            except BaseException:  # stopped (Ctrl-C, SIGTERM) or broken: the workers and their kernels exit now
                if pool is not None:
                    guard.stop_pool(pool)
                    pool = None
                raise
            finally:
                if hasattr(outcomes, "close"):  # a dispatcher stopped early cancels what it still runs
                    outcomes.close()
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
    return results


def summarize(results: list[dict]) -> str:
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed", "absent")}
    return (
        f"{counts['done']} run(s) executed, {counts['skipped']} already done (skipped), "
        f"{counts['failed']} failed, {counts['absent']} not executed (notebook missing)"
    )
