"""``rpo run --slurm`` (rpo.pipeline.slurm): the request each job makes, how every way a job ends is recorded,
and the reduced toy study run end to end on a real single-node Slurm that this file starts (munge,
slurmctld, slurmd from Debian's packages, every file in a temporary folder), whose tables must equal
those of the local run byte for byte. The real-Slurm test skips, saying why, only where the packages
are missing or the daemons do not start (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from rpo.pipeline.plan import Run, status
from rpo.pipeline.profiles import SlurmParams, get_profile
from rpo.pipeline.slurm import SlurmDispatch, executor_parameters, parse_time, with_overrides

# ---- the request: profile defaults, rpo run flags -------------------------------------------------------


def test_parse_time_reads_slurm_forms():
    assert [parse_time(t) for t in ("90", "5:30", "12:00:00", "1-00", "1-02:30", "2-00:00:01")] == [
        90,
        6,
        720,
        1440,
        1590,
        2881,
    ]
    for bad in ("", "1h", "0", "-5", "1:2:3:4"):
        with pytest.raises(ValueError, match="--time"):
            parse_time(bad)


def test_profiles_request_gpus_only_where_they_train_on_them():
    toy = executor_parameters(get_profile("toy", "reduced").slurm)
    assert "gpus_per_node" not in toy and toy["cpus_per_task"] == get_profile("toy").threads_per_job
    assert "gpus_per_node" not in executor_parameters(get_profile("small").slurm)
    assert executor_parameters(get_profile("paper-mistral").slurm)["gpus_per_node"] == 8


def test_overrides_and_extra_sbatch_flags():
    p = with_overrides(
        SlurmParams(sbatch_flags=(("constraint", "a100"),)),
        partition="gpu",
        account="lab",
        qos="high",
        time="1-00:00:00",
        gpus_per_node=4,
        cpus_per_task=16,
        mem_gb=64,
        sbatch_flags=["exclusive", "mail-type=END"],
    )
    assert executor_parameters(p) == {
        "time": 1440,
        "cpus_per_task": 16,
        "partition": "gpu",
        "account": "lab",
        "qos": "high",
        "gpus_per_node": 4,
        "mem": "65536MB",
        "additional_parameters": {"constraint": "a100", "exclusive": True, "mail-type": "END"},
    }
    assert with_overrides(p, partition=None) == p  # a flag not given keeps the profile's value
    with pytest.raises(ValueError, match="sbatch-flag"):
        with_overrides(p, sbatch_flags=["=x"])
    with pytest.raises(ValueError, match="out of range"):
        with_overrides(p, cpus_per_task=0)


def test_cli_flags_reach_the_backend(monkeypatch, tmp_path):
    import rpo.pipeline.run as run_mod
    from rpo.cli import main

    seen = {}

    def fake_run_slurm(plan, run_dir, *, params, **kw):
        seen.update(params=params, run_dir=run_dir)
        return []

    monkeypatch.setattr(run_mod, "run_slurm", fake_run_slurm)
    monkeypatch.setattr(run_mod, "check_kernel", lambda name: name)
    argv = ["run", "--profile", "toy", "--grid", "reduced", "--slurm", "--runs-dir", str(tmp_path)]
    argv += ["--partition", "cpu", "--time", "2:00:00", "--sbatch-flag", "comment=rpo", "--gpus-per-node", "0"]
    assert main(argv) == 0
    toy = get_profile("toy", "reduced").slurm
    assert seen["params"] == SlurmParams(
        partition="cpu",
        time_min=120,
        gpus_per_node=0,
        cpus_per_task=toy.cpus_per_task,
        sbatch_flags=(("comment", "rpo"),),
    )


def test_slurm_flags_without_slurm_are_an_error(tmp_path):
    from rpo.cli import main

    with pytest.raises(ValueError, match="--slurm"):
        main(["run", "--profile", "toy", "--grid", "reduced", "--partition", "cpu", "--runs-dir", str(tmp_path)])


# ---- how a job's end becomes an outcome (a fake queue: no Slurm needed) ----------------------------------


class FakeExecutor:
    """submitit.SlurmExecutor's surface as SlurmDispatch uses it; each notebook name says how its job ends."""

    def __init__(self, folder: Path):
        self.folder, self.states, self.jobs, self.params = folder, {}, [], {}
        folder.mkdir(parents=True, exist_ok=True)

    def update_parameters(self, **kw):
        self.params.update(kw)

    def submit(self, fn, args):
        run = args[0]
        if run.notebook == "refused":
            raise RuntimeError("sbatch: error: invalid partition specified: nope")
        jid = str(100 + len(self.jobs))
        job = SimpleNamespace(
            job_id=jid,
            paths=SimpleNamespace(result_pickle=self.folder / f"{jid}_result.pkl", stderr=self.folder / f"{jid}.err"),
            cancel=lambda check=True: self.states.__setitem__(jid, "CANCELLED"),
        )
        job.paths.stderr.write_text(f"log of job {jid}\n")
        ok = {"id": run.id, "status": "done", "seconds": 1.0, "error": None}
        ends = {
            "ok": ("COMPLETED", ("success", ok)),
            "cancelled": ("CANCELLED", None),
            "raised": ("FAILED", ("error", "Traceback ...\nMemoryError: boom")),
            "running": ("RUNNING", None),
        }
        state, result = ends[run.notebook]
        if result is not None:
            job.paths.result_pickle.write_bytes(pickle.dumps(result))
        self.states[jid] = state
        self.jobs.append(job)
        return job


