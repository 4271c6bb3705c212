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
# # 01 · Data: the noisy-preference world and the noise actually injected
#
# The toy world mirrors the paper's data pipeline (on-policy responses labelled by a judge): prompts from
# three tasks whose answers a program scores exactly with partial credit (`rpo.world.score`), a reference
# policy (the tiny Llama after SFT) whose samples mix good and flawed answers, and pairs sampled from it
# with chosen = the higher oracle reward. Annotators then relabel the pairs (`rpo.data`): symmetric flips
# at a set rate, or Bradley-Terry annotators who flip small reward gaps more often. The truth stays in
# hidden columns (`true_*`, `is_flipped`) that the trainer never sees.

# %% tags=["parameters"]
profile = "toy"
rate = 0.2  # flip rate of the noisy annotator shown here
seed = 0
figure_dir = ""  # folder for PNG/SVG figures; empty: show only
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import collections

import matplotlib.pyplot as plt
import numpy as np

from rpo.data import apply_layout, is_hidden, public_view, true_reliability
from rpo.io import save_figure
from rpo.pipeline.provenance import write_metrics
from rpo.toy.world import WorldConfig, build_world

world = build_world(WorldConfig(), progress=False)
print(
    f"world {world.path.name}: {len(world.train)} train pairs, {len(world.test)} clean test pairs, "
    f"{len(world.heldout)} held-out prompts"
)
for row in world.train[:4]:
    print({k: row[k] for k in ("prompt", "chosen", "rejected", "true_margin")})

# %% [markdown]
# Pairs per task and the spread of oracle margins (large and small quality gaps):

# %%
print(collections.Counter(r["task"] for r in world.train))
margins = np.array([r["true_margin"] for r in world.train])
print("margin percentiles 10/50/90:", np.percentile(margins, [10, 50, 90]).round(3))

# %% [markdown]
# ## The noise models, measured
# For each layout of section 5.4 and each noise kind: the empirical flip rate per annotator (the hidden
# `is_flipped` column) and the annotator's true reliability, the analogue of the paper's "eta GPT-4o".

# %%
measured = {}
for layout in ("single", "two"):
    for kind in ("symmetric", "bt"):
        data = apply_layout(world.train, layout, rate, kind=kind, seed=seed)
        rel = true_reliability(data)
        measured[f"{layout}/{kind}"] = rel
        print(
            f"{layout:6s} {kind:9s} rows {len(data):5d}  true reliability per annotator: "
            + ", ".join(f"{k}={v:.3f}" for k, v in rel.items())
        )
hidden = [c for c in data.column_names if is_hidden(c)]
print("hidden columns:", hidden, "| what the trainer sees:", public_view(data).column_names)

# %% [markdown]
# Bradley-Terry annotators flip small reward gaps more often; symmetric ones do not care about the gap:

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
bins = np.quantile(margins, np.linspace(0, 1, 9))
for kind in ("symmetric", "bt"):
    data = apply_layout(world.train, "single", rate, kind=kind, seed=seed)
    m = np.array(data["true_margin"])
    flipped = np.array(data["is_flipped"], dtype=float)
    idx = np.clip(np.digitize(m, bins[1:-1]), 0, len(bins) - 2)
    ax.plot(
        [(bins[i] + bins[i + 1]) / 2 for i in range(len(bins) - 1)],
        [flipped[idx == i].mean() for i in range(len(bins) - 1)],
        "o-",
        label=kind,
    )
ax.axhline(rate, color="grey", ls=":", lw=1)
ax.set(xlabel="oracle reward gap of the pair", ylabel="flip rate", title=f"noise models at rate {rate}")
ax.legend()
fig.tight_layout()
save_figure(fig, figure_dir, "noise_models")
plt.show()

# %%
write_metrics(
    metrics_path or None,
    {"profile": profile, "rate": rate, "seed": seed, "world": world.path.name},
    {"true_reliability": measured, "n_train": len(world.train), "n_test": len(world.test)},
)
