"""Rebuild results/ from whatever runs exist: tables (Markdown, CSV, LaTeX), figures (PNG, SVG), manifest.

Every table cell is a mean over seeds with a 95% t-interval (mean +- t_{0.975, n-1} s / sqrt(n)). What a
study *expects* comes from its profile (``rpo.profiles``), not from the runs found, so a (config, seed)
whose run failed or never ran is shown as missing ("missing (2/5 seeds failed)"), never dropped. A cell
is only given a number when all its seeds are there: a partial mean would not be the number an
uninterrupted run gives. ``results/manifest.json`` maps each number to its run ids, config hashes, git
commits and package versions. Nothing written here carries a timestamp, so the same runs give the same
files byte for byte.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rpo.pipeline import (RUNS, run_dir_of, atomic_write_json, atomic_write_text, config_hash, git_commit,
                          package_versions, status)
from rpo.profiles import Profile, Study, get_profile, method_label

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
ID_COLS = ("run_id", "config_hash", "seed", "status", "label")


# ---------------------------------------------------------------- collect

def collect_runs(run_dir) -> tuple[pd.DataFrame, dict]:
    """Tidy frame of every (config, seed) a run in ``run_dir`` reported or failed on.

    Columns: run_id, config_hash, seed, status ("ok" | "failed"), label, the config keys, then one
    column per scalar metric. Also returns ``runs``: run id -> notebook, status, commit, versions.
    Only *done* runs contribute metrics (a metrics JSON left by a killed attempt is ignored).
    """
    run_dir = Path(run_dir)
    rows, runs = [], {}
    for path in sorted(run_dir.glob("*.json")) if run_dir.exists() else []:
        name = path.name
        if name == "plan.json" or name.startswith("."):
            continue
        if name.endswith(".failed.json"):
            rid = name.removesuffix(".failed.json")
            if status(run_dir, rid) != "failed":
                continue
            rec = _read(path)
            runs[rid] = {"notebook": rec.get("notebook"), "status": "failed", "error": rec.get("error_type"),
                         "git_commit": rec.get("git_commit"), "package_versions": rec.get("package_versions")}
            for cfg in (rec.get("params") or {}).get("configs", []):
                base = {k: v for k, v in cfg.items() if k != "seeds"}
                for seed in cfg.get("seeds", []):
                    rows.append({**_config_cols(base), "run_id": rid, "config_hash": config_hash(base),
                                 "seed": seed, "status": "failed"})
            continue
        rid = name.removesuffix(".json")
        if status(run_dir, rid) != "done":
            continue
        rec = _read(path)
        runs[rid] = {"notebook": (rec.get("pipeline") or {}).get("notebook"), "status": "done",
                     "git_commit": rec.get("git_commit"), "package_versions": rec.get("package_versions")}
        metrics = rec.get("metrics")
        if not isinstance(metrics, list):
            continue  # a whole-run record (derivations, analysis notebooks): provenance only
        for i, item in enumerate(metrics):
            cfg = dict(item.get("config") or {})
            if "seed" not in cfg:
                raise ValueError(f"{path}: metrics[{i}].config has no 'seed'")
            seed = cfg.pop("seed")
            cfg.pop("seeds", None)
            scalars = {k: _scalar(v) for k, v in (item.get("metrics") or {}).items() if _is_scalar(v)}
            clash = sorted(set(scalars) & (set(cfg) | set(ID_COLS)))
            if clash:
                raise ValueError(f"{path}: metrics[{i}] metric name(s) {clash} clash with config/id columns")
            rows.append({**_config_cols(cfg), "run_id": rid, "config_hash": config_hash(cfg), "seed": seed,
                         "status": "ok", **scalars})
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(ID_COLS))
    return frame, runs


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _config_cols(cfg: dict) -> dict:
    out = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in cfg.items()}
    if "method" in cfg:
        out["label"] = method_label(cfg)
    return out


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float))


def _scalar(v):
    return float("nan") if v is None else float(v)


def study_frame(study: Study, seeds: int, found: pd.DataFrame) -> pd.DataFrame:
    """One row per (config, seed) the study expects, with its status ("ok" | "failed" | "not run"),
    run id and metrics. Duplicates (one config trained by two runs) resolve to the smallest run id,
    which is deterministic."""
    expected = []
    for order, cfg in enumerate(study.configs):
        h = config_hash(cfg)
        for seed in range(seeds):
            expected.append({**_config_cols(cfg), "config_hash": h, "seed": seed, "_order": order})
    exp = pd.DataFrame(expected)
    if found.empty:
        got = pd.DataFrame(columns=["config_hash", "seed", "status", "run_id"])
    else:
        # prefer an ok record over a failed one, then the smallest run id
        got = found.assign(_rank=(found["status"] != "ok").astype(int)).sort_values(["_rank", "run_id"])
        got = got.drop_duplicates(["config_hash", "seed"]).drop(columns="_rank")
        got = got.drop(columns=[c for c in got.columns if c in exp.columns and c not in ("config_hash", "seed")])
    out = exp.merge(got, on=["config_hash", "seed"], how="left")
    out["status"] = out["status"].fillna("not run")
    for m in study.metrics:
        if m not in out.columns:
            out[m] = np.nan
    return out.sort_values(["_order", "seed"]).reset_index(drop=True)


def _plan(run_dir: Path) -> dict:
    return json.loads((run_dir / "plan.json").read_text()) if (run_dir / "plan.json").exists() else {}


def load_study(profile: str, name: str, *, runs_root=RUNS, grid: str | None = None,
               seeds: int | None = None) -> tuple[Study, pd.DataFrame]:
    """``(study, frame)`` for the analysis notebooks: the study of that name in the profile (grid and
    seeds of the last ``rpo run`` of that grid), and :func:`study_frame` of the runs found."""
    run_dir = run_dir_of(profile, grid or "full", runs_root)
    plan = _plan(run_dir)
    prof = get_profile(profile, grid or "full")
    studies = {s.name: s for s in prof.studies}
    if name not in studies:
        raise ValueError(f"profile {profile!r} has no study {name!r}; it has {sorted(studies)}")
    study = studies[name]
    found, _ = collect_runs(run_dir)
    return study, study_frame(study, seeds or plan.get("seeds", {}).get(name) or study.seeds, found)


def iter_records(run_dir):
    """``(run_id, config with seed, metrics)`` of every done run, non-scalar metrics included
    (e.g. eta trajectories), in run-id order."""
    run_dir = Path(run_dir)
    for path in sorted(run_dir.glob("*.json")):
        rid = path.name.removesuffix(".json")
        if path.name == "plan.json" or rid.endswith(".failed") or status(run_dir, rid) != "done":
            continue
        metrics = _read(path).get("metrics")
        for item in metrics if isinstance(metrics, list) else []:
            yield rid, dict(item["config"]), dict(item["metrics"])


# ---------------------------------------------------------------- aggregate

def t_interval(values) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval; half-width NaN for fewer than 2 values."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def cell(frame: pd.DataFrame, metric: str) -> dict:
    """Aggregate one table cell (the rows of ``frame``: every expected seed of one config)."""
    ok = frame[frame["status"] == "ok"]
    vals = ok[metric].astype(float).tolist() if metric in ok else []
    mean, half = t_interval(vals)
    return {"mean": mean, "half": half, "n": len(ok), "n_expected": len(frame),
            "n_failed": int((frame["status"] == "failed").sum()),
            "n_not_run": int((frame["status"] == "not run").sum()),
            "n_nan": int(sum(math.isnan(v) for v in vals)),
            "run_ids": sorted(set(frame["run_id"].dropna())),
            "config_hashes": sorted(set(frame["config_hash"]))}


def format_cell(c: dict, digits: int = 3, sign: bool = False) -> str:
    """"0.612 ± 0.031"; "missing (2/5 seeds failed)" when any expected seed is absent; "n/a" when the
    runs are there but did not report this metric."""
    missing = c["n_expected"] - c["n"]
    if missing:
        if c["n_failed"] and c["n_not_run"]:
            why = f"{c['n_failed']} failed, {c['n_not_run']} not run"
            return f"missing ({missing}/{c['n_expected']} seeds: {why})"
        return f"missing ({missing}/{c['n_expected']} seeds {'failed' if c['n_failed'] else 'not run'})"
    if math.isnan(c["mean"]) or c["n_nan"]:
        return "n/a"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    if math.isnan(c["half"]):
        return fmt.format(c["mean"]) + f" (n={c['n']})"
    return f"{fmt.format(c['mean'])} ± {c['half']:.{digits}f}"


def build_table(study: Study, frame: pd.DataFrame) -> tuple[list[str], list[dict]]:
    """Rows of a study's table: ``(column labels, rows)``; each row has "keys" (row key values),
    "gain" (bool) and "cells" (column label -> cell dict with "text")."""
    if study.columns:
        col_vals = list(dict.fromkeys(frame[study.columns]))
        if all(isinstance(v, (int, float)) for v in col_vals):
            col_vals = sorted(col_vals)
        columns = [(v, m) for v in col_vals for m in study.metrics]
        labels = [_fmt_key(v) if len(study.metrics) == 1 else f"{_fmt_key(v)}: {m}" for v, m in columns]
    else:
        columns, labels = [(None, m) for m in study.metrics], list(study.metrics)
    rows = []
    for keys, grp in frame.groupby(list(study.rows), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = {}
        for label, (v, m) in zip(labels, columns):
            sub = grp if v is None else grp[grp[study.columns] == v]
            c = cell(sub, m) if len(sub) else None
            if c is not None:
                c["text"] = format_cell(c, study.digits)
            cells[label] = c
        rows.append({"keys": dict(zip(study.rows, keys)), "gain": False, "cells": cells})
        if study.gains and "label" in study.rows and str(keys[study.rows.index("label")]).startswith("R-"):
            gain = _gain_row(study, frame, grp, dict(zip(study.rows, keys)), labels, columns)
            if gain is not None:
                rows.append(gain)
    return labels, rows


def _gain_row(study, frame, grp, keys, labels, columns):
    """R-X minus X, paired by seed (same seed: same data and initial model), for every column."""
    base_label = keys["label"].removeprefix("R-")
    base = frame[frame["label"] == base_label]
    for k, v in keys.items():
        if k != "label":
            base = base[base[k] == v]
    if base.empty:
        return None
    cells = {}
    for label, (v, m) in zip(labels, columns):
        r = grp if v is None else grp[grp[study.columns] == v]
        b = base if v is None else base[base[study.columns] == v]
        pair = r.merge(b, on="seed", suffixes=("", "_base"))
        diff = pair.assign(**{m: pair[m].astype(float) - pair[f"{m}_base"].astype(float)})
        # a pair is ok only when both of its runs are
        diff["status"] = np.where((pair["status"] == "ok") & (pair["status_base"] == "ok"), "ok",
                                  np.where((pair["status"] == "failed") | (pair["status_base"] == "failed"),
                                           "failed", "not run"))
        diff["run_id"] = pair["run_id"]
        c = cell(diff, m)
        c["run_ids"] = sorted(set(pair["run_id"].dropna()) | set(pair["run_id_base"].dropna()))
        c["config_hashes"] = sorted(set(pair["config_hash"]) | set(pair["config_hash_base"]))
        c["text"] = format_cell(c, study.digits, sign=True)
        cells[label] = c
    return {"keys": {**keys, "label": f"RPO gain ({keys['label']} − {base_label})"}, "gain": True,
            "cells": cells}


def _fmt_key(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- render

def study_markdown(profile: str, name: str, *, runs_root=RUNS,
                   grid: str | None = None) -> tuple[Study, pd.DataFrame, str]:
    """For an analysis notebook: :func:`load_study`, and the study's table as Markdown."""
    study, frame = load_study(profile, name, runs_root=runs_root, grid=grid)
    return study, frame, to_markdown(study, *build_table(study, frame))


