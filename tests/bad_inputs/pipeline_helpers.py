"""Stand-ins for a notebook execution, importable by the pipeline's spawned workers (the fault tests put
this folder on ``sys.path``; spawn hands the path to the workers)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rpo.pipeline import run_files, write_metrics


def fast_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s):
    """What a training notebook leaves, at once: a metrics record per (config, seed), then the notebook."""
    p = run_files(run_dir, run.id)
    recs = [
        {"config": {**{k: v for k, v in c.items() if k != "seeds"}, "seed": s}, "metrics": {"acc": 0.5 + 0.01 * s}}
        for c in run.params.get("configs", [])
        for s in c["seeds"]
    ]
    write_metrics(p["json"], run.params, recs)
    p["ipynb"].write_text("{}")
    with open(Path(run_dir) / "calls.log", "a") as f:
        f.write(run.id + "\n")
    return {"id": run.id, "status": "done", "seconds": 0.0, "error": None}


def slow_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s):
    """A run that takes minutes: says which worker runs it, leaves a half-written file, then sleeps."""
    (Path(run_dir) / f"worker-{os.getpid()}.pid").write_text(str(os.getpid()))
    run_files(run_dir, run.id)["tmp"].write_text("{half")
    (Path(run_dir) / f".{run.id}.json.abc123.tmp").write_text("{half")
    time.sleep(120)
    (Path(run_dir) / f"finished-{os.getpid()}").write_text("a stopped run must not get here")
    return fast_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s)
