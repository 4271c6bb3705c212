"""Faults and bad input in the pipeline and the tables: run ids that follow the code, corrupt runs executed
again, leftovers of a killed run discarded, one ``rpo run`` per folder, workers (and kernels) that exit
with ``rpo run``, and ``rpo tables`` that never replaces results resting on more runs. Fake executors
except one real papermill execution (its kernels must exit on SIGTERM)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pipeline_helpers as helpers
import pytest

from rpo.pipeline import Plan, Run, expand, run_files, run_plan, status, write_metrics
from rpo.pipeline.guard import LOCK_NAME, RunLocked, _pid_alive
from rpo.pipeline.profiles import Profile, Study, config
from rpo.pipeline.provenance import library_hash
from rpo.report.build import build
from rpo.report.refusal import ResultsWouldShrink

ROOT = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent


def profile(seeds=2, name="unit"):
    study = Study("t", "T", (config(method="dpo"), config(method="dpo", robust=True)), seeds, ("label",), ("acc",))
    return Profile(name, "toy", "train", {"lr": 0.1}, (study,))


def notebooks(tmp_path, text="x = 1\n"):
    nbs = tmp_path / "nbs"
    nbs.mkdir(exist_ok=True)
    (nbs / "train.py").write_text(text)
    return nbs


def calls(run_dir):
    log = Path(run_dir) / "calls.log"
    return log.read_text().split() if log.exists() else []


def wait_for(predicate, timeout_s, what):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


# ---- run ids follow the code ------------------------------------------------------------------------------------
def test_editing_the_notebook_changes_the_run_id(tmp_path):
    nbs = notebooks(tmp_path)
    before = [r.id for r in expand(profile(), notebooks_dir=nbs).runs]
    (nbs / "train.py").write_text("x = 2\n")
    after = [r.id for r in expand(profile(), notebooks_dir=nbs).runs]
    assert before != after and len(after) == len(before)


def test_editing_the_library_changes_the_run_id(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "rpo", copy / "rpo", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "rpo" / "core" / "em.py").write_text((copy / "rpo" / "core" / "em.py").read_text() + "\n# edited\n")
    code = "from rpo.pipeline.provenance import library_hash; print(library_hash())"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    theirs = subprocess.run([sys.executable, "-c", code], env=env, cwd=copy, capture_output=True, text=True, check=True)
    assert theirs.stdout.strip() != library_hash()
    nbs = notebooks(tmp_path)
    assert all(r.code == {"notebook": r.code["notebook"], "rpo": library_hash()} for r in expand(profile()).runs)
    assert all(r.code["notebook"] for r in expand(profile(), notebooks_dir=nbs).runs)


# ---- corrupt runs are executed again ----------------------------------------------------------------------------
CORRUPTIONS = {
    "bad-json": lambda rec: "{not json",
    "missing-metrics": lambda rec: json.dumps({k: v for k, v in rec.items() if k != "metrics"}),
    "another-runs-record": lambda rec: json.dumps({**rec, "run_id": "train-0000000000"}),
    "config-without-seed": lambda rec: json.dumps(
        {**rec, "metrics": [{"config": {"method": "dpo"}, "metrics": {"acc": 1.0}}]}
    ),
    "not-an-object": lambda rec: "[1, 2]",
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_a_corrupt_run_is_executed_again(tmp_path, corrupt):
    nbs, run_dir = notebooks(tmp_path), tmp_path / "runs"
    plan = expand(profile(), notebooks_dir=nbs)
    run_plan(plan, run_dir, execute_fn=helpers.fast_execute, progress=False, notebooks_dir=nbs)
    rid = plan.runs[0].id
    path = run_files(run_dir, rid)["json"]
    path.write_text(CORRUPTIONS[corrupt](json.loads(path.read_text())))
    assert status(run_dir, rid) == "corrupt"
    res = run_plan(plan, run_dir, execute_fn=helpers.fast_execute, progress=False, notebooks_dir=nbs)
    assert [r["status"] for r in res if r["id"] == rid] == ["done"] and calls(run_dir).count(rid) == 2
    assert status(run_dir, rid) == "done"


# ---- what a killed run leaves -----------------------------------------------------------------------------------
def test_leftovers_of_a_killed_run_are_discarded(tmp_path, capsys):
    nbs, run_dir = notebooks(tmp_path), tmp_path / "runs"
    plan = expand(profile(), notebooks_dir=nbs)
    run_dir.mkdir()
    rid = plan.runs[0].id
    left = [run_dir / f".{rid}.json.k3j2.tmp", run_dir / f"{rid}.tmp.ipynb", run_dir / "train-0123456789.json"]
    kept = [run_dir / "train-0123456789.failed.json", run_dir / "notes.txt"]
    for p in left + kept:
        p.write_text("{}")
    run_plan(plan, run_dir, execute_fn=helpers.fast_execute, progress=False, notebooks_dir=nbs)
    assert not any(p.exists() for p in left) and all(p.exists() for p in kept)
    assert "discarded 3 file(s) an interrupted run left" in capsys.readouterr().err


# ---- one rpo run per folder --------------------------------------------------------------------------------------
def test_a_second_run_on_the_folder_is_refused_naming_the_holder(tmp_path):
    nbs, run_dir = notebooks(tmp_path), tmp_path / "runs"
    code = (
        "import sys, time\nfrom rpo.pipeline.guard import run_lock\n"
        f"with run_lock({str(run_dir)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"in use by another `rpo run` \(pid {holder.pid} on "):
            run_plan(expand(profile(), notebooks_dir=nbs), run_dir, execute_fn=helpers.fast_execute, progress=False)
        assert not calls(run_dir)  # nothing ran
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_run_is_taken_over(tmp_path, capsys):
    import socket

    nbs, run_dir = notebooks(tmp_path), tmp_path / "runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    plan = expand(profile(), notebooks_dir=nbs)
    run_plan(plan, run_dir, execute_fn=helpers.fast_execute, progress=False, notebooks_dir=nbs)
    assert f"taking over the lock of pid {dead.pid}" in capsys.readouterr().err
    assert len(calls(run_dir)) == len(plan.runs)


# ---- rpo run stops its workers ----------------------------------------------------------------------------------
def start_pool_run(tmp_path, execute="helpers.slow_execute", plan_code=None):
    """``rpo run``'s loop (run_plan, two workers) in a subprocess; returns (process, runs folder)."""
    nbs, run_dir = notebooks(tmp_path), tmp_path / "runs"
    plan_code = plan_code or (
        "plan = Plan(Profile('sig', 'toy', 'train', {}, ()), {}, runs=[Run('train', {'x': 1}), Run('train', {'x': 2})])"
    )
    code = (
        f"import sys\nsys.path.insert(0, {str(HELPERS)!r})\nimport pipeline_helpers as helpers\n"
        "from rpo.pipeline import Plan, Run, run_plan\nfrom rpo.pipeline.profiles import Profile\n"
        f"{plan_code}\n"
        f"run_plan(plan, {str(run_dir)!r}, jobs=2, progress=False, notebooks_dir={str(nbs)!r}"
        + (f", execute_fn={execute})" if execute else ")")
    )
    # A shell that starts the suite in the background (`cmd &` without job control) hands SIGINT down ignored,
    # and Python then never installs its Ctrl-C handler: give the child Ctrl-C as a terminal would.
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return proc, run_dir


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_workers_exit_with_rpo_run_and_their_leftovers_are_discarded(tmp_path, sig):
    proc, run_dir = start_pool_run(tmp_path)
    try:
        wait_for(lambda: len(list(run_dir.glob("worker-*.pid"))) == 2, 120, "two workers")
        workers = [int(p.read_text()) for p in run_dir.glob("worker-*.pid")]
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not any(_pid_alive(pid) for pid in workers), 30, f"workers {workers} to exit")
    assert not list(run_dir.glob("finished-*"))
    # the next run finds the lock free (or takes a dead one over) and discards the half-written files
    plan = Plan(Profile("sig", "toy", "train", {}, ()), {}, runs=[Run("train", {"x": 1}), Run("train", {"x": 2})])
    run_plan(plan, run_dir, execute_fn=helpers.fast_execute, progress=False, notebooks_dir=tmp_path / "nbs")
    assert not list(run_dir.glob("*.tmp.ipynb")) and not list(run_dir.glob(".*.tmp"))
    assert all(status(run_dir, r.id) == "done" for r in plan.runs)


