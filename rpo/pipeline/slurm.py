"""The Slurm backend of ``rpo run --slurm``: each pending run is one submitit job, stage by stage.

The scheduling (resume, stages, analyses refreshed after new training runs, failure records) is
:func:`rpo.pipeline.execute.run_plan`'s; this module only dispatches a stage's runs as Slurm jobs and
turns every way a job can end into an outcome. A job that fails, is cancelled (``scancel``), runs out of
time or memory, or whose node dies is recorded as a failed run (``<run-id>.failed.json``, with the Slurm
state and the tail of the job's log), the other jobs go on, and the next ``rpo run --slurm`` re-runs it.

What each job asks for is the profile's :class:`~rpo.pipeline.profiles.SlurmParams`, overridden by
``rpo run`` flags (:func:`with_overrides`). Job states come from ``squeue`` (one call per poll for the
whole stage), not ``sacct``: clusters without accounting storage have no ``sacct`` answers.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from pathlib import Path

from rpo.pipeline.execute import _worker, record_failure, run_plan
from rpo.pipeline.plan import Plan, Run
from rpo.pipeline.profiles import SlurmParams

# A job in one of these states has not ended yet (squeue's %T names, Slurm 22.05+).
ACTIVE = frozenset(
    "PENDING CONFIGURING RUNNING COMPLETING REQUEUED REQUEUE_HOLD REQUEUE_FED RESIZING SUSPENDED STAGE_OUT "
    "SIGNALING RESV_DEL_HOLD".split()
)
RESULT_GRACE_S = 60.0  # a COMPLETED job's result file may reach a shared filesystem a little later
MAX_SQUEUE_FAILURES = 100  # consecutive failed polls (minutes of an unreachable slurmctld) before giving up


class SlurmJobError(RuntimeError):
    """A run's Slurm job ended without the run succeeding (the message names the job, its state, its log)."""


def parse_time(value) -> int:
    """Minutes from a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S`` (sbatch
    ``--time``); seconds round up to a whole minute."""
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(f"--time {value!r}: expected minutes or Slurm's [D-]H:M:S form, e.g. 90, 12:00:00, 1-00:00:00")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, mi, s = a, b or 0, c or 0
    elif c is not None:  # H:M:S
        h, mi, s = a, b, c
    elif b is not None:  # M:S
        h, mi, s = 0, a, b
    else:  # M
        h, mi, s = 0, a, 0
    minutes = (days or 0) * 24 * 60 + h * 60 + mi + (1 if s else 0)
    if minutes <= 0:
        raise ValueError(f"--time {value!r}: the time limit must be at least one minute")
    return minutes


def parse_sbatch_flag(text: str) -> tuple[str, str | None]:
    """``"KEY=VALUE"`` -> ``("KEY", "VALUE")``; ``"KEY"`` -> ``("KEY", None)`` (a bare ``--KEY``)."""
    key, sep, value = text.partition("=")
    key = key.strip().lstrip("-")
    if not key or " " in key:
        raise ValueError(f"--sbatch-flag {text!r}: expected KEY=VALUE (an sbatch option without its --) or KEY")
    return key, (value if sep else None)