def test_every_way_a_job_ends_is_an_outcome_and_failures_are_recorded(monkeypatch, tmp_path):
    import rpo.pipeline.slurm as slurm

    ex = FakeExecutor(tmp_path / "slurm")
    monkeypatch.setattr(slurm, "squeue_states", lambda ids: {i: ex.states[i] for i in ids if i != "102"})
    runs = [Run(nb, {"k": nb}) for nb in ("ok", "cancelled", "raised", "refused")]
    dispatch = SlurmDispatch(ex, tmp_path, "toy", poll_s=0.0)
    outcomes = {o["id"]: o for o in dispatch([(r,) for r in runs])}
    by_nb = {r.notebook: outcomes[r.id] for r in runs}
    assert by_nb["ok"]["status"] == "done"
    assert ex.params["job_name"] == "rpo-toy-refused"
    for nb, words in {
        "cancelled": ["ended CANCELLED", "log of job 101"],
        "raised": ["ended PURGED", "MemoryError: boom"],  # 102: gone from squeue, its result says it raised
        "refused": ["sbatch refused", "invalid partition"],
    }.items():
        assert by_nb[nb]["status"] == "failed", nb
        rec = json.loads((tmp_path / f"{by_nb[nb]['id']}.failed.json").read_text())
        assert rec["error_type"] == "SlurmJobError" and all(w in rec["error"] for w in words), rec["error"]
        assert status(tmp_path, by_nb[nb]["id"]) == "failed"
    assert status(tmp_path, by_nb["ok"]["id"]) == "pending"  # the fake wrote no notebook: not "done"


def test_a_stopped_dispatch_cancels_the_jobs_it_still_waits_for(monkeypatch, tmp_path):
    import rpo.pipeline.slurm as slurm

    ex = FakeExecutor(tmp_path / "slurm")
    monkeypatch.setattr(slurm, "squeue_states", lambda ids: {i: ex.states[i] for i in ids})
    gen = SlurmDispatch(ex, tmp_path, "toy", poll_s=0.0)([(Run("ok", {}),), (Run("running", {}),)])
    assert next(gen)["status"] == "done"
    gen.close()  # what run_plan does when interrupted
    assert ex.states["101"] == "CANCELLED"


