"""The run index, ``papermill_runs/<profile>[-<grid>]/index.md``: every run of a folder with its notebook,
reading copy, parameters in short, status, time, and the table cells it feeds (issue 16). Written by
``rpo run``, ``rpo tables`` and ``rpo runs`` (which also prints it); derived from the run files alone, so
it can be rebuilt at any time and is never committed (it lives beside the runs)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rpo import paths
from rpo.io import atomic_write_text
from rpo.pipeline.plan import Run, expand, run_files, status
from rpo.pipeline.profiles import DEFAULTS, get_profile, row_label
from rpo.report.collect import _plan, collect_runs, study_frame
from rpo.report.notebooks import FOLDER, reading_names

INDEX = "index.md"


def _short_config(cfg: dict) -> str:
    """``R-DPO eta0=0.99 ×3``: the method's label, the keys that differ from the defaults, the seeds."""
    extra = [f"{k}={cfg[k]}" for k in DEFAULTS if k not in ("method", "robust", "labels") and cfg.get(k) != DEFAULTS[k]]
    return " ".join([row_label(cfg), *extra, f"×{len(cfg.get('seeds', []))}"])


def short_params(params: dict) -> str:
    """A run's parameters in one table cell: its configs for a training run, else ``key=value`` pairs."""
    if params.get("configs"):
        return "; ".join(_short_config(c) for c in params["configs"])
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "profile") or "(defaults)"


def _cell_name(study, row) -> str:
    keys = ", ".join(str(row[k]) for k in study.rows)
    keys = f"({keys})" if len(study.rows) > 1 else keys
    return f"{keys} · {row[study.columns]}" if study.columns else keys


def feeds(profile, grid: str, found: pd.DataFrame, plan_seeds: dict) -> dict[str, str]:
    """``{run id: "table2: DPO, R-DPO; noise_sweep: 0.2 · DPO"}``: the cells whose seeds a run trained."""
    out: dict[str, dict[str, list[str]]] = {}
    for study in profile.studies:
        frame = study_frame(study, plan_seeds.get(study.name) or study.seeds, found)
        for _, row in frame[frame["run_id"].notna()].iterrows():
            cells = out.setdefault(row["run_id"], {}).setdefault(study.name, [])
            if (name := _cell_name(study, row)) not in cells:
                cells.append(name)
    return {rid: "; ".join(f"{s}: {', '.join(c)}" for s, c in studies.items()) for rid, studies in out.items()}


def _timing(run_dir: Path, rid: str, state: str) -> tuple[str, str]:
    """(seconds the last attempt took, when its file was written, UTC) or blanks."""
    p = run_files(run_dir, rid)
    path = {"done": p["json"], "failed": p["failed"]}.get(state)
    if path is None or not path.exists():
        return "", ""
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError:
        rec = {}
    seconds = (rec.get("pipeline") or {}).get("seconds") if state == "done" else rec.get("seconds")
    when = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")
    return ("" if seconds is None else f"{float(seconds):.0f}"), when


def _plan_runs(prof, grid: str, run_dir: Path, plan: dict) -> list[Run]:
    """The runs of the last ``rpo run``'s plan (plan.json: every id it expected, with the parameters of
    those it listed; the others' from their records), else the profile's plan for the code as it is."""
    if "expected_run_ids" not in plan:
        return expand(prof, grid=grid).runs
    listed = {r["id"]: r for r in plan.get("runs", [])}
    steps = {s.notebook: s for s in prof.steps}
    runs = []
    for rid in plan["expected_run_ids"]:
        notebook, params = rid.rsplit("-", 1)[0], None
        if rid in listed:
            notebook, params = listed[rid]["notebook"], listed[rid]["params"]
        elif run_files(run_dir, rid)["json"].exists():
            try:
                params = json.loads(run_files(run_dir, rid)["json"].read_text()).get("params")
            except json.JSONDecodeError:
                pass
        step = steps.get(notebook)
        stage = step.stage if step else prof.train_stage
        runs.append(_Listed(rid, Run(notebook, params or {}, stage, bool(step and step.reads_runs)), params is None))
    return runs


class _Listed:
    """A run of plan.json: its id as recorded (ids hash the code, so one cannot recompute it)."""

    def __init__(self, rid: str, run: Run, unknown_params: bool):
        self.id, self.run, self.unknown_params = rid, run, unknown_params

    def __getattr__(self, name):
        return getattr(self.run, name)


def index_markdown(profile: str, grid: str = "full", runs_root=None) -> str:
    """The index of ``papermill_runs/<profile>[-<grid>]`` as Markdown."""
    prof = get_profile(profile, grid)
    run_dir = paths.run_dir(profile, grid, runs_root)
    plan = _plan(run_dir)
    found, records = collect_runs(run_dir)
    runs = _plan_runs(prof, grid, run_dir, plan)
    names = reading_names(prof, [(r.id, r.notebook, r.params) for r in runs]) if grid == "full" else {}
    fed = feeds(prof, grid, found, plan.get("seeds", {}))
    rows, states = [], []
    for run in sorted(runs, key=lambda r: (r.stage, r.notebook, r.id)):
        rid, state = run.id, status(run_dir, run.id)
        states.append(state)
        seconds, when = _timing(run_dir, rid, state)
        copy = f"`results/{FOLDER}/{names[rid]}.ipynb`" if rid in names else ""
        what = fed.get(rid) or ("reads the training runs" if run.reads_runs else "")
        params = "?" if getattr(run, "unknown_params", False) else short_params(run.params)
        rows.append(f"| `{rid}` | {run.notebook} | {copy} | {params} | {state} | {seconds} | {when} | {what} |")
    others = len(set(records) - {r.id for r in runs})
    counts = {s: states.count(s) for s in ("done", "failed", "pending", "corrupt")}
    head = [
        f"# Runs of profile `{profile}`, grid `{grid}` ({paths.grid_name(profile, grid)}/)",
        "",
        f"{len(rows)} runs in the plan of the last `rpo run`: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['pending']} pending"
        + (f", {counts['corrupt']} corrupt" if counts["corrupt"] else "")
        + "."
        + (f" {others} other runs in this folder (older code or other seeds) are not listed." if others else ""),
        "",
        "Written by `rpo run`, `rpo tables` and `rpo runs` from the run files: a run's executed notebook is "
        "`<run id>.ipynb` beside this file, its metrics `<run id>.json` (a failure: `<run id>.failed.json`). "
        "Seconds: the last attempt's wall time; written: when its record was written (UTC); feeds: the "
        "table cells whose seeds it trained.",
        "",
        "| run id | notebook | reading copy | parameters | status | seconds | written | feeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def write_index(profile: str, grid: str = "full", runs_root=None) -> Path:
    """Write ``index.md`` into the runs folder (created if absent) and return its path."""
    text = index_markdown(profile, grid, runs_root)
    return atomic_write_text(paths.run_dir(profile, grid, runs_root) / INDEX, text)
