"""A study's figure: mean and 95% t-interval of each series against x, PNG and SVG (no date, fixed ids)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rpo.io import save_figure
from rpo.pipeline.profiles import Study
from rpo.report.aggregate import cell


def plot_figure(study: Study, frame: pd.DataFrame, stem: Path) -> list[Path]:
    """Mean and 95% t-interval of each series against x; PNG and SVG; missing runs named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    spec = study.figure
    sns.set_theme(style="whitegrid", context="paper")
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
    title = study.title + (
        f"\n(missing: {n_missing}/{len(frame)} (config, seed) runs; points not drawn)" if n_missing else ""
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = save_figure(fig, stem.parent, stem.name, dpi=150, svg_salt="rpo", png_metadata={"Software": None})
    plt.close(fig)
    return out


def eta_scatter(frame: pd.DataFrame, ax, title: str = "") -> None:
    """Estimated against true eta, one point per (config, seed, annotator) of a Figure 2 study's frame, with
    the diagonal Theorem 4.2 predicts; the title counts the runs found and says how many are missing."""
    ok = frame[frame["status"] == "ok"]
    for k, marker in ((1, "o"), (2, "s")):
        if f"eta_hat_{k}" in ok and ok[f"eta_hat_{k}"].notna().any():
            ax.scatter(ok[f"eta_true_{k}"], ok[f"eta_hat_{k}"], marker=marker, label=f"annotator {k}", alpha=0.7)
    ax.plot([0.5, 1], [0.5, 1], "--", color="grey", lw=0.8)
    ax.set_xlabel("true eta (agreement with the oracle)")
    ax.set_ylabel("estimated eta")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    missing = int((frame["status"] != "ok").sum())
    ax.set_title(f"{title}{': ' if title else ''}{len(ok)} runs" + (f"; {missing} missing" if missing else ""))
