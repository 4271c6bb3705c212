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
# # 08 · The regime map: when does RPO help? (issue 12)
#
# **Why a dial.** RPO's E-step (eq. 4) can only down-weight a wrong label if the policy's own preference
# (eq. 2) is evidence against it. In the committed toy world it is weak evidence (the policy ranks clean test
# pairs right 70-80% of the time), which is Remark E.1's regime: eta stays at eta0 and RPO is label
# smoothing at eps = 1 - eta0. The witness-dial family (`rpo.toy.world.dial_world(w)`) mixes an easy,
# generalising property of the response (a trailing style marker, the same on every prompt) into the
# oracle with weight `w`, so the policy can know more of each label's truth out of sample as `w` grows.
#
# **Measured, not assumed.** The witness is plain DPO's cross-fitted AUROC (`benchmarks/witness.py`:
# eq. 2's -d for flipped training pairs, scored by a policy that did not train on them); in the map each
# cell's witness is plain DPO's on training pairs outside its own pool.
#
# **Decision rules, written before any RPO number of the dial worlds was looked at.**
# * The *informative* level is the lowest dial level whose plain-DPO witness AUROC (noise 0.2,
#   `benchmarks/witness.py`) is >= 0.85; the *weak* setting is today's world (`today`).
# * Training settings: `rpo.toy.settings.DIAL_SETTINGS` (beta 1.0), tuned on plain DPO alone for the
#   dynamic range (`benchmarks/dynamic_range.md`).
#
# **Prediction (Remark E.1, Theorem 4.2), written before the results:**
# 1. weak witness (today, AUROC ~0.7): eta stays near eta0, w near the prior, R-DPO matches DPO+LS, and
#    both are within the seed noise of DPO;
# 2. as the witness AUROC rises, eta's error falls and the AUROC of w rises; R-DPO's gain over DPO grows
#    with the noise rate and the witness, and exceeds DPO+LS's at the informative levels, most at 30% flips;
# 3. R-DPO stays below the ceilings (DPO on the true labels, DPO with the flips removed) everywhere;
# 4. Bradley-Terry flips (mostly on small-margin pairs) leave a weaker witness and a smaller RPO gain than
#    symmetric flips at the same level.
#
# The map's trainings are `benchmarks/regime.py`'s (about 50 minutes of one core: too long for `make reproduce`),
# logged run by run in `benchmarks/regime.runs.jsonl` (committed). This notebook, a step of the toy profile,
# summarises that log with `rpo.report.regime`, the same code with which `rpo tables` writes `results/regime.csv`.

# %% tags=["parameters"]
log = "../benchmarks/regime.runs.jsonl"  # relative to notebooks/, where papermill runs

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from rpo.report.regime import load_runs, plot, summarise, to_markdown
from rpo.toy.settings import DIAL_SETTINGS

path = Path(log)
if not path.exists():
    display(Markdown(f"`{path}` is not there yet: run `benchmarks/regime.py` (see its docstring)."))
    rows = []
else:
    runs = load_runs(path, max_steps=DIAL_SETTINGS.max_steps)
    rows = summarise(runs)
    print(f"{len(runs)} trainings, {len(rows)} (cell, method) rows")
    display(Markdown(to_markdown(rows, "benchmarks/regime.runs.jsonl")))

# %% [markdown]
# RPO's and smoothing's gain in win rate over DPO (paired by seed) against the cell's witness AUROC; then
# every method of every cell, as `results/regime.csv` holds them.

# %%
if rows:
    plot(rows)
    display(pd.DataFrame(rows).round(3))
