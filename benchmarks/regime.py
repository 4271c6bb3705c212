"""The regime map (issue 12): when does RPO help? DPO, R-DPO and DPO+LS (label smoothing at eps = 1 - eta0)
at several witness-dial levels x noise rates, plus the ceilings (DPO on the true labels, DPO with the
flipped pairs removed) and Bradley-Terry flips at one level.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/regime.py \\
        --dials today 0 0.5 0.75 --noise 0.1 0.2 0.3 --seeds 3 --bt-dial 0.75 --bt-noise 0.3

One cell = ``rpo.toy.study.train_and_measure`` on the dial's world (``today`` is ``WorldConfig()``, the
committed study's world; a number is :func:`rpo.toy.world.dial_world`) with
``rpo.toy.settings.DIAL_SETTINGS`` (the study's, with beta 1.0: benchmarks/dynamic_range.md).
Every (config, seed) result is appended to ``<out>.runs.jsonl`` as it finishes, so a rerun resumes.
Per cell: ``witness_auroc`` is plain DPO's (at that dial, noise and noise model: the AUROC of -d on
training pairs outside its pool, out of sample), ``eta_abs_err`` = |eta_hat - eta_true| and ``auroc_w``
for R-DPO; ``gain`` columns are paired by seed against DPO; ``recovered`` = (method - DPO) /
(DPO on true labels - DPO), :func:`rpo.report.recovery.damage_recovered`, when the ceilings are trained.

PREDICTION (written before any number of this map was looked at; Remark E.1 and Theorem 4.2):
1. Where the witness is weak (today's world, AUROC ~0.7), eta stays near eta0, w near the prior, and
   R-DPO matches DPO+LS: |R-DPO - DPO+LS| within the seed noise, both within the seed noise of DPO.
2. As the witness AUROC rises, eta_abs_err falls and auroc_w rises; R-DPO's gain over DPO grows with
   the noise rate and the witness, and exceeds DPO+LS's gain at the informative levels (AUROC >= 0.85),
   most at 30% flips.
3. R-DPO stays below the ceilings (DPO on true labels / with flips removed) at every cell.
4. Under Bradley-Terry flips (mostly on small-margin pairs, which the policy itself cannot rank) the
   witness is weaker than under symmetric flips at the same level, and R-DPO's gain smaller.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

BASE = {"layout": "single", "eta0": 0.9, "alpha": 0.1, "eta_update": "batch", "objective": "gibbs"}


def _methods(ceilings: bool) -> dict:
    from rpo.core.methods import METHODS

    out = {"DPO": {"method": "dpo", "robust": False}, "R-DPO": {"method": "dpo", "robust": True}}
    if "dpo-ls" in METHODS:  # label smoothing (issue 13's registry key) where it has landed
        out["DPO+LS"] = {"method": "dpo-ls", "robust": False}
    if ceilings:
        out["DPO (clean labels)"] = {"method": "dpo", "robust": False, "labels": "true"}
        out["DPO (flips removed)"] = {"method": "dpo", "robust": False, "labels": "filtered"}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dials", nargs="+", default=["today", "0", "0.5", "0.75"])  # 4 levels
    ap.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--bt-dial", default="0.75", help="the level with Bradley-Terry flips too ('' for none)")
    ap.add_argument("--bt-noise", type=float, nargs="+", default=[0.3], help="noise rates of the BT cells")
    ap.add_argument("--ceilings", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--max-steps", type=int, default=None, help="TrainSettings.max_steps (default: the study's)")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".txt")), help="the summary; the log beside it")
    ap.add_argument("--summary-only", action="store_true", help="no training: the summary from the log")
    a = ap.parse_args()
    torch.set_num_threads(1)

    from rpo.report.regime import summarise
    from rpo.toy.settings import DIAL_SETTINGS
    from rpo.toy.study import train_and_measure
    from rpo.toy.world import build_world, world_config

    settings = DIAL_SETTINGS if a.max_steps is None else replace(DIAL_SETTINGS, max_steps=a.max_steps)
    methods = _methods(a.ceilings)
    cells = [(d, n, "symmetric") for d in a.dials for n in a.noise]
    cells += [(a.bt_dial, n, "bt") for n in a.bt_noise if a.bt_dial]
    log = Path(a.out).with_suffix(".runs.jsonl")
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            r = json.loads(line)
            done[(r["dial"], r["noise"], r["noise_model"], r["method"], r["seed"], r["max_steps"])] = r
    worlds = {}
    t0 = time.perf_counter()
    for seed in range(0 if a.summary_only else a.seeds):  # seed-major: a stopped run leaves whole seeds of the map
        for dial, noise, kind in cells:
            if dial not in worlds:
                worlds[dial] = build_world(world_config(dial), progress=False)
            for label, m in methods.items():
                key = (dial, noise, kind, label, seed, settings.max_steps)
                if key in done:
                    continue
                if m.get("labels") == "true":  # the true labels of the same pool: the same run at every noise
                    twin = next((r for k, r in done.items() if k[0] == dial and k[3:] == key[3:]), None)
                    if twin is not None:
                        done[key] = {**twin, "noise": noise, "noise_model": kind}
                        continue
                cfg = {**BASE, **m, "noise": noise, "noise_kind": kind}
                res = train_and_measure(worlds[dial], cfg, seed, settings, measure_witness=label == "DPO")
                row = {"dial": dial, "noise": noise, "noise_model": kind, "method": label, "seed": seed}
                row.update(max_steps=settings.max_steps, world=worlds[dial].path.name)
                row.update({k: v for k, v in res.items() if not k.startswith("eta_trajectory")})
                done[key] = row
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"[{time.perf_counter() - t0:6.0f}s] {dial} {noise} {kind} {label} seed {seed}: "
                    f"win {row['win_rate']:.3f} acc {row['clean_acc']:.3f}",
                    flush=True,
                )
    runs = [r for r in done.values() if r["max_steps"] == settings.max_steps]
    rows = [r for r in summarise(runs) if (r["dial"], r["noise"], r["noise_model"]) in cells]
    write_txt(rows, Path(a.out).with_suffix(".txt"))


def write_txt(rows: list[dict], path: Path) -> None:
    """The map as a fixed-width table (``rpo tables`` writes results/regime.csv and its figure from the log)."""
    cols = ["dial", "noise", "noise_model", "method", "n_seeds", "witness_auroc", "clean_acc", "win_rate"]
    cols += ["gain_vs_dpo", "gain_vs_dpo_half", "eta_abs_err", "auroc_w", "recovered", "recovered_lo", "recovered_hi"]
    lines = ["  ".join(f"{c:>12}" for c in cols)]
    for r in rows:
        lines.append("  ".join(f"{r[c]:>12.3f}" if isinstance(r[c], float) else f"{str(r[c]):>12}" for c in cols))
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    main()
