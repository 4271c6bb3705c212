"""The witness dial, measured (issue 12): per dial level of the witness-dial world family
(:func:`rpo.toy.world.dial_world`), the AUROC with which plain DPO's eq. 2 log-odds separate flipped from
clean *training* pairs, scored out of sample by 2-fold cross-fitting (:func:`rpo.toy.witness.cross_fit_witness`),
and the fold policies' clean preference accuracy and win rate against the reference.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/witness.py

Decision rule, written before any RPO number of the dial worlds was looked at: the *informative* level is
the lowest dial level whose mean plain-DPO witness AUROC (at the study's noise 0.2) is >= 0.85; the
*weak* level is today's world (``WorldConfig()``, printed as ``today``). Outputs: witness.{json,txt}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

INFORMATIVE_AUROC = 0.85  # the pre-declared rule (module doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", type=float, nargs="+", default=None, help="dial levels (default DIAL_LEVELS)")
    ap.add_argument("--today", action=argparse.BooleanOptionalAction, default=True, help="also today's world")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    a = ap.parse_args()
    torch.set_num_threads(1)

    from rpo.toy.metrics import mean_ci
    from rpo.toy.settings import TrainSettings
    from rpo.toy.witness import cross_fit_witness
    from rpo.toy.world import DIAL_LEVELS, WorldConfig, build_world, dial_world

    settings = TrainSettings()
    levels = [("today", WorldConfig())] if a.today else []
    levels += [(f"{w:g}", dial_world(w)) for w in (a.levels or DIAL_LEVELS)]
    rows, lines = [], []
    header = "level   world          witness_auroc     clean_acc         win_rate          s/level"
    print(header, flush=True)
    for name, cfg in levels:
        t0 = time.perf_counter()
        world = build_world(cfg, progress=False)
        runs = [cross_fit_witness(world, a.noise, seed, settings) for seed in range(a.seeds)]
        row = {
            "level": name,
            "world": world.path.name,
            "config": {"style_rate": cfg.style_rate, "style_weight": cfg.style_weight},
            "noise": a.noise,
            "n_seeds": a.seeds,
            "runs": runs,
        }
        for k in ("witness_auroc", "clean_acc", "win_rate"):
            row[k] = mean_ci([r[k] for r in runs])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        line = (
            f"{name:<7} {world.path.name:<14} "
            + "  ".join(
                f"{m:.3f} +- {h:.3f}" if h == h else f"{m:.3f}         "
                for m, h in (row[k] for k in ("witness_auroc", "clean_acc", "win_rate"))
            )
            + f"  {row['seconds']:.0f}"
        )
        lines.append(line)
        print(line, flush=True)
    dial_rows = [r for r in rows if r["level"] != "today"]
    informative = next((r["level"] for r in dial_rows if r["witness_auroc"][0] >= INFORMATIVE_AUROC), None)
    verdict = (
        f"informative level (lowest with witness AUROC >= {INFORMATIVE_AUROC}): {informative}; "
        f"dial span of witness AUROC: {min(r['witness_auroc'][0] for r in dial_rows):.3f} .. "
        f"{max(r['witness_auroc'][0] for r in dial_rows):.3f}"
        if dial_rows
        else "no dial level measured"
    )
    print(verdict)
    result = {
        "args": vars(a),
        "settings": settings.to_dict(),
        "rule": f"lowest level with AUROC >= {INFORMATIVE_AUROC}",
        "informative_level": informative,
        "rows": rows,
    }
    tmp = a.out + ".tmp"
    Path(tmp).write_text(json.dumps(result, indent=1))
    os.replace(tmp, a.out)
    txt = Path(a.out).with_suffix(".txt")
    txt.write_text(
        f"$ OMP_NUM_THREADS=1 .venv/bin/python benchmarks/witness.py  (noise {a.noise}, {a.seeds} seed(s), "
        f"2-fold cross-fitting, plain DPO, TrainSettings())\n" + "\n".join([header, *lines, verdict]) + "\n"
    )


if __name__ == "__main__":
    main()
