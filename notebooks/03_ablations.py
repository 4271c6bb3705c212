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
# # 03 · Ablations: the analogue of Table 3
#
# R-DPO at the Table 2 noise level with one setting changed at a time: eta0 in {0.99, 0.9, 0.75, 0.55},
# alpha (eq. 7) in {0.001, 0.01, 0.1, 0.5, 1.0}, the eta update (batch: eq. 7; epoch: eq. 6) and the
# M-step objective (gibbs: eq. 5; weighted). The trainings are `02_train` runs (shared with the other
# tables: the default R-DPO is trained once); this notebook reads them. Every expected (config, seed)
# is shown; a missing one says so.

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # full: the study; reduced: the CI grid (its runs live in papermill_runs/<profile>-reduced)
runs_root = "../papermill_runs"

# %%
from IPython.display import Markdown, display

from rpo.report import study_markdown

study, frame, table = study_markdown(profile, "table3", runs_root=runs_root, grid=grid)
display(Markdown(table))

# %% [markdown]
# Status of every expected training (ok / failed / not run):

# %%
frame.groupby(["eta0", "alpha", "eta_update", "objective"], sort=False)["status"].value_counts().unstack(fill_value=0)

# %% [markdown]
# The same ablations at the informative witness level (issue 12: `table3_informative`, the toy world at the
# pre-declared dial level, trained at the dial studies' beta). Today's witness leaves eta near eta0 whatever the
# setting (Remark E.1); whether eta0 and alpha matter once the witness separates flips from clean labels is
# what this table shows. A profile without it says so.

# %%
from rpo.pipeline.profiles import get_profile

if "table3_informative" in {s.name for s in get_profile(profile, grid).studies}:
    display(Markdown(study_markdown(profile, "table3_informative", runs_root=runs_root, grid=grid)[2]))
else:
    print(f"profile {profile!r} has no informative-level Table 3")
