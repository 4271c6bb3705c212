"""Collect: the tidy frame of every (config, seed) the runs of a folder reported or failed on, and the
frame a study expects (missing seeds kept as "failed" / "not run", never dropped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from rpo import paths
from rpo.io import read_json
from rpo.pipeline.plan import problem, status
from rpo.pipeline.profiles import Study, get_profile, row_label
from rpo.pipeline.provenance import config_hash

ID_COLS = ("run_id", "config_hash", "seed", "status", "label")


def collect_runs(run_dir) -> tuple[pd.DataFrame, dict]:
    """Tidy frame of every (config, seed) a run in ``run_dir`` reported or failed on.

    Columns: run_id, config_hash, seed, status ("ok" | "failed"), label, the config keys, then one
    column per scalar metric. Also returns ``runs``: run id -> notebook, status, commit, versions.
    Only *done* runs contribute metrics (a metrics JSON left by a killed attempt is ignored; a corrupt
    one is listed in ``runs`` with status "corrupt" and its problem). When ``plan.json`` lists the ids
    the plan expects, other runs in the folder (of older code or parameters) are left out.
    """
    run_dir = Path(run_dir)
    rows, runs = [], {}
    expected = set(_plan(run_dir).get("expected_run_ids") or []) if run_dir.exists() else set()
    for path in sorted(run_dir.glob("*.json")) if run_dir.exists() else []:
        name = path.name
        if name == "plan.json" or name.startswith("."):
            continue
        if expected and name.removesuffix(".json").removesuffix(".failed") not in expected:
            continue  # superseded: not a run of the current plan
        if name.endswith(".failed.json"):
            rid = name.removesuffix(".failed.json")
            if status(run_dir, rid) != "failed":
                continue
            rec = _read(path)
            runs[rid] = {
                "notebook": rec.get("notebook"),
                "status": "failed",
                "error": rec.get("error_type"),
                "git_commit": rec.get("git_commit"),
                "package_versions": rec.get("package_versions"),
            }
            for cfg in (rec.get("params") or {}).get("configs", []):
                base = {k: v for k, v in cfg.items() if k != "seeds"}
                for seed in cfg.get("seeds", []):
                    rows.append(
                        {
                            **_config_cols(base),
                            "run_id": rid,
                            "config_hash": config_hash(base),
                            "seed": seed,
                            "status": "failed",
                        }
                    )
            continue
        rid = name.removesuffix(".json")
        st = status(run_dir, rid)
        if st == "corrupt":  # counted missing, and named, until `rpo run` executes it again
            runs[rid] = {"notebook": None, "status": "corrupt", "error": problem(run_dir, rid)}
            continue
        if st != "done":
            continue
        rec = _read(path)
        runs[rid] = {
            "notebook": (rec.get("pipeline") or {}).get("notebook"),
            "status": "done",
            "git_commit": rec.get("git_commit"),
            "package_versions": rec.get("package_versions"),
        }
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
            rows.append(
                {
                    **_config_cols(cfg),
                    "run_id": rid,
                    "config_hash": config_hash(cfg),
                    "seed": seed,
                    "status": "ok",
                    **scalars,
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(ID_COLS))
    return frame, runs


def _read(path: Path) -> dict:
    rec = read_json(path)  # bad JSON: ValueError naming the file and line
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _config_cols(cfg: dict) -> dict:
    out = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in cfg.items()}
    if "method" in cfg:
        out["label"] = row_label(cfg)
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
    path = Path(run_dir) / "plan.json"
    if not path.exists():
        return {}
    plan = read_json(path)
    if not isinstance(plan, dict):
        raise ValueError(f"{path}: expected a JSON object (the plan of the last `rpo run`), got {type(plan).__name__}")
    return plan


def load_study(
    profile: str, name: str, *, runs_root=None, grid: str | None = None, seeds: int | None = None
) -> tuple[Study, pd.DataFrame]:
    """``(study, frame)`` for the analysis notebooks: the study of that name in the profile (grid and
    seeds of the last ``rpo run`` of that grid), and :func:`study_frame` of the runs found."""
    run_dir = paths.run_dir(profile, grid or "full", runs_root)
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
    expected = set(_plan(run_dir).get("expected_run_ids") or []) if run_dir.exists() else set()
    for path in sorted(run_dir.glob("*.json")):
        rid = path.name.removesuffix(".json")
        if path.name == "plan.json" or rid.endswith(".failed") or status(run_dir, rid) != "done":
            continue
        if expected and rid not in expected:  # superseded, as in collect_runs
            continue
        metrics = _read(path).get("metrics")
        for item in metrics if isinstance(metrics, list) else []:
            yield rid, dict(item["config"]), dict(item["metrics"])


def eta_trajectories(
    profile: str, grid: str, frame: pd.DataFrame, *, runs_root=None, method: str = "dpo", seed: int = 0
) -> list[tuple]:
    """``(layout, noise, annotator k, eta trajectory)`` of every robust run of ``method`` and ``seed`` whose
    (layout, noise) is a row of ``frame`` (a study frame, e.g. Figure 2's), in run-id order."""
    wanted = {(r["layout"], r["noise"]) for _, r in frame.iterrows()}
    return [
        (c["layout"], c["noise"], k, m[f"eta_trajectory_{k}"])
        for _, c, m in iter_records(paths.run_dir(profile, grid, runs_root))
        if c.get("robust")
        and c.get("seed") == seed
        and (c.get("layout"), c.get("noise")) in wanted
        and c.get("method") == method
        for k in (1, 2)
        if f"eta_trajectory_{k}" in m
    ]
