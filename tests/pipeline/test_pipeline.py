"""The papermill pipeline: run ids, plan expansion, resume, failure records, atomic writes.

Most tests use a fake executor (no kernel); three real papermill executions of a tiny parameterised
jupytext notebook cover the real path (~2-4 s each).
"""

import json
import os
import sys
from pathlib import Path

import pytest

from rpo import pipeline
from rpo.pipeline import Plan, Run, atomic_write_text, expand, run_id, run_plan, status
from rpo.pipeline.profiles import FigureSpec, Profile, Study, config, get_profile

TINY_NB = """# %% tags=["parameters"]
x = 1
fail = False
run_id = None
metrics_path = None

# %%
import os
from rpo.pipeline import write_metrics

# %%
assert not fail, "asked to fail"
write_metrics(metrics_path, {"x": x}, {"y": x * 2, "omp": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd()})
"""


def small_profile(seeds=2, per_run=1):
    """Two studies sharing one config (R-DPO at noise 0.2)."""
    a = Study(
        "ta",
        "A",
        (config(method="dpo"), config(method="dpo", robust=True)),
        seeds,
        rows=("label",),
        metrics=("acc",),
        gains=True,
    )
    b = Study(
        "tb",
        "B",
        (config(method="dpo", robust=True), config(method="dpo", robust=True, noise=0.4)),
        1,
        rows=("noise",),
        columns="label",
        metrics=("acc",),
        figure=FigureSpec(x="noise", y=("acc",), hue="label"),
    )
    return Profile("unit", "toy", "train", {"profile": "unit", "lr": 0.1}, (a, b), configs_per_run=per_run)


def fake_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s):
    """Stands in for papermill: writes what a training notebook would, deterministically."""
    p = pipeline.run_files(run_dir, run.id)
    recs = [
        {
            "config": {**{k: v for k, v in c.items() if k != "seeds"}, "seed": s},
            "metrics": {"acc": 0.5 + 0.1 * c["robust"] - 0.2 * c["noise"] + 0.01 * s},
        }
        for c in run.params.get("configs", [])
        for s in c["seeds"]
    ]
    pipeline.write_metrics(p["json"], run.params, recs)
    p["ipynb"].write_text("{}")
    log = Path(run_dir) / "calls.log"
    with open(log, "a") as f:
        f.write(run.id + "\n")
    return {"id": run.id, "status": "done", "seconds": 0.0, "error": None}


def calls(run_dir):
    log = Path(run_dir) / "calls.log"
    return log.read_text().split() if log.exists() else []


def test_run_id_is_stable_and_order_free():
    a = run_id("02_train", {"lr": 0.1, "configs": [{"seed": 0, "method": "dpo"}]})
    b = run_id("02_train.py", {"configs": [{"method": "dpo", "seed": 0}], "lr": 0.1})
    assert a == b
    # pinned: a change of hashing would silently orphan every finished run (no resume)
    assert a == "02_train-dd2bc6765b"
    # and it is sha256 of canonical JSON (not Python's per-process salted hash())
    import hashlib

    canon = '{"notebook":"02_train","params":{"configs":[{"method":"dpo","seed":0}],"lr":0.1}}'
    assert a.endswith(hashlib.sha256(canon.encode()).hexdigest()[:10])
    assert run_id("02_train", {"lr": 0.2, "configs": [{"seed": 0, "method": "dpo"}]}) != a
    assert run_id("03_ablations", {"lr": 0.1, "configs": [{"seed": 0, "method": "dpo"}]}) != a


def test_expand_trains_shared_configs_once_with_most_seeds():
    plan = expand(small_profile(seeds=3), grid="full")
    cfgs = [c for r in plan.runs for c in r.params["configs"]]
    keys = [json.dumps({k: v for k, v in c.items() if k != "seeds"}, sort_keys=True) for c in cfgs]
    assert len(keys) == len(set(keys)) == 3  # R-DPO@0.2 is in both studies, trained once
    shared = [c for c in cfgs if c["robust"] and c["noise"] == 0.2][0]
    assert shared["seeds"] == [0, 1, 2]  # max(3, 1) seeds
    assert all(r.params["lr"] == 0.1 for r in plan.runs)
    assert len(expand(small_profile(per_run=2)).runs) == 2
    assert expand(small_profile(seeds=2), seeds=4).seeds == {"ta": 4, "tb": 4}