# ---- inside a job: the paper profiles launch accelerate on the node's GPUs -------------------------------


def test_paper_training_launches_on_the_jobs_gpus():
    from rpo.pipeline.paper import launch_command, node_gpus, on_node_gpus
    from rpo.pipeline.profiles import config

    prof = get_profile("paper-mistral")
    cmd = launch_command(
        prof.train_command, "mistral-7b-instruct", prof.name, config(method="dpo", robust=True, noise=0.0), 0
    )
    assert node_gpus({"SLURM_GPUS_ON_NODE": "4", "CUDA_VISIBLE_DEVICES": "0,1"}) == 4
    assert node_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2 and node_gpus({}) is None
    assert on_node_gpus(cmd, {}) == cmd and on_node_gpus(cmd, {"SLURM_GPUS_ON_NODE": "8"}) == cmd
    four = on_node_gpus(cmd, {"SLURM_GPUS_ON_NODE": "4"})
    assert four[:4] == ["accelerate", "launch", "--num_processes", "4"]
    assert four[-2:] == ["--gradient_accumulation_steps", "8"]  # 2 per device x 8 x 4 GPUs = 64, as 2 x 4 x 8
    with pytest.raises(ValueError, match="global batch 64"):
        on_node_gpus(cmd, {"SLURM_GPUS_ON_NODE": "3"})


