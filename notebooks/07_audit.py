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
# # 07 · Audit: which labels are wrong, and whose (`rpo audit`)
#
# RPO's E-step as a data audit (the final paper's Appendix F): a witness scores every pair, exact EM at that
# fixed witness (Theorem 4.2's operator, eqs. 4 and 6) estimates each annotator's reliability eta, and eq. 4
# gives each pair's w, the posterior that its label is right. Two things make it an audit rather than a
# by-product of training:
#
# * **cross-fitting**: the pairs are split in folds; each fold is scored by an R-DPO witness trained on the
#   other folds, one that never saw its labels. A witness scoring the labels it was trained on has fitted
#   the wrong ones too, and finds them right;
# * **calibration**: Theorem 4.2 needs a calibrated model, and a witness's log-odds have the scale its
#   beta and training length gave them. One temperature is fitted with eta by eq. 3's likelihood.
#
# Here on a learnable set with known flips (`rpo.audit.known_flips`: chosen = the prompt's word in upper
# case, rejected = it reversed; three annotators flipping 5%, 20% and 40% of their labels), from the
# untrained tiny toy Llama. The truth stays hidden from the audit; it only scores the result.

# %% tags=["parameters"]
n_pairs = 600
rates = [0.05, 0.2, 0.4]
rule = "case"  # the preference: case (easy), sort or shift (harder); rpo.audit.synthetic
epochs = 3.0
folds = 2
seed = 0
figure_dir = ""  # folder for PNG/SVG figures; empty: show only
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from sklearn.metrics import roc_auc_score

from rpo.audit import audit, known_flips
from rpo.audit.estimate import fit
from rpo.io import save_figure
from rpo.pipeline.provenance import write_metrics

torch.set_num_threads(1)
data = known_flips(n_pairs, rates=rates, seed=seed, rule=rule)
hidden = ["is_flipped", "true_eta", "true_chosen", "true_rejected", "true_flip_prob"]
public = data.remove_columns(hidden)  # what the audit sees: prompt, chosen, rejected, annotator
flipped = np.asarray(data["is_flipped"], dtype=bool)
names = sorted(set(data["annotator"]))
true_eta = {a: float(1 - flipped[np.asarray(data["annotator"]) == a].mean()) for a in names}
print(public)
print("true reliability (share of correct labels):", {a: round(v, 3) for a, v in true_eta.items()})

# %% [markdown]
# ## The audit
# `audit()` is what `rpo audit DATA --model toy --out DIR` runs; with `out` it also writes `pairs.csv`,
# `annotators.csv`, `report.md`, `report.html` and `summary.json`.

# %%
result = audit(public, model="toy", epochs=epochs, folds=folds, seed=seed, progress=False)
pairs = result.pairs.sort_values("row").reset_index(drop=True)  # back in data order, to meet the truth
display(result.annotators.assign(true_eta=result.annotators["annotator"].map(true_eta)))
auroc = roc_auc_score(flipped, 1 - pairs["w"])
n_flips = int(flipped.sum())
precision = float(flipped[np.argsort(pairs["w"].to_numpy(), kind="stable")[:n_flips]].mean())
eta_err = {a: abs(e - true_eta[a]) for a, e in zip(result.annotators["annotator"], result.annotators["eta"])}
print(f"AUROC of 1 - w against the flips: {auroc:.3f}; precision among the {n_flips} lowest w: {precision:.3f}")
print(f"temperature {result.summary['temperature']:.3g}; largest eta error {max(eta_err.values()):.3f}")

# %% [markdown]
# The most suspicious pairs: a flipped label shows the reversed lower-case word as "chosen".

# %%
top = result.pairs.head(8).merge(
    pairs.assign(prompt=public["prompt"], chosen=public["chosen"], rejected=public["rejected"], flipped=flipped)[
        ["row", "prompt", "chosen", "rejected", "flipped"]
    ],
    on="row",
)
display(top)