SLEEPY_NB = """# %% tags=["parameters"]
x = 1
pid_dir = None

# %%
import os, pathlib, time
pathlib.Path(pid_dir, f"kernel-{os.getpid()}.pid").write_text(str(os.getpid()))
time.sleep(120)
"""


@pytest.mark.slow
def test_kernels_exit_when_rpo_run_is_terminated(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    runtime = Path(tempfile.mkdtemp(prefix="rt-"))  # short: a kernel's Unix socket path has ~100 characters
    plan_code = (
        f"plan = Plan(Profile('sig', 'toy', 'train', {{}}, ()), {{}}, "
        f"runs=[Run('train', {{'x': i, 'pid_dir': {str(pids)!r}}}) for i in (1, 2)])"
    )
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    try:
        proc, _ = start_pool_run(tmp_path, execute=None, plan_code=plan_code)
        (tmp_path / "nbs" / "train.py").write_text(SLEEPY_NB)
        try:
            wait_for(lambda: len(list(pids.glob("kernel-*.pid"))) == 2, 300, "two kernels")
            kernels = [int(p.read_text()) for p in pids.glob("kernel-*.pid")]
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.wait()
        wait_for(lambda: not any(_pid_alive(pid) for pid in kernels), 30, f"kernels {kernels} to exit")
    finally:
        del os.environ["JUPYTER_RUNTIME_DIR"]
        shutil.rmtree(runtime, ignore_errors=True)


# ---- rpo tables never destroys results ----------------------------------------------------------------------------
def built(tmp_path, seeds=2):
    """A finished run folder of ``profile()`` and the results built from it."""
    nbs, runs_root = notebooks(tmp_path), tmp_path / "runs"
    plan = expand(profile(seeds), notebooks_dir=nbs)
    run_plan(plan, runs_root / "unit", execute_fn=helpers.fast_execute, progress=False, notebooks_dir=nbs)
    build(profile(seeds), runs_root=runs_root, results_dir=tmp_path / "results", figures=False)
    return plan, runs_root, tmp_path / "results"


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def test_tables_from_fewer_runs_are_refused_naming_the_missing_runs(tmp_path):
    plan, runs_root, results = built(tmp_path)
    before = snapshot(results)
    gone = plan.runs[1].id
    run_files(runs_root / "unit", gone)["ipynb"].unlink()
    with pytest.raises(ResultsWouldShrink) as e:
        build(profile(), runs_root=runs_root, results_dir=results, figures=False)
    assert snapshot(results) == before  # nothing written
    assert "2 -> 0 seed(s)" in str(e.value) and f"{gone} (pending)" in str(e.value) and "--force" in str(e.value)
    build(profile(), runs_root=runs_root, results_dir=results, figures=False, force=True)
    assert snapshot(results) != before


def test_a_corrupt_run_is_named_in_the_refusal(tmp_path):
    plan, runs_root, results = built(tmp_path)
    rid = plan.runs[0].id
    run_files(runs_root / "unit", rid)["json"].write_text("{half")
    with pytest.raises(ResultsWouldShrink, match=rf"{rid} \(corrupt: .*not valid JSON"):
        build(profile(), runs_root=runs_root, results_dir=results, figures=False)


def test_tables_of_another_grid_are_refused(tmp_path):
    plan, runs_root, results = built(tmp_path)
    shutil.copytree(runs_root / "unit", runs_root / "unit-reduced")
    with pytest.raises(ResultsWouldShrink, match=r"holds profile 'unit', grid 'full', not 'unit', grid 'reduced'"):
        build(profile(), grid="reduced", runs_root=runs_root, results_dir=results, figures=False)


def test_more_seeds_are_no_shrinkage(tmp_path):
    plan, runs_root, results = built(tmp_path, seeds=1)
    nbs = tmp_path / "nbs"
    run_plan(
        expand(profile(3), notebooks_dir=nbs),
        runs_root / "unit",
        execute_fn=helpers.fast_execute,
        progress=False,
        notebooks_dir=nbs,
    )
    manifest = build(profile(3), runs_root=runs_root, results_dir=results, figures=False)
    assert all(c["n"] == 3 for c in manifest["tables"]["t"]["cells"])


def test_rpo_tables_on_a_fresh_clone_exits_non_zero_and_touches_nothing(tmp_path, monkeypatch, capsys):
    from rpo.cli import main

    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "results", clone / "results", ignore=shutil.ignore_patterns("notebooks"))
    shutil.copy(ROOT / "README.md", clone / "README.md")
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    (clone / "notebooks").mkdir()
    before = {**snapshot(clone / "results"), "README.md": (clone / "README.md").read_bytes()}
    monkeypatch.setenv("RPO_HOME", str(clone))
    assert main(["tables"]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and "no runs in" in err and "--force" in err
    assert {**snapshot(clone / "results"), "README.md": (clone / "README.md").read_bytes()} == before
    assert not (clone / "papermill_runs").exists()


def test_write_metrics_names_a_bad_record(tmp_path):
    with pytest.raises(ValueError, match=r"metrics\[1\]\['config'\] has no 'seed'"):
        write_metrics(tmp_path / "m.json", {}, [{"config": {"seed": 0}, "metrics": {}}, {"config": {}, "metrics": {}}])
    assert not (tmp_path / "m.json").exists()
