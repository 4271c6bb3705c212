"""The report layer: collect the runs (:mod:`~rpo.report.collect`), aggregate over seeds with one
t-interval (:mod:`~rpo.report.aggregate`), render tables (:mod:`~rpo.report.render`) and figures
(:mod:`~rpo.report.figures`), and build ``results/``, its manifest and the README block
(:mod:`~rpo.report.build`). ``rpo tables`` is :func:`build`."""

from rpo.core.stats import t_interval
from rpo.report.aggregate import build_table, cell, format_cell
from rpo.report.build import README_END, README_START, build, study_markdown, update_readme
from rpo.report.collect import ID_COLS, collect_runs, eta_trajectories, iter_records, load_study, study_frame
from rpo.report.figures import plot_figure
from rpo.report.render import to_csv, to_latex, to_markdown

__all__ = [
    "ID_COLS",
    "README_END",
    "README_START",
    "build",
    "build_table",
    "cell",
    "collect_runs",
    "format_cell",
    "eta_trajectories",
    "iter_records",
    "load_study",
    "plot_figure",
    "study_frame",
    "study_markdown",
    "t_interval",
    "to_csv",
    "to_latex",
    "to_markdown",
    "update_readme",
]