def test_expand_only_and_profiles():
    prof = get_profile("toy", "reduced")
    assert {r.notebook for r in expand(prof, only="02_train").runs} == {"02_train"}
    with pytest.raises(ValueError, match="--only 'nope'"):
        expand(prof, only="nope")
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")
    for name in ("toy", "small", "paper-mistral", "paper-llama3"):
        plan = expand(get_profile(name), grid="full")
        assert len({r.id for r in plan.runs}) == len(plan.runs)  # no two runs collide
    assert "zero3" in get_profile("paper-llama3").train_command
    with pytest.raises(ValueError, match="unknown config key"):
        config(noize=0.1)


def test_resume_skips_finished_runs(tmp_path):
    from rpo.pipeline.profiles import Step

    base = small_profile()
    prof = Profile(
        base.name,
        base.model,
        base.train_notebook,
        base.train_params,
        base.studies,
        steps=(Step("train", {"analysis": True}, stage=2, reads_runs=True),),
    )
    plan = expand(prof)
    analysis = [r.id for r in plan.runs if r.reads_runs]
    res = run_plan(plan, tmp_path, execute_fn=fake_execute, progress=False, notebooks_dir=_nbdir(tmp_path))
    assert [r["status"] for r in res] == ["done"] * len(plan.runs)
    assert len(calls(tmp_path)) == len(plan.runs)
    res = run_plan(plan, tmp_path, execute_fn=fake_execute, progress=False, notebooks_dir=_nbdir(tmp_path))
    assert [r["status"] for r in res] == ["skipped"] * len(plan.runs)
    assert len(calls(tmp_path)) == len(plan.runs)  # nothing re-executed
    victim = plan.runs[1].id
    (tmp_path / f"{victim}.ipynb").unlink()  # e.g. killed before the final os.replace
    res = run_plan(plan, tmp_path, execute_fn=fake_execute, progress=False, notebooks_dir=_nbdir(tmp_path))
    # the lost run re-executes, then the analysis that reads it is refreshed; nothing else
    assert calls(tmp_path)[-2:] == [victim] + analysis and len(calls(tmp_path)) == len(plan.runs) + 2
    assert sorted(o["status"] for o in res) == ["done", "done"] + ["skipped"] * (len(plan.runs) - 2)


def _nbdir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir(exist_ok=True)
    (d / "train.py").write_text("# %%\n")
    return d


class Killed(BaseException):
    pass


def test_kill_midway_then_resume_gives_same_tables(tmp_path):
    from rpo.report import build

    prof = small_profile(seeds=3)
    plan = expand(prof)
    nbs = _nbdir(tmp_path)
    full = tmp_path / "full"
    run_plan(plan, full / prof.name, execute_fn=fake_execute, progress=False, notebooks_dir=nbs)
    build(prof, runs_root=full, results_dir=full / "results", figures=False)

    part = tmp_path / "part"
    state = {"n": 0}

    def dies_on_second(run, run_dir, *a):
        state["n"] += 1
        if state["n"] == 2:
            # what a kill leaves: a half-written notebook and a metrics JSON without its .ipynb
            pipeline.run_files(run_dir, run.id)["tmp"].write_text("{half")
            pipeline.write_metrics(pipeline.run_files(run_dir, run.id)["json"], run.params, [])
            raise Killed()
        return fake_execute(run, run_dir, *a)

    with pytest.raises(Killed):
        run_plan(plan, part / prof.name, execute_fn=dies_on_second, progress=False, notebooks_dir=nbs)
    assert len(calls(part / prof.name)) == 1
    assert status(part / prof.name, plan.runs[1].id) == "pending"
    interrupted = build(prof, runs_root=part, results_dir=part / "results", figures=False)
    assert "missing" in (part / "results" / "ta.md").read_text()
    assert interrupted["tables"]["ta"]["cells"][0]["n"] == 3
    res = run_plan(plan, part / prof.name, execute_fn=fake_execute, progress=False, notebooks_dir=nbs)
    assert [r["status"] for r in res].count("skipped") == 1  # the finished run was kept
    build(prof, runs_root=part, results_dir=part / "results", figures=False)
    for name in ("ta.md", "ta.csv", "ta.tex", "tb.md", "tb.csv", "tb.tex", "manifest.json"):
        assert (part / "results" / name).read_bytes() == (full / "results" / name).read_bytes(), name