def with_overrides(params: SlurmParams, **overrides) -> SlurmParams:
    """The profile's request with the ``rpo run`` flags that were given (``None``: keep the profile's).
    ``time`` takes any :func:`parse_time` form; ``sbatch_flags`` are appended to the profile's."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(SlurmParams)} - {"time"})
    if unknown:
        raise ValueError(f"unknown Slurm parameter(s) {unknown}")
    if "time" in given:
        given["time_min"] = parse_time(given.pop("time"))
    if "sbatch_flags" in given:
        given["sbatch_flags"] = tuple(params.sbatch_flags) + tuple(
            parse_sbatch_flag(f) if isinstance(f, str) else tuple(f) for f in given["sbatch_flags"]
        )
    for key in ("gpus_per_node", "cpus_per_task", "time_min"):
        if key in given and int(given[key]) < (0 if key == "gpus_per_node" else 1):
            raise ValueError(f"Slurm parameter {key}={given[key]} is out of range")
    return dataclasses.replace(params, **given)


def executor_parameters(params: SlurmParams) -> dict:
    """``submitit.SlurmExecutor.update_parameters`` arguments for one job's request. No GPU requested
    (``gpus_per_node=0``) writes no ``--gpus-per-node`` line at all, so it works on clusters without GRES."""
    out: dict = {"time": params.time_min, "cpus_per_task": params.cpus_per_task}
    for key in ("partition", "account", "qos"):
        if getattr(params, key):
            out[key] = getattr(params, key)
    if params.gpus_per_node:
        out["gpus_per_node"] = params.gpus_per_node
    if params.mem_gb:
        out["mem"] = f"{int(params.mem_gb * 1024)}MB"
    if params.sbatch_flags:
        out["additional_parameters"] = {k: (True if v is None else v) for k, v in params.sbatch_flags}
    return out


def squeue_states(job_ids) -> dict[str, str] | None:
    """``{job id: state}`` of the jobs ``squeue`` still knows (ended ones too, until Slurm's MinJobAge);
    ``None`` when ``squeue`` itself failed (slurmctld busy or unreachable: ask again later)."""
    cmd = ["squeue", "--noheader", "--states=all", "--jobs", ",".join(job_ids), "--format=%i %T"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # every job already purged from slurmctld: squeue answers "Invalid job id specified"
        return {} if "Invalid job id" in out.stderr else None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1].rstrip("+")  # "CANCELLED+" in some versions
    return states


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


class SlurmDispatch:
    """``dispatch`` of :func:`~rpo.pipeline.execute.run_plan`: submit one stage's runs, one job each, and
    yield each run's outcome when its job ends (in the order they end)."""

    def __init__(self, executor, run_dir, profile: str, poll_s: float = 3.0):
        self.executor, self.run_dir, self.profile, self.poll_s = executor, Path(run_dir), profile, poll_s

    def __call__(self, batch):
        pending: dict[str, tuple] = {}  # job id -> (job, run, submitted at)
        try:
            for args in batch:
                run: Run = args[0]
                try:
                    self.executor.update_parameters(job_name=f"rpo-{self.profile}-{run.notebook}")
                    job = self.executor.submit(_worker, args)
                except Exception as e:  # noqa: BLE001 - sbatch refused (bad partition, account, ...)
                    yield self._failed(run, SlurmJobError(f"sbatch refused the job: {e}"), 0.0)
                    continue
                pending[str(job.job_id)] = (job, run, time.time())
            ended_at: dict[str, float] = {}
            failures = 0
            while pending:
                states = squeue_states(list(pending))
                if states is None:
                    failures += 1
                    if failures >= MAX_SQUEUE_FAILURES:
                        raise RuntimeError(f"squeue failed {failures} times in a row; jobs {sorted(pending)} left")
                    time.sleep(self.poll_s)
                    continue
                failures = 0
                for jid in list(pending):
                    state = states.get(jid, "PURGED")  # gone from slurmctld: it ended a while ago
                    if state in ACTIVE:
                        continue
                    job, run, t0 = pending[jid]
                    ended_at.setdefault(jid, time.time())
                    if (
                        state == "COMPLETED"
                        and not job.paths.result_pickle.exists()
                        and time.time() - ended_at[jid] < RESULT_GRACE_S
                    ):
                        continue
                    del pending[jid]
                    yield self._outcome(job, run, state, time.time() - t0)
                if pending:
                    time.sleep(self.poll_s)
        finally:  # stopped early (Ctrl-C, an error): leave no job running for runs nobody waits for
            for job, _, _ in pending.values():
                try:
                    job.cancel(check=False)
                except Exception:  # noqa: BLE001
                    pass

    def _outcome(self, job, run: Run, state: str, seconds: float) -> dict:
        from submitit.core import utils

        outcome, error = None, ""
        pickle = job.paths.result_pickle
        if pickle.exists():
            try:
                kind, value = utils.pickle_load(pickle)
            except Exception as e:  # noqa: BLE001
                kind, value = "error", f"unreadable job result {pickle}: {e}"
            if kind == "success":
                outcome = value
            else:
                error = str(value)[-4000:]
        if outcome is not None and (outcome.get("status") == "done" or state == "COMPLETED"):
            return outcome  # done, or a notebook failure execute() has recorded itself
        msg = f"Slurm job {job.job_id} of run {run.id} ({run.notebook}) ended {state}"
        if outcome is not None:
            msg += f"; the run had reported: {outcome.get('error')}"
        if error:
            msg += f"; the job raised:\n{error}"
        msg += f"\n--- tail of {job.paths.stderr} ---\n{_log_tail(job.paths.stderr)}"
        return self._failed(run, SlurmJobError(msg), seconds, short=f"Slurm job {job.job_id} ended {state}")

    def _failed(self, run: Run, e: Exception, seconds: float, short: str | None = None) -> dict:
        record_failure(run, self.run_dir, e, seconds)
        return {"id": run.id, "status": "failed", "seconds": seconds, "error": f"{type(e).__name__}: {short or e}"}


def run_slurm(
    plan: Plan,
    run_dir,
    *,
    params: SlurmParams | None = None,
    notebooks_dir=None,
    kernel_name: str = "python3",
    force: bool = False,
    progress: bool = True,
    poll_s: float = 3.0,
) -> list[dict]:
    """Run the plan's pending runs as Slurm jobs (one per run, a stage's jobs at once, stages in order),
    each asking for ``params`` (default: the profile's). The jobs run this interpreter (``sys.executable``)
    in this folder with this environment (sbatch's ``--export=ALL``), so the virtualenv and the checkout
    must be on a filesystem the nodes share. Returns :func:`~rpo.pipeline.execute.run_plan`'s outcomes."""
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError(
            "the --slurm backend needs submitit: `pip install rpo[cluster]` (or `pip install submitit==1.5.4`)"
        ) from e
    if shutil.which("sbatch") is None:
        raise RuntimeError("--slurm: no `sbatch` on PATH; run `rpo run --slurm` where Slurm's client commands are")
    run_dir = Path(run_dir)
    params = plan.profile.slurm if params is None else params
    executor = submitit.SlurmExecutor(folder=run_dir / "slurm", max_num_timeout=0)  # runs sys.executable
    executor.update_parameters(**executor_parameters(params))
    return run_plan(
        plan,
        run_dir,
        notebooks_dir=notebooks_dir,
        kernel_name=kernel_name,
        progress=progress,
        force=force,
        dispatch=SlurmDispatch(executor, run_dir, plan.profile.name, poll_s),
    )