# ---- a real single-node Slurm ----------------------------------------------------------------------------

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """munged + slurmctld + slurmd on this machine, every path under ``folder``; clients find it through
    ``SLURM_CONF`` in :attr:`env`. Stopped by the pids in the daemons' pid files."""

    def __init__(self, folder: Path):
        self.dir = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pidfiles = {d: folder / f"{d}.pid" for d in DAEMONS}

    def start(self) -> None:
        d = self.dir
        d.chmod(0o755)  # munged wants its socket's folder searchable by everyone
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        fd = os.open(d / "munge.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(1024))
        os.close(fd)
        sock = d / "munge.sock"
        self._daemon(
            "munged",
            [
                f"--socket={sock}",
                f"--key-file={d / 'munge.key'}",
                f"--pid-file={self.pidfiles['munged']}",
                f"--log-file={d / 'munged.log'}",
                f"--seed-file={d / 'munged.seed'}",
            ],
        )
        node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
        host = node.split()[0].split("=", 1)[1]
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=rpotest",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={sock}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={self.pidfiles['slurmctld']}",
                    f"SlurmdPidFile={self.pidfiles['slurmd']}",
                    f"SlurmctldLogFile={d / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "ReturnToService=2",
                    "MpiDefault=none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "KillWait=5",  # scancel: SIGKILL 5 s after SIGTERM
                    "MinJobAge=3600",  # ended jobs stay visible to squeue for the whole test
                    f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        self._daemon("slurmctld", ["-f", str(self.conf)])
        self._daemon("slurmd", ["-f", str(self.conf)])
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=self.env)
            if out.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not become idle in 60 s: sinfo says {out.stdout!r} {out.stderr!r}")

    def _daemon(self, name: str, args: list[str]) -> None:
        out = subprocess.run([name, *args], capture_output=True, text=True, env=self.env, timeout=60)
        deadline = time.time() + 15
        while out.returncode == 0 and not self.pidfiles[name].exists() and time.time() < deadline:
            time.sleep(0.1)
        if out.returncode != 0 or not self.pidfiles[name].exists():
            raise RuntimeError(f"{name} did not start (rc {out.returncode}): {out.stderr.strip()} {self.log(name)}")

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def running_job(self, name: str, timeout: float) -> str:
        """The id of the first job called ``name`` once Slurm runs it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            cmd = ["squeue", "-h", "-t", "RUNNING", "-n", name, "-o", "%i"]
            ids = subprocess.run(cmd, capture_output=True, text=True, env=self.env).stdout.split()
            if ids:
                return ids[0]
            time.sleep(0.2)
        raise AssertionError(f"no job {name!r} ran within {timeout} s")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=self.env, capture_output=True, timeout=30)
        time.sleep(1)
        for name in ("slurmd", "slurmctld", "munged"):
            path = self.pidfiles[name]
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = [c for c in DAEMONS + CLIENTS if shutil.which(c) is None]
    if missing:
        pytest.skip(
            f"Slurm's Debian packages are not installed (missing {', '.join(missing)}): "
            "apt-get install -y slurmctld slurmd slurm-client munge (.ci/run does it where apt works)"
        )
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm of this test runs slurmd as root, and this user is not root")
    import submitit  # noqa: F401 - the backend's dependency: make install puts it in the venv (cluster extra)

    cluster = LocalSlurm(Path(tempfile.mkdtemp(prefix="rpo-slurm-", dir="/tmp")))  # short: socket paths
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            pytest.skip(f"the Slurm daemons did not start: {e}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)


def _tables(runs: Path, out: Path) -> dict[str, bytes]:
    from rpo.report import build

    build("toy", grid="reduced", runs_root=runs, results_dir=out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".md", ".csv")}


@pytest.mark.slow
def test_reduced_study_through_slurm_equals_the_local_run(slurm_cluster, reduced_toy_run, tmp_path):
    from rpo.paths import run_dir

    runs = tmp_path / "runs"
    rd = run_dir("toy", "reduced", runs)
    rpo_run = [sys.executable, "-m", "rpo", "run", "--profile", "toy", "--grid", "reduced", "--slurm"]
    rpo_run += ["--runs-dir", str(runs), "--time", "20", "--sbatch-flag", "comment=rpo-test"]
    env = {**slurm_cluster.env, "TQDM_DISABLE": "1"}

    # 1. a job cancelled with scancel is recorded as a failed run
    first = subprocess.Popen(
        rpo_run + ["--only", "00_derivations"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        jid = slurm_cluster.running_job("rpo-toy-00_derivations", timeout=300)
        subprocess.run(["scancel", jid], env=env, check=True)
        log, _ = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 1, log
    # the plan that call ran (run ids cover the code: read them, do not recompute them in this process)
    (cancelled,) = [r["id"] for r in json.loads((rd / "plan.json").read_text())["runs"]]
    rec = json.loads((rd / f"{cancelled}.failed.json").read_text())
    assert rec["error_type"] == "SlurmJobError" and f"Slurm job {jid}" in rec["error"] and "CANCELLED" in rec["error"]
    assert status(rd, cancelled) == "failed"

    # 2. the whole reduced grid: the failed run is re-run and succeeds, every run is done
    second = subprocess.run(rpo_run, env=env, capture_output=True, text=True, timeout=1800)
    assert second.returncode == 0, second.stdout + second.stderr
    plan = json.loads((rd / "plan.json").read_text())
    assert all(status(rd, r["id"]) == "done" for r in plan["runs"]), second.stderr
    assert cancelled in {r["id"] for r in plan["runs"]} and not (rd / f"{cancelled}.failed.json").exists()
    scripts = [p.read_text() for p in sorted((rd / "slurm").glob("*_submission.sh"))]
    assert len(scripts) > len(plan["runs"])  # the cancelled job and its re-run
    for script in scripts:  # the CLI's request; the toy profile asks for no GPU
        assert "#SBATCH --time=20" in script and "#SBATCH --comment=rpo-test" in script, script
        assert "#SBATCH --cpus-per-task=1" in script and "gpu" not in script.lower(), script

    # 3. the same tables as the local run of the same grid, byte for byte
    local_runs, local_outcomes = reduced_toy_run
    assert all(o["status"] == "done" for o in local_outcomes), local_outcomes
    local, slurm = _tables(local_runs, tmp_path / "local"), _tables(runs, tmp_path / "slurm")
    assert local and set(local) == set(slurm)
    assert [n for n in local if local[n] != slurm[n]] == []
