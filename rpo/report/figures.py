"""A study's figure: mean and 95% t-interval of each series against x, PNG and SVG (no date, fixed ids); and
the plots the analysis notebooks draw from a study's frame (estimated against true eta, Figure 3's
histograms and its "data or prior?" slope)."""

from __future__ import annotations

import math
import textwrap
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
    title = textwrap.fill(study.title, width=60 * len(facets)) + (  # ~60 characters fit a facet at 9 pt
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


def per_annotator(row: pd.Series, prefix: str) -> list[float]:
    """A run's per-annotator values ``<prefix>1, <prefix>2, ...`` (eta_hat_, refit_eta_, eta_true_), in order."""
    k, out = 1, []
    while f"{prefix}{k}" in row and pd.notna(row[f"{prefix}{k}"]):
        out.append(float(row[f"{prefix}{k}"]))
        k += 1
    return out


def prior_slope(frame: pd.DataFrame, estimate: str = "eta_hat_mean") -> float:
    """Figure 3's "data or prior?" as one number: the least-squares slope of the mean estimate (over runs)
    against eta0. 1: the estimate follows the prior; 0: eta0 does not matter, the data decides."""
    ok = frame[frame["status"] == "ok"]
    means = ok.groupby("eta0")[estimate].mean()
    if len(means) < 2:
        return float("nan")
    return float(np.polyfit(means.index.to_numpy(dtype=float), means.to_numpy(dtype=float), 1)[0])


def prior_histograms(frame: pd.DataFrame):
    """Figure 3 analogue: per eta0, histograms of the pool's estimated eta (online, and after the exact refit)
    and of the truth, every annotator of every ok run pooled; the red line is eta0."""
    import matplotlib.pyplot as plt

    ok = frame[frame["status"] == "ok"]
    eta0s = sorted(ok["eta0"].unique())
    fig, axes = plt.subplots(1, max(1, len(eta0s)), figsize=(3.2 * max(1, len(eta0s)), 2.8), sharey=True, squeeze=False)
    bins = np.linspace(0.5, 1.0, 26)
    for ax, e0 in zip(axes[0], eta0s):
        runs = [r for _, r in ok[ok["eta0"] == e0].iterrows()]
        for prefix, kw in (
            ("eta_hat_", dict(alpha=0.6, label="online (eq. 7)")),
            ("refit_eta_", dict(histtype="step", lw=1.8, label="exact refit")),
            ("eta_true_", dict(histtype="step", ls="--", color="k", lw=1.0, label="truth (measured)")),
        ):
            ax.hist([v for r in runs for v in per_annotator(r, prefix)], bins=bins, **kw)
        ax.axvline(e0, color="r", lw=1.0, ls=":")
        ax.set_title(f"eta0 = {e0}", fontsize=9)
        ax.set_xlabel("eta")
    axes[0][0].set_ylabel("annotators (seeds pooled)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
