"""``rpo tables``: every study of a profile -> ``results/<study>.{md,csv,tex}`` (+ .png/.svg) and
``results/manifest.json``, which maps each number to its run ids, config hashes, git commits and package
versions; and the README's results block, regenerated from the same Markdown (never typed by hand).
Nothing written here carries a timestamp, so the same runs give the same files byte for byte."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from rpo import paths
from rpo.io import atomic_write_json, atomic_write_text, read_json
from rpo.pipeline.profiles import Profile, Study, get_profile
from rpo.pipeline.provenance import git_commit, package_versions
from rpo.report.aggregate import build_table
from rpo.report.collect import _plan, collect_runs, load_study, study_frame
from rpo.report.figures import plot_figure
from rpo.report.notebooks import write_reading_copies
from rpo.report.refusal import check as check_not_shrinking
from rpo.report.regime import build_regime
from rpo.report.render import to_csv, to_latex, to_markdown


def study_markdown(
    profile: str, name: str, *, runs_root=None, grid: str | None = None
) -> tuple[Study, pd.DataFrame, str]:
    """For an analysis notebook: :func:`load_study`, and the study's table as Markdown."""
    study, frame = load_study(profile, name, runs_root=runs_root, grid=grid)
    return study, frame, to_markdown(study, *build_table(study, frame))


def build(
    profile: str | Profile = "toy",
    *,
    grid: str | None = None,
    seeds: int | None = None,
    runs_root=None,
    results_dir=None,
    figures: bool = True,
    studies=None,
    force: bool = False,
    reading_copies: bool | None = None,
) -> dict:
    """``rpo tables``: every study of the profile -> results/<study>.{md,csv,tex} (+ .png/.svg) and
    results/manifest.json. The grid and seeds default to those of the last ``rpo run`` (plan.json).
    Nothing is written when the tables would rest on fewer runs than the manifest already in
    ``results_dir`` (:class:`~rpo.report.refusal.ResultsWouldShrink`, naming the missing runs), unless
    ``force``. On the full grid of a profile given by name (or with ``reading_copies=True``), the executed
    notebooks are copied into ``results_dir/notebooks/`` once every run of the study is done
    (:mod:`rpo.report.notebooks`); the manifest's ``notebooks`` names them, and keeps naming the copies
    already there when they are not rewritten."""
    name = profile.name if isinstance(profile, Profile) else profile
    run_dir = paths.run_dir(name, grid or "full", runs_root)
    plan = _plan(run_dir)
    prof = profile if isinstance(profile, Profile) else get_profile(profile, grid or "full")
    found, runs = collect_runs(run_dir)
    results_dir = Path(paths.results() if results_dir is None else results_dir)
    manifest = {
        "profile": prof.name,
        "grid": grid or plan.get("grid", "full"),
        "tables_git_commit": git_commit(),
        "tables_package_versions": package_versions(),
        "tables": {},
        "runs": {},
    }
    used = set()
    computed = []  # everything is computed, and checked against what is there, before anything is written
    for study in studies or prof.studies:
        n = seeds or plan.get("seeds", {}).get(study.name) or study.seeds
        frame = study_frame(study, n, found)
        labels, rows = build_table(study, frame)
        files = {}
        computed.append((study, frame, labels, rows, files))
        cells = []
        for r in rows:
            for lab in labels:
                c = r["cells"][lab]
                if c is None:
                    continue
                used.update(c["run_ids"])
                cells.append(
                    {
                        "row": {k: r["keys"][k] for k in study.rows},
                        "column": lab,
                        "gain": r["gain"],
                        "text": c["text"],
                        "mean": None if math.isnan(c["mean"]) else c["mean"],
                        "ci95_half_width": None if math.isnan(c["half"]) else c["half"],
                        "n": c["n"],
                        "n_expected": c["n_expected"],
                        "n_failed": c["n_failed"],
                        "n_not_run": c["n_not_run"],
                        "run_ids": c["run_ids"],
                        "config_hashes": c["config_hashes"],
                        "git_commits": sorted({runs[i]["git_commit"] for i in c["run_ids"] if i in runs}),
                    }
                )
        manifest["tables"][study.name] = {"title": study.title, "seeds": n, "files": files, "cells": cells}
    manifest["runs"] = {rid: runs[rid] for rid in sorted(runs)}
    if not force:
        check_not_shrinking(manifest, results_dir, run_dir, plan)
    for study, frame, labels, rows, files in computed:
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            files[ext] = atomic_write_text(results_dir / f"{study.name}.{ext}", render(study, labels, rows)).name
        if figures and study.figure is not None:
            for p in plot_figure(study, frame, results_dir / study.name):
                files[p.suffix[1:]] = p.name
    if prof.regime and studies is None and (paths.root() / prof.regime[0]).exists():
        log, steps = prof.regime  # the map's runs; a shorter trial in the log is left out
        manifest["regime"] = build_regime(log, results_dir, figures=figures, max_steps=steps)
    if reading_copies is None:
        reading_copies = not isinstance(profile, Profile)
    copies = None
    if reading_copies and manifest["grid"] == "full":
        copies = write_reading_copies(prof, run_dir, results_dir)
    if copies is None and (results_dir / "manifest.json").exists():  # the copies on disk stay, as they were
        copies = read_json(results_dir / "manifest.json").get("notebooks")
    if copies:
        manifest["notebooks"] = copies
    atomic_write_json(results_dir / "manifest.json", manifest)
    return manifest