def test_parallel_workers_and_absent_notebooks(tmp_path):
    prof = small_profile()
    prof = Profile(
        prof.name,
        prof.model,
        prof.train_notebook,
        prof.train_params,
        prof.studies,
        steps=(pipeline_step("not_written_yet"),),
    )
    plan = expand(prof)
    res = run_plan(plan, tmp_path, jobs=2, execute_fn=fake_execute, progress=False, notebooks_dir=_nbdir(tmp_path))
    by = {r["id"]: r["status"] for r in res}
    assert sorted(by.values()) == ["absent", "done", "done", "done"]
    assert sorted(calls(tmp_path)) == sorted(r.id for r in plan.runs if r.notebook == "train")


def pipeline_step(name):
    from rpo.pipeline.profiles import Step

    return Step(name, {}, stage=0)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temp file left behind
    with pytest.raises(TypeError, match="object"):
        pipeline.write_metrics(target, {}, {"bad": object()})
    assert target.read_text() == "old"
    with pytest.raises(ValueError, match=r"metrics\[0\].*seed"):
        pipeline.write_metrics(target, {}, [{"config": {"method": "dpo"}, "metrics": {}}])
    rec = pipeline.write_metrics(target, {"a": 1}, {"m": 2})
    on_disk = json.loads(target.read_text())
    assert on_disk == json.loads(json.dumps(rec)) and on_disk["package_versions"]["torch"].startswith("2.13")
    assert len(on_disk["git_commit"]) >= 40 or on_disk["git_commit"] == "unknown"


def test_kernel_is_this_interpreter():
    exe = pipeline.check_kernel("python3")
    assert (
        Path(exe).parent.absolute() == Path(sys.executable).parent.absolute()
        or Path(exe).resolve().parent == Path(sys.executable).resolve().parent
    )


