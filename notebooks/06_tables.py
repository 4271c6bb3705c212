# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Tables: rebuild results/ from every run
#
# The same as `rpo tables --profile <profile>`: every study of the profile (Table 2 and 3 analogues,
# noise sweep, Figure 2 analogue, AUROC of w) from whatever runs exist in `papermill_runs/<profile>/`,
# as Markdown, CSV and LaTeX, PNG and SVG figures, and `results/manifest.json` tracing every number to
# its run ids, config hashes, git commit and package versions. A cell whose runs failed or never ran
# says so.

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # full: the study; reduced: the CI grid (its runs live in papermill_runs/<profile>-reduced)
runs_root = "../papermill_runs"
results_dir = "../results"

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from rpo.report import build

manifest = build(profile, grid=grid, runs_root=runs_root, results_dir=results_dir)
for name, table in manifest["tables"].items():
    display(Markdown((Path(results_dir) / table["files"]["md"]).read_text()))
    if "png" in table["files"]:
        display(Image(filename=str(Path(results_dir) / table["files"]["png"])))

# %%
n_missing = sum(c["n"] < c["n_expected"] for t in manifest["tables"].values() for c in t["cells"])
print(f"{len(manifest['runs'])} runs read; {n_missing} cells with missing runs")
