"""Results are never destroyed by accident: ``rpo tables`` refuses to replace committed tables with tables
resting on fewer runs (a fresh clone with no runs, a half-finished or failed ``rpo run``) unless forced,
and says which runs are missing.

Tables are compared cell by cell with the manifest already in the results folder: a cell whose number of
seeds would fall (or disappear), or a manifest of another profile or grid, is shrinkage. Runs are
compared by their cells, not their ids, because run ids change with the code (:mod:`rpo.pipeline.plan`).
"""

from __future__ import annotations

import json
from pathlib import Path

from rpo.io import read_json
from rpo.pipeline.plan import problem, status


class ResultsWouldShrink(ValueError):
    """Raised by :func:`rpo.report.build.build` instead of overwriting better-founded results."""


def _cells(manifest: dict) -> dict:
    """``(table, row, column, gain) -> number of seeds`` of a manifest's cells."""
    out = {}
    for table, spec in (manifest.get("tables") or {}).items():
        for c in spec.get("cells") or []:
            key = (table, json.dumps(c.get("row"), sort_keys=True), c.get("column"), bool(c.get("gain")))
            out[key] = int(c.get("n") or 0)
    return out


def shrinkage(old: dict, new: dict) -> list[str]:
    """What ``new`` would lose against ``old``, one line per problem (empty: nothing is lost)."""
    if (old.get("profile"), old.get("grid")) != (new.get("profile"), new.get("grid")):
        return [
            f"the results folder holds profile {old.get('profile')!r}, grid {old.get('grid')!r}, "
            f"not {new.get('profile')!r}, grid {new.get('grid')!r}"
        ]
    before, after = _cells(old), _cells(new)
    lost = [(k, n, after.get(k, 0)) for k, n in before.items() if after.get(k, 0) < n]
    lines = [
        f"{table} {json.loads(row)} {column}{' (gain)' if gain else ''}: {n} -> {m} seed(s)"
        for (table, row, column, gain), n, m in lost
    ]
    if lines:
        lines.insert(0, f"{len(lost)} of {len(before)} cell(s) would rest on fewer seeds, e.g.:")
        del lines[6:]
    return lines


def missing_runs(run_dir, plan: dict) -> list[str]:
    """The runs of the last plan (``plan.json``) that are not done, with their status (or why corrupt)."""
    run_dir = Path(run_dir)
    if not plan:
        return [f"no runs in {run_dir} (no plan.json: `rpo run` has not run there, e.g. a fresh clone)"]
    out = []
    for rid in plan.get("expected_run_ids") or [r["id"] for r in plan.get("runs", [])]:
        st = status(run_dir, rid)
        if st != "done":
            out.append(f"{rid} ({st}{': ' + problem(run_dir, rid) if st == 'corrupt' else ''})")
    return out


def check(new: dict, results_dir, run_dir, plan: dict) -> None:
    """Raise :class:`ResultsWouldShrink` when ``new`` (a manifest about to be written) would replace the one
    in ``results_dir`` with results resting on fewer runs; a folder without a manifest is never refused."""
    path = Path(results_dir) / "manifest.json"
    if not path.exists():
        return
    lost = shrinkage(read_json(path), new)
    if not lost:
        return
    runs = missing_runs(run_dir, plan)
    shown = "\n  ".join(runs[:10]) + (f"\n  ... and {len(runs) - 10} more" if len(runs) > 10 else "")
    raise ResultsWouldShrink(
        f"refusing to overwrite {path.parent} (nothing written): the new tables rest on fewer runs than the "
        "committed ones.\n  "
        + "\n  ".join(lost)
        + (f"\nruns missing ({len(runs)}):\n  {shown}" if runs else "")
        + "\nFinish them with `rpo run`, or pass --force to overwrite anyway."
    )
