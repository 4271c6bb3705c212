"""rpo.report.figures: the analysis notebooks' plots."""

from __future__ import annotations

import matplotlib

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
