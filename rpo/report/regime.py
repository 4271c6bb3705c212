"""The regime map (issue 12): when does RPO help? One row per (dial, noise, noise model, method) cell of
``benchmarks/regime.py``'s per-run log (``benchmarks/regime.runs.jsonl``, committed), summarised into
``results/regime.csv`` and a figure of RPO's and smoothing's gain against the witness AUROC.

The trainings are the benchmark's (about 50 minutes on one core for 4 dial levels x 3 noise rates x 3 seeds, too
long for ``make reproduce``); ``rpo tables`` regenerates the table and figure from the log and traces them in
``results/manifest.json`` by the log's SHA-256 and the benchmark's command (the log's git history says when
each part of it was trained).

Per cell: ``witness_auroc`` is plain DPO's (the AUROC of eq. 2's -d for flipped training pairs outside its own
pool, out of sample); ``eta_abs_err`` = |eta_hat - eta_true| and ``auroc_w`` for R-DPO; ``gain_vs_dpo`` is
paired by seed against DPO; ``recovered`` = (method - DPO) / (DPO on the true labels - DPO),
:func:`rpo.report.recovery.damage_recovered`, NaN where the damage is not resolved.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path

import numpy as np

from rpo.core.stats import t_interval
from rpo.io import atomic_write_text, read_jsonl, save_figure
from rpo.report.recovery import damage_recovered

COMMAND = (
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regime.py --dials today 0 0.5 0.75 --noise 0.1 0.2 0.3 "
    "--seeds 3 --bt-dial 0.75 --bt-noise 0.3"
)
#: issue 12's columns first, then the paired gain and the recovered share
COLUMNS = (
    "dial", "noise", "noise_model", "method", "n_seeds", "witness_auroc", "clean_acc", "win_rate", "win_rate_lo",
    "win_rate_hi", "eta_abs_err", "auroc_w", "gain_vs_dpo", "gain_vs_dpo_half", "recovered", "recovered_lo",
    "recovered_hi",
)  # fmt: skip
CEILING = "DPO (clean labels)"
_KEY = ("dial", "noise", "noise_model", "method", "seed")


def load_runs(path, max_steps: int | None = None) -> list[dict]:
    """The log's records (a bad line: an error naming the file and line), the last of each (cell, method,
    seed) kept; only those trained for ``max_steps`` when given (the log may hold shorter trial runs)."""
    recs = read_jsonl(path, required=_KEY + ("max_steps", "win_rate"))
    last = {tuple(r[k] for k in _KEY): r for r in recs if max_steps is None or r["max_steps"] == max_steps}
    return list(last.values())


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (cell, method) in the log's order: means over seeds, the win rate's 95% t-interval, the
    gain over DPO paired by seed, and the share of the noise damage recovered (where the ceiling was trained)."""
    cells = sorted({(r["dial"], r["noise"], r["noise_model"]) for r in runs}, key=_cell_order)
    methods = list(dict.fromkeys(r["method"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    by = {tuple(r[k] for k in _KEY): r for r in runs}
    # the true labels of a seed's pool are the same at every noise rate and model: the benchmark trains the
    # ceiling once per (dial, seed) and logs it under the first cell it met
    twin = {(r["dial"], r["seed"]): r for r in runs if r["method"] == CEILING}

    def per_seed(cell, method, metric):
        vals = [(by.get((*cell, method, s)) or _ceiling(method, cell[0], s)).get(metric) for s in seeds]
        return np.array([np.nan if v is None else float(v) for v in vals])

    def _ceiling(method, dial, seed) -> dict:
        return twin.get((dial, seed), {}) if method == CEILING else {}

    out = []
    for cell in cells:
        base, ceiling = per_seed(cell, "DPO", "win_rate"), per_seed(cell, CEILING, "win_rate")
        for method in methods:
            win = per_seed(cell, method, "win_rate")
            if np.isnan(win).all():
                continue
            mean, half = _t(win)
            gain = _t(win - base)
            rec = damage_recovered(win, base, ceiling) if not np.isnan(ceiling).all() else {}
            eta = np.abs(per_seed(cell, method, "eta_hat_1") - per_seed(cell, method, "eta_true_1"))
            row = dict(zip(("dial", "noise", "noise_model"), cell), method=method)
            row.update(
                n_seeds=int((~np.isnan(win)).sum()),
                witness_auroc=_t(per_seed(cell, "DPO", "witness_auroc"))[0],
                clean_acc=_t(per_seed(cell, method, "clean_acc"))[0],
                win_rate=mean,
                win_rate_lo=mean - half,
                win_rate_hi=mean + half,
                eta_abs_err=_t(eta)[0],
                auroc_w=_t(per_seed(cell, method, "auroc_w"))[0],
                gain_vs_dpo=gain[0],
                gain_vs_dpo_half=gain[1],
                recovered=rec.get("share", math.nan),
                recovered_lo=rec.get("lo", math.nan),
                recovered_hi=rec.get("hi", math.nan),
            )
            out.append(row)
    return out


def _cell_order(cell) -> tuple:
    """Today's world first, then the dial levels in order; symmetric flips before Bradley-Terry; by noise."""
    dial, noise, kind = cell
    return (kind != "symmetric", dial != "today", float(dial) if dial != "today" else 0.0, noise)


def _t(values) -> tuple[float, float]:
    """Mean and 95% half-width over the seeds that have a value."""
    v = [float(x) for x in values if not math.isnan(x)]
    return t_interval(v) if v else (math.nan, math.nan)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.4f}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    return buf.getvalue()


def to_markdown(rows: list[dict], source: str) -> str:
    """One line per cell: the witness, DPO's win rate and damage, R-DPO's and DPO+LS's paired gains, and the
    share of the damage R-DPO recovers (the CSV has every method and column)."""
    by = {(r["dial"], r["noise"], r["noise_model"], r["method"]): r for r in rows}
    cells = list(dict.fromkeys((r["dial"], r["noise"], r["noise_model"]) for r in rows))  # summarise's order
    n = max((r["n_seeds"] for r in rows), default=0)
    head = ["dial", "noise", "flips", "witness AUROC", "DPO win", "damage (clean − DPO)", "R-DPO − DPO"]
    head += ["DPO+LS − DPO", "R-DPO recovers", "R-DPO eta err", "R-DPO AUROC of w"]
    out = [
        f"**Regime map: when does RPO help? (win rate against the reference; {n} seeds; from `{source}`)**",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for cell in cells:
        dpo, rdpo, ls, ceil = (by.get((*cell, m), {}) for m in ("DPO", "R-DPO", "DPO+LS", CEILING))
        damage = ceil.get("gain_vs_dpo", math.nan), ceil.get("gain_vs_dpo_half", math.nan)
        rec = rdpo.get("recovered", math.nan)
        vals = [
            cell[0],
            f"{cell[1]:g}",
            cell[2],
            _f(dpo.get("witness_auroc")),
            _f(dpo.get("win_rate")),
            _pm(*damage),
            _pm(rdpo.get("gain_vs_dpo"), rdpo.get("gain_vs_dpo_half")),
            _pm(ls.get("gain_vs_dpo"), ls.get("gain_vs_dpo_half")),
            "n/a (damage not resolved)"
            if math.isnan(rec)
            else f"{rec:.2f} [{rdpo['recovered_lo']:.2f}, {rdpo['recovered_hi']:.2f}]",
            _f(rdpo.get("eta_abs_err")),
            _f(rdpo.get("auroc_w")),
        ]
        out.append("| " + " | ".join(vals) + " |")
    out += ["", "Gains paired by seed, ± the 95% t half-width; recovered: (R-DPO − DPO) / (clean − DPO).", ""]
    return "\n".join(out)


def _f(v) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:.3f}"


def _pm(m, h) -> str:
    return "—" if m is None or math.isnan(m) else f"{m:+.3f} ± {h:.3f}"


def plot(rows: list[dict]):
    """R-DPO's and DPO+LS's gain over DPO (paired by seed, 95% CI) against the cell's witness AUROC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, label in zip(axes, ("R-DPO", "DPO+LS")):
        for kind, marker in (("symmetric", "o"), ("bt", "s")):
            pts = [r for r in rows if r["method"] == label and r["noise_model"] == kind]
            for noise in sorted({r["noise"] for r in pts}):
                p = [r for r in pts if r["noise"] == noise]
                x, y, e = ([r[k] for r in p] for k in ("witness_auroc", "gain_vs_dpo", "gain_vs_dpo_half"))
                ax.errorbar(x, y, yerr=e, fmt=marker, capsize=3, label=f"{kind} flips {noise:g}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=f"{label} - DPO (win rate, paired by seed)", xlabel="plain-DPO witness AUROC (out of sample)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("gain in win rate vs the reference")
    fig.tight_layout()
    return fig


def build_regime(source: str, results_dir, *, figures: bool = True, max_steps: int | None = None) -> dict:
    """``results_dir/regime.{csv,md}`` (+ ``regime.png`` / ``.svg``) from the log at ``source`` (relative to the
    project root); returns the manifest's entry."""
    import matplotlib.pyplot as plt

    from rpo import paths

    log = paths.root() / source
    runs = load_runs(log, max_steps)
    rows = summarise(runs)
    files = {
        "csv": atomic_write_text(Path(results_dir) / "regime.csv", to_csv(rows)).name,
        "md": atomic_write_text(Path(results_dir) / "regime.md", to_markdown(rows, source)).name,
    }
    if figures and rows:
        fig = plot(rows)
        files.update({p.suffix[1:]: p.name for p in save_figure(fig, results_dir, "regime", dpi=120)})
        plt.close(fig)
    return {
        "source": source,
        "source_sha256": hashlib.sha256(log.read_bytes()).hexdigest(),
        "command": COMMAND,
        "n_trainings": len(runs),
        "files": files,
        "rows": len(rows),
    }