README_START = "<!-- results:start (written by `rpo tables`; do not edit by hand) -->"
README_END = "<!-- results:end -->"


def update_readme(readme, manifest: dict, results_dir=None) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` of ``readme`` with every
    table of ``manifest`` (the Markdown files just written) and links to its figures, so the numbers the
    README shows are regenerated with the tables, never typed. Returns False when the markers are absent."""
    readme, results_dir = Path(readme), Path(paths.results() if results_dir is None else results_dir)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    rel = Path(os.path.relpath(results_dir.resolve(), readme.resolve().parent))
    parts = [
        README_START,
        "",
        f"Profile `{manifest['profile']}`, grid `{manifest['grid']}`; tables built at commit "
        f"`{manifest['tables_git_commit']}`; every cell's run ids are in `{rel.as_posix()}/manifest.json`.",
        "",
    ]
    copies = manifest.get("notebooks") or {}
    by_run = {c["run_id"]: name for name, c in copies.items()}

    def link(name: str) -> str:
        return f"[{name}]({(rel / copies[name]['file']).as_posix()})"

    if copies:
        others = [n for n, c in copies.items() if not any(n == by_run.get(i) for i in _table_runs(manifest))]
        parts += [
            "Executed notebooks, with their outputs (reading copies; re-run the `.py` in `notebooks/`): "
            + ", ".join(link(n) for n in others)
            + "; the training runs behind each table are linked under it.",
            "",
        ]
    for name, table in manifest["tables"].items():
        parts += [(results_dir / table["files"]["md"]).read_text().strip(), ""]
        if "png" in table["files"]:
            parts += [f"![{name}]({(rel / table['files']['png']).as_posix()})", ""]
        behind = sorted({by_run[i] for c in table.get("cells", []) for i in c["run_ids"] if i in by_run})
        if behind:
            parts += ["Notebooks behind this table: " + ", ".join(link(n) for n in behind), ""]
    regime = manifest.get("regime")
    if regime:
        parts += [(results_dir / regime["files"]["md"]).read_text().strip(), ""]
        if "png" in regime["files"]:
            parts += [f"![regime]({(rel / regime['files']['png']).as_posix()})", ""]
    parts.append(README_END)
    head, rest = text.split(README_START, 1)
    atomic_write_text(readme, head + "\n".join(parts) + rest.split(README_END, 1)[1])
    return True


def _table_runs(manifest: dict) -> set[str]:
    """Every run id some table cell of ``manifest`` rests on."""
    return {i for table in manifest["tables"].values() for c in table.get("cells", []) for i in c["run_ids"]}