def to_markdown(study: Study, labels, rows) -> str:
    head = list(study.rows) + labels
    out = [f"**{study.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [_fmt_key(r["keys"][k]) for k in study.rows] + [_text(r["cells"][lab]) for lab in labels]
        if r["gain"]:
            vals = [f"**{v}**" for v in vals]
        out.append("| " + " | ".join(vals) + " |")
    out += ["", "Mean ± half-width of the 95% t-interval over seeds; RPO gains are paired by seed."
            if study.gains else "Mean ± half-width of the 95% t-interval over seeds.", ""]
    return "\n".join(out)


def to_csv(study: Study, labels, rows) -> str:
    recs = []
    for r in rows:
        for lab in labels:
            c = r["cells"][lab]
            recs.append({**{k: r["keys"][k] for k in study.rows}, "column": lab, "gain": r["gain"],
                         "mean": None if c is None else c["mean"],
                         "ci95_low": None if c is None else c["mean"] - c["half"],
                         "ci95_high": None if c is None else c["mean"] + c["half"],
                         "n": None if c is None else c["n"], "n_expected": None if c is None else c["n_expected"],
                         "n_failed": None if c is None else c["n_failed"],
                         "n_not_run": None if c is None else c["n_not_run"], "text": _text(c)})
    buf = io.StringIO()
    pd.DataFrame(recs).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


def to_latex(study: Study, labels, rows) -> str:
    head = [_tex(k) for k in study.rows] + [_tex(lab) for lab in labels]
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(study.title)}}}", rf"\label{{tab:{study.name}}}",
           r"\begin{tabular}{" + "l" * len(study.rows) + "c" * len(labels) + "}", r"\toprule",
           " & ".join(head) + r" \\", r"\midrule"]
    for r in rows:
        vals = [_tex(_fmt_key(r["keys"][k])) for k in study.rows] + [_tex(_text(r["cells"][lab])) for lab in labels]
        if r["gain"]:
            vals = [rf"\textbf{{{v}}}" for v in vals]
        out.append(" & ".join(vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def _text(c) -> str:
    return "—" if c is None else c["text"]


def _tex(s: str) -> str:
    s = str(s)
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("−", r"$-$")


def plot_figure(study: Study, frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Mean and 95% t-interval of each series against x; PNG and SVG; missing runs named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    spec = study.figure
    sns.set_theme(style="whitegrid", context="paper")
    plt.rcParams["svg.hashsalt"] = "rpo"  # deterministic SVG ids
    facets = list(dict.fromkeys(frame[spec.col])) if spec.col else [None]
    fig, axes = plt.subplots(1, len(facets), figsize=(4.2 * len(facets), 3.4), squeeze=False, sharey=True)
    palette = iter(sns.color_palette("colorblind", 16))
    colours = {}
    for ax, facet in zip(axes[0], facets):
        sub = frame if facet is None else frame[frame[spec.col] == facet]
        hues = list(dict.fromkeys(sub[spec.hue])) if spec.hue else [None]
        for hue in hues:
            part = sub if hue is None else sub[sub[spec.hue] == hue]
            for y in spec.y:
                name = " ".join(str(s) for s in (hue, y if len(spec.y) > 1 or hue is None else None) if s)
                pts = []
                for x, grp in part.groupby(spec.x, sort=True):
                    c = cell(grp, y)
                    if c["n"] == c["n_expected"] and not math.isnan(c["mean"]) and not c["n_nan"]:
                        pts.append((x, c["mean"], 0.0 if math.isnan(c["half"]) else c["half"]))
                if not pts:
                    continue
                xs, ms, hs = map(np.asarray, zip(*pts))
                col = colours.setdefault(name, next(palette))
                ax.plot(xs, ms, marker="o", color=col, label=name)
                ax.fill_between(xs, ms - hs, ms + hs, color=col, alpha=0.2, linewidth=0)
        if spec.diagonal:
            lo, hi = ax.get_xlim()
            ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8)
        ax.set_xlabel(spec.xlabel or spec.x)
        ax.set_title("" if facet is None else f"{spec.col} = {facet}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel(spec.ylabel or ", ".join(spec.y))
    n_missing = int((frame["status"] != "ok").sum())
    title = study.title + (f"\n(missing: {n_missing}/{len(frame)} (config, seed) runs; points not drawn)"
                           if n_missing else "")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in out:
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=path.suffix[1:], dpi=150,
                    metadata={"Date": None} if path.suffix == ".svg" else {"Software": None})
        tmp.replace(path)
    plt.close(fig)
    return out


# ---------------------------------------------------------------- build

def build(profile: str | Profile = "toy", *, grid: str | None = None, seeds: int | None = None, runs_root=RUNS,
          results_dir=RESULTS, figures: bool = True, studies=None) -> dict:
    """``rpo tables``: every study of the profile -> results/<study>.{md,csv,tex} (+ .png/.svg) and
    results/manifest.json. The grid and seeds default to those of the last ``rpo run`` (plan.json)."""
    name = profile.name if isinstance(profile, Profile) else profile
    run_dir = run_dir_of(name, grid or "full", runs_root)
    plan = _plan(run_dir)
    prof = profile if isinstance(profile, Profile) else get_profile(profile, grid or "full")
    found, runs = collect_runs(run_dir)
    results_dir = Path(results_dir)
    manifest = {"profile": prof.name, "grid": grid or plan.get("grid", "full"), "tables_git_commit": git_commit(),
                "tables_package_versions": package_versions(), "tables": {}, "runs": {}}
    used = set()
    for study in studies or prof.studies:
        n = seeds or plan.get("seeds", {}).get(study.name) or study.seeds
        frame = study_frame(study, n, found)
        labels, rows = build_table(study, frame)
        files = {}
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            files[ext] = atomic_write_text(results_dir / f"{study.name}.{ext}", render(study, labels, rows)).name
        if figures and study.figure is not None:
            for p in plot_figure(study, frame, results_dir / study.name):
                files[p.suffix[1:]] = p.name
        cells = []
        for r in rows:
            for lab in labels:
                c = r["cells"][lab]
                if c is None:
                    continue
                used.update(c["run_ids"])
                cells.append({"row": {k: r["keys"][k] for k in study.rows}, "column": lab, "gain": r["gain"],
                              "text": c["text"], "mean": None if math.isnan(c["mean"]) else c["mean"],
                              "ci95_half_width": None if math.isnan(c["half"]) else c["half"],
                              "n": c["n"], "n_expected": c["n_expected"], "n_failed": c["n_failed"],
                              "n_not_run": c["n_not_run"], "run_ids": c["run_ids"],
                              "config_hashes": c["config_hashes"],
                              "git_commits": sorted({runs[i]["git_commit"] for i in c["run_ids"] if i in runs})})
        manifest["tables"][study.name] = {"title": study.title, "seeds": n, "files": files, "cells": cells}
    manifest["runs"] = {rid: runs[rid] for rid in sorted(runs)}
    atomic_write_json(results_dir / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------- README

README_START = "<!-- results:start (written by `rpo tables`; do not edit by hand) -->"
README_END = "<!-- results:end -->"


def update_readme(readme, manifest: dict, results_dir=RESULTS) -> bool:
    """Replace the block between :data:`README_START` and :data:`README_END` of ``readme`` with every
    table of ``manifest`` (the Markdown files just written) and links to its figures, so the numbers the
    README shows are regenerated with the tables, never typed. Returns False when the markers are absent."""
    readme, results_dir = Path(readme), Path(results_dir)
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    rel = Path(os.path.relpath(results_dir.resolve(), readme.resolve().parent))
    parts = [README_START, "",
             f"Profile `{manifest['profile']}`, grid `{manifest['grid']}`; tables built at commit "
             f"`{manifest['tables_git_commit']}`; every cell's run ids are in `{rel.as_posix()}/manifest.json`.", ""]
    for name, table in manifest["tables"].items():
        parts += [(results_dir / table["files"]["md"]).read_text().strip(), ""]
        if "png" in table["files"]:
            parts += [f"![{name}]({(rel / table['files']['png']).as_posix()})", ""]
    parts.append(README_END)
    head, rest = text.split(README_START, 1)
    atomic_write_text(readme, head + "\n".join(parts) + rest.split(README_END, 1)[1])
    return True
