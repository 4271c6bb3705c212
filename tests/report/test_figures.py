"""rpo.report.figures: the analysis notebooks' plots."""

from __future__ import annotations

import math

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rpo.report.figures import eta_scatter  # noqa: E402


def test_eta_scatter_plots_each_annotator_of_the_runs_found_and_counts_the_missing():
    frame = pd.DataFrame(
        {
            "status": ["ok", "ok", "missing"],
            "eta_hat_1": [0.8, 0.9, None],
            "eta_true_1": [0.8, 0.95, None],
            "eta_hat_2": [None, 0.7, None],  # one-annotator runs have no second annotator
            "eta_true_2": [None, 0.6, None],
        }
    )
    fig, ax = plt.subplots()
    eta_scatter(frame, ax, "informative level")
    points = [c.get_offsets() for c in ax.collections]
    assert [len(p) for p in points] == [2, 2]  # annotator 2: one point and a NaN one (not drawn)
    assert ax.get_title() == "informative level: 2 runs; 1 missing"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["annotator 1", "annotator 2"]
    plt.close(fig)


def test_prior_slope_says_whether_the_prior_or_the_data_decides():
    from rpo.report.figures import per_annotator, prior_histograms, prior_slope

    eta0s = [0.8, 0.9, 0.95, 0.99]
    follows = pd.DataFrame({"status": "ok", "eta0": eta0s, "eta_hat_mean": eta0s, "refit_mean": [0.87] * 4})
    assert prior_slope(follows, "eta_hat_mean") == pytest.approx(1.0)  # the estimate is the prior
    assert prior_slope(follows, "refit_mean") == pytest.approx(0.0, abs=1e-9)  # the data decides
    one = follows.assign(status=["ok", "failed", "failed", "failed"])
    assert math.isnan(prior_slope(one))  # one eta0 left: no slope
    runs = follows.assign(eta_hat_1=0.9, eta_hat_2=0.8, refit_eta_1=1.0, refit_eta_2=0.95, eta_true_1=0.9)
    runs["eta_true_2"] = 0.85
    assert per_annotator(runs.iloc[0], "eta_hat_") == [0.9, 0.8] and per_annotator(runs.iloc[0], "eta_x_") == []
    fig = prior_histograms(runs)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "eta0 = 0.8"
    plt.close(fig)


def test_a_long_title_is_wrapped_to_the_figure_width(tmp_path, monkeypatch):
    """One facet takes ~60 characters at 9 pt: a longer study title wraps rather than running off the sides."""
    from rpo.pipeline.spec import FigureSpec, Study
    from rpo.report import figures

    seen = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, *a, **k: seen.setdefault("title", fig._suptitle.get_text()))
    title = "Figure 3 analogue at the informative witness level (dial 0.25, beta 1.0): mean estimated eta, per eta0"
    study = Study("f", title, (), 1, rows=("eta0",), metrics=("m",), figure=FigureSpec(x="eta0", y=("m",)))
    frame = pd.DataFrame(
        {
            "status": "ok",
            "eta0": [0.8, 0.9],
            "m": [0.5, 0.6],
            "seed": 0,
            "run_id": ["a", "b"],
            "config_hash": ["x", "y"],
        }
    )
    figures.plot_figure(study, frame, tmp_path / "f")
    lines = seen["title"].splitlines()
    assert len(lines) == 2 and all(len(line) <= 60 for line in lines) and " ".join(lines) == title