# %% [markdown]
# ## w separates the wrong labels, and eta follows the truth

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
bins = np.linspace(0, 1, 26)
ax1.hist([pairs["w"][~flipped], pairs["w"][flipped]], bins=bins, stacked=True, label=["label right", "label flipped"])
ax1.set(xlabel="w (eq. 4)", ylabel="pairs", yscale="log", title=f"AUROC {auroc:.3f}")
ax1.legend()
tab = result.annotators.set_index("annotator").loc[names]
x = [true_eta[a] for a in names]
ax2.errorbar(x, tab["eta"], yerr=[tab["eta"] - tab["eta_low"], tab["eta_high"] - tab["eta"]], fmt="o", capsize=3)
for a, xi, yi in zip(names, x, tab["eta"]):
    ax2.annotate(a, (xi, yi), textcoords="offset points", xytext=(6, -4))
ax2.plot([0.5, 1], [0.5, 1], "--", color="grey", lw=0.8)
ax2.set(xlabel="true eta", ylabel="estimated eta (95% bootstrap)", title="annotators")
fig.tight_layout()
save_figure(fig, figure_dir, "audit_w_eta")
plt.show()

# %% [markdown]
# ## What EM adds to the witness's log-odds
# Within one annotator, w = sigmoid(s d + logit eta_k) is an increasing function of d: it ranks that
# annotator's pairs exactly as d does. EM adds (1) eta per annotator, (2) a ranking *across* annotators
# (the same doubtful d means more from an annotator who is often wrong), and (3) w is a probability that
# the label is right, where sigmoid(d) is only the witness's own (uncalibrated) preference. Without the
# temperature (eq. 4 on the raw d) the same witness overstates every eta:

# %%
d = torch.tensor(pairs["d"].to_numpy())
ids = torch.tensor([names.index(a) for a in pairs["annotator"]])
raw = fit(d, ids, len(names), calibrate=False)
correct = (~flipped).astype(float)
rows = []
for label, score, prob in (
    ("-d (the witness alone)", -pairs["d"], 1 / (1 + np.exp(-pairs["d"]))),
    ("1 - w, raw d (eq. 4 as written)", 1 - raw.w.numpy(), raw.w.numpy()),
    ("1 - w, calibrated (the audit)", 1 - pairs["w"], pairs["w"]),
):
    rows.append(
        {
            "score": label,
            "AUROC": round(roc_auc_score(flipped, score), 3),
            "Brier (as P(label right))": round(float(np.mean((np.asarray(prob) - correct) ** 2)), 4),
        }
    )
display(pd.DataFrame(rows))
print("eta, raw d:", dict(zip(names, raw.eta.numpy().round(3))), "| calibrated:", dict(zip(names, tab["eta"].round(3))))

fig, ax = plt.subplots(figsize=(6, 3.6))
for a in names:
    m = (pairs["annotator"] == a).to_numpy()
    order = np.argsort(pairs["d"].to_numpy()[m])
    ax.plot(
        pairs["d"].to_numpy()[m][order], pairs["w"].to_numpy()[m][order], label=f"{a} (eta {tab.loc[a, 'eta']:.2f})"
    )
ax.scatter(pairs["d"][flipped], pairs["w"][flipped], s=8, color="k", label="flipped", zorder=3)
ax.set(xlabel="d: the witness's eq. 2 log-odds", ylabel="w", title="one curve per annotator")
ax.legend(fontsize=8)
fig.tight_layout()
save_figure(fig, figure_dir, "audit_d_to_w")
plt.show()

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    write_metrics(
        metrics_path or None,
        {"n_pairs": n_pairs, "rates": rates, "rule": rule, "epochs": epochs, "folds": folds, "seed": seed},
        {
            "auroc_w": auroc,
            "precision_at_flips": precision,
            "eta_hat": dict(zip(tab.index, tab["eta"].astype(float))),
            "eta_true": true_eta,
            "eta_max_err": max(eta_err.values()),
            "temperature": result.summary["temperature"],
            "auroc_w_raw": float(roc_auc_score(flipped, 1 - raw.w.numpy())),
            "eta_hat_raw": dict(zip(names, raw.eta.numpy().astype(float))),
        },
    )