def test_real_papermill_execution_failure_and_resume(tmp_path):
    """Three real kernel executions: one success, one failure (recorded, the other goes on), one retry."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "tiny.py").write_text(TINY_NB)
    prof = Profile("real", "toy", "tiny", {}, ())
    good, bad = Run("tiny", {"x": 3}), Run("tiny", {"x": 4, "fail": True})
    plan = Plan(prof, {}, runs=[bad, good])
    rd = tmp_path / "runs"
    res = run_plan(plan, rd, notebooks_dir=nbs, progress=False)
    assert {r["id"]: r["status"] for r in res} == {bad.id: "failed", good.id: "done"}
    rec = json.loads((rd / f"{good.id}.json").read_text())
    assert rec["metrics"]["y"] == 6  # the parameter reached the notebook
    assert rec["metrics"]["omp"] == "1"  # one torch thread per worker
    assert rec["metrics"]["cwd"] == str(nbs)  # executed beside the notebook, like Jupyter
    assert rec["params"] == {"x": 3} and rec["run_id"] == good.id
    nb = json.loads((rd / f"{good.id}.ipynb").read_text())
    assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    failed = json.loads((rd / f"{bad.id}.failed.json").read_text())
    assert "asked to fail" in failed["cell_traceback"] and failed["params"]["fail"] is True
    assert (rd / f"{bad.id}.failed.ipynb").exists() and status(rd, bad.id) == "failed"
    assert not list(rd.glob("*.tmp.ipynb"))
    # fix the notebook so the failed run succeeds: only it re-executes, and its failure record goes
    (nbs / "tiny.py").write_text(TINY_NB.replace('assert not fail, "asked to fail"', "pass"))
    res = run_plan(plan, rd, notebooks_dir=nbs, progress=False)
    assert {r["id"]: r["status"] for r in res} == {bad.id: "done", good.id: "skipped"}
    assert not (rd / f"{bad.id}.failed.json").exists() and status(rd, bad.id) == "done"


def test_cli_errors(tmp_path, capsys):
    from rpo.cli import main

    with pytest.raises(ValueError, match="--only"):
        main(["run", "--profile", "toy", "--grid", "reduced", "--only", "nope", "--runs-dir", str(tmp_path)])
    try:
        import submitit  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match=r"pip install rpo\[cluster\]"):
            main(["run", "--profile", "toy", "--slurm", "--runs-dir", str(tmp_path)])
    try:
        import rpo.evaluate.cli  # noqa: F401
    except ImportError:
        assert main(["eval", "alpacaeval"]) == 2
        assert "rpo.evaluate.cli" in capsys.readouterr().err


def dies_hard(run, run_dir, *a):
    """A worker process that vanishes (as when killed for memory) on one run."""
    if run.params["configs"][0]["robust"]:
        os._exit(9)
    return fake_execute(run, run_dir, *a)


def test_dead_worker_is_recorded_as_failed(tmp_path):
    plan = expand(small_profile())
    res = run_plan(plan, tmp_path, jobs=2, execute_fn=dies_hard, progress=False, notebooks_dir=_nbdir(tmp_path))
    failed = [r["id"] for r in res if r["status"] == "failed"]
    assert failed and all((tmp_path / f"{rid}.failed.json").exists() for rid in failed)
    assert all(status(tmp_path, r.id) in ("done", "failed") for r in plan.runs)  # nothing unaccounted
    assert "BrokenProcessPool" in json.loads((tmp_path / f"{failed[0]}.failed.json").read_text())["error_type"]


def test_only_the_full_grid_writes_into_results():
    """CI runs the reduced grid: its notebooks must not rewrite the committed figures in results/."""
    for grid, expected in (("full", "../results"), ("reduced", "")):
        steps = {s.notebook: s for s in get_profile("toy", grid).steps}
        assert steps["00_derivations"].params["figure_dir"] == expected
        assert steps["01_data"].params["figure_dir"] == expected
        assert steps["07_audit"].params["figure_dir"] == expected


def test_saved_figures_are_byte_stable(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rpo.io import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 2])
    first = [p.read_bytes() for p in save_figure(fig, tmp_path / "a", "fig")]
    second = [p.read_bytes() for p in save_figure(fig, tmp_path / "b", "fig")]
    plt.close(fig)
    assert first == second and b"<dc:date>" not in first[1]


def test_git_commit_ignores_the_pipelines_own_outputs(tmp_path, monkeypatch):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    for name in ("code.py", "README.md", "results/t.md"):
        (tmp_path / name).write_text("a\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setenv("RPO_HOME", str(tmp_path))

    def commit():
        pipeline.git_commit.cache_clear()
        return pipeline.git_commit()

    try:
        (tmp_path / "results" / "t.md").write_text("b\n")
        (tmp_path / "README.md").write_text("b\n")
        assert not commit().endswith("-dirty")  # a study rewriting its outputs is not a code change
        (tmp_path / "code.py").write_text("b\n")
        assert commit().endswith("-dirty")
    finally:
        pipeline.git_commit.cache_clear()


def test_worker_env_pins_the_cpu_kernels_on_x86(monkeypatch):
    """Every run's kernels get AVX2 CPU kernels on x86-64 (a value already set is kept), nothing elsewhere;
    and torch in such a process really dispatches to them (where the CPU has AVX2: any x86-64 CI machine)."""
    import platform
    import subprocess

    from rpo.pipeline.execute import CPU_KERNELS, set_worker_env

    for key in CPU_KERNELS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    set_worker_env(1)
    assert not any(key in os.environ for key in CPU_KERNELS)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    set_worker_env(1)
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"
    if platform.uname().machine.lower() in ("x86_64", "amd64"):
        code = (
            "import numpy, scipy.linalg, threadpoolctl, torch; print(torch.backends.cpu.get_cpu_capability(), "
            "*sorted({i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'}))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
        assert out.stdout.split() == ["AVX2", "Haswell"]


def env_seen(run, run_dir, notebooks_dir, kernel_name, timeout_s):
    """fake_execute, recording the environment a kernel started by this run would inherit."""
    with open(Path(run_dir) / "env.log", "a") as f:
        f.write(json.dumps({k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")}) + "\n")
    return fake_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s)


def test_an_in_process_run_gives_the_callers_environment_back(tmp_path, monkeypatch):
    """With jobs=1 the runs execute in the caller's process: their kernels get the worker environment, and
    the caller's comes back unchanged (left set, the pins reached the caller's later subprocesses, whose
    kernels then differed from the caller's own torch: a resume test's eta moved in the 9th digit)."""
    import platform

    from rpo.pipeline.execute import CPU_KERNELS

    for key in CPU_KERNELS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    before = dict(os.environ)
    plan = expand(small_profile())
    run_plan(plan, tmp_path, execute_fn=env_seen, progress=False, notebooks_dir=_nbdir(tmp_path), jobs=1)
    seen = [json.loads(line) for line in (tmp_path / "env.log").read_text().splitlines()]
    assert seen == [{"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}] * len(plan.runs)
    assert dict(os.environ) == before
