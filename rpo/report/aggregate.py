"""Aggregate: every table cell a mean over seeds with a 95% t-interval (:func:`rpo.core.stats.t_interval`),
missing seeds counted; the rows of a study's table, with RPO's paired gains."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rpo.core.stats import t_interval
from rpo.pipeline.profiles import Study
from rpo.report.recovery import damage_recovered


def cell(frame: pd.DataFrame, metric: str) -> dict:
    """Aggregate one table cell (the rows of ``frame``: every expected seed of one config)."""
    ok = frame[frame["status"] == "ok"]
    vals = ok[metric].astype(float).tolist() if metric in ok else []
    mean, half = t_interval(vals)
    return {
        "mean": mean,
        "half": half,
        "n": len(ok),
        "n_expected": len(frame),
        "n_failed": int((frame["status"] == "failed").sum()),
        "n_not_run": int((frame["status"] == "not run").sum()),
        "n_nan": int(sum(math.isnan(v) for v in vals)),
        "run_ids": sorted(set(frame["run_id"].dropna())),
        "config_hashes": sorted(set(frame["config_hash"])),
    }


def format_cell(c: dict, digits: int = 3, sign: bool = False) -> str:
    """ "0.612 ± 0.031"; "missing (2/5 seeds failed)" when any expected seed is absent; "n/a" when the
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
            keyd = dict(zip(study.rows, keys))
            base = keyd["label"].removeprefix("R-")
            gain = _gain_row(study, frame, grp, keyd, labels, columns, base, f"RPO gain ({keyd['label']} − {base})")
            if gain is not None:
                rows.append(gain)
            if (frame["label"] == f"{base}+LS").any():  # at initialisation R-X *is* X+LS: what the E-step adds
                ls = f"{base}+LS"
                rows.append(
                    _gain_row(study, frame, grp, keyd, labels, columns, ls, f"E-step gain ({keyd['label']} − {ls})")
                )
    if study.recovery:
        base, ceiling, methods = study.recovery
        grp = frame[frame["label"] == ceiling]
        damage = _gain_row(
            study, frame, grp, {"label": ceiling}, labels, columns, base, f"noise damage ({ceiling} − {base})"
        )
        rows += [damage] if damage is not None else []
        rows += [_recovery_row(study, frame, m, labels, columns) for m in methods]
    return labels, rows


def _recovery_row(study, frame, method, labels, columns):
    """The share of the noise damage ``method`` recovers, (method - base) / (ceiling - base), per column,
    over the seeds where all three runs are ok (:func:`rpo.report.recovery.damage_recovered`)."""
    base, ceiling, _ = study.recovery
    cells = {}
    for label, (v, m) in zip(labels, columns):
        sub = frame if v is None else frame[frame[study.columns] == v]
        three = [sub[sub["label"] == lab].set_index("seed") for lab in (method, base, ceiling)]
        seeds = sorted(set().union(*(t.index for t in three)))
        status = {s: {t.loc[s, "status"] if s in t.index else "not run" for t in three} for s in seeds}
        ok = [s for s in seeds if status[s] == {"ok"}]
        if not ok or m not in sub:
            cells[label] = None
            continue
        r = damage_recovered(*([float(t.loc[s, m]) for s in ok] for t in three))
        c = {
            "mean": r["share"],
            "half": (r["hi"] - r["lo"]) / 2,
            "lo": r["lo"],
            "hi": r["hi"],
            "n": len(ok),
            "n_expected": len(seeds),
            "n_failed": sum("failed" in st for st in status.values()),
            "n_not_run": sum(st != {"ok"} and "failed" not in st for st in status.values()),
            "n_nan": 0,
            "run_ids": sorted({rid for t in three for rid in t["run_id"].dropna()}),
            "config_hashes": sorted({h for t in three for h in t["config_hash"]}),
        }
        if len(ok) < len(seeds):
            c["text"] = format_cell(c, study.digits)
        elif r["resolved"]:
            c["text"] = f"{r['share']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
        else:  # a share of a damage the seeds do not resolve (the noise damage row) is not a result
            c["text"] = "n/a (damage not resolved)"
        cells[label] = c
    return {"keys": {"label": f"share of the noise damage recovered: {method}"}, "gain": False, "cells": cells}


def _gain_row(study, frame, grp, keys, labels, columns, base_label: str, name: str):
    """``grp`` minus the ``base_label`` row (R-X minus X), paired by seed (same seed: same data and initial
    model), for every column."""
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
        diff["status"] = np.where(
            (pair["status"] == "ok") & (pair["status_base"] == "ok"),
            "ok",
            np.where((pair["status"] == "failed") | (pair["status_base"] == "failed"), "failed", "not run"),
        )
        diff["run_id"] = pair["run_id"]
        c = cell(diff, m)
        c["run_ids"] = sorted(set(pair["run_id"].dropna()) | set(pair["run_id_base"].dropna()))
        c["config_hashes"] = sorted(set(pair["config_hash"]) | set(pair["config_hash_base"]))
        c["text"] = format_cell(c, study.digits, sign=True)
        cells[label] = c
    return {"keys": {**keys, "label": name}, "gain": True, "cells": cells}


def _fmt_key(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
