"""What keeps a runs folder sound when ``rpo run`` is stopped, killed or started twice.

* :func:`run_lock`: one ``rpo run`` per runs folder. An exclusive ``flock`` on ``<runs>/.rpo-run.lock``
  (the holder's pid, host and command line are written in it for the error message). The kernel drops the
  lock when its holder dies, even by SIGKILL, so a dead run's lock is taken over (and said so).
* :func:`discard_leftovers`: at the start of a run, the files an interrupted one left behind are removed:
  temporary files of atomic writes (``.<name>.*.tmp``, ``.<name>.tmp``), papermill's ``<run-id>.tmp.ipynb``,
  and metrics JSONs without their notebook (a run killed before it finished).
* :func:`signals_raise`: SIGTERM (and SIGHUP) raise :class:`Stopped` in the main thread, as Ctrl-C raises
  KeyboardInterrupt, so that ``finally`` blocks run: :func:`stop_pool` then terminates the pool's workers.
* :func:`worker_init`: the pool's workers exit by themselves
  within a second when the main process is gone (SIGKILL); each worker's kernel follows it, since
  ipykernel exits when its parent does (``JPY_PARENT_PID``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

LOCK_NAME = ".rpo-run.lock"


class RunLocked(RuntimeError):
    """Another ``rpo run`` holds the runs folder."""


class Stopped(BaseException):
    """``rpo run`` received SIGTERM / SIGHUP (a BaseException, like KeyboardInterrupt: no ``except
    Exception`` of a notebook run swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _pid_alive(pid: int) -> bool:
    """Whether a process of that pid runs here (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold the runs folder's lock for the block; :class:`RunLocked` names the holder when another has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            raise RunLocked(
                f"{run_dir} is in use by another `rpo run` (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}, started {holder.get('started', '?')}: {holder.get('command', '?')}); "
                f"wait for it to finish or stop it (lock file {path})"
            ) from None
        previous = _holder(path)
        if previous.get("pid") and not (previous.get("host") == socket.gethostname() and _pid_alive(previous["pid"])):
            print(
                f"rpo run: taking over the lock of pid {previous['pid']} (no longer running; it was killed?)",
                file=sys.stderr,
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released cleanly: no holder recorded (the file itself stays, see flock)
    finally:
        os.close(fd)  # drops the flock


def _holder(path: Path) -> dict:
    try:
        rec = json.loads(path.read_text() or "{}")
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def discard_leftovers(run_dir) -> list[Path]:
    """Remove what an interrupted run left in ``run_dir`` (see the module doc); returns the removed paths.
    Call it holding :func:`run_lock`, when nothing else writes there."""
    run_dir = Path(run_dir)
    gone = []
    for p in sorted(run_dir.iterdir()) if run_dir.is_dir() else []:
        if not p.is_file() or p.name == LOCK_NAME:
            continue
        temporary = (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name.endswith(".tmp.ipynb")
        orphan = (
            p.suffix == ".json"
            and p.name != "plan.json"
            and not p.name.endswith(".failed.json")
            and not p.with_suffix(".ipynb").exists()
        )
        if temporary or orphan:
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


@contextlib.contextmanager
def signals_raise(signums=(signal.SIGTERM, signal.SIGHUP)):
    """Within the block, the given signals raise :class:`Stopped` in the main thread (elsewhere: no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def worker_init(parent_pid: int) -> None:
    """Initializer of a pool worker: exit when ``parent_pid`` is no longer the parent. (Ctrl-C reaches the
    workers too; the main process then terminates them, :func:`stop_pool`. Ignoring SIGINT here instead
    would be inherited by their kernels.)"""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)  # the main process is gone: nothing will read what this worker would write

    threading.Thread(target=watch, daemon=True, name="rpo-parent-watch").start()


def stop_pool(pool, timeout_s: float = 10.0) -> None:
    """Terminate a ProcessPoolExecutor's workers now (SIGTERM, then SIGKILL after ``timeout_s``); their
    kernels exit with them. For a main process that is stopping: pending runs are cancelled."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.time() + timeout_s
    for p in procs:
        p.join(max(0.0, deadline - time.time()))
        if p.is_alive():
            p.kill()
            p.join(1.0)
    pool.shutdown(wait=False, cancel_futures=True)
