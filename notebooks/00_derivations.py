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
# # 00 · Derivations: eq. 2 for every loss of Table 1, Appendix B, eq. 28, Theorem 4.2
#
# This notebook checks the paper's mathematics twice: symbolically (sympy, in `rpo.derivations`) and
# numerically against the library's math core (`rpo.pair_losses`, `rpo.e_step`, `rpo.em_operator`).
# It runs on a CPU in seconds; papermill executes it headlessly (`rpo run`), and you can re-run it
# interactively with other parameters.

# %% tags=["parameters"]
n_labels = 100000  # labels per simulated annotator (Theorem 4.2 asks for large N)
eta_true = [0.6, 0.75, 0.9]  # true reliabilities to recover
eta_starts = [0.05, 0.5, 0.95]  # EM initialisations, including pessimistic ones below 1/2
em_steps = 60  # full-batch EM iterations to plot
seed = 0
figure_dir = ""  # folder for PNG/SVG figures; empty: show only
metrics_path = ""  # file for this run metrics JSON; empty: none

# %%
import matplotlib.pyplot as plt
import sympy as sp
import torch

from rpo import em_operator
from rpo.core import derivations as d
from rpo.core.theory import em_trajectory, simulate_calibrated_labels
from rpo.io import save_figure
from rpo.pipeline.provenance import write_metrics

sp.init_printing()

# %% [markdown]
# ## Eq. 2 for each loss of Table 1
#
# Eq. 2 turns any preference loss into a probability,
# $p(y_w \succ^* y_l) = \sigma(\mathcal{L}(y_l \succ y_w) - \mathcal{L}(y_w \succ y_l))$.
# Its log-odds $\mathcal{L}(y_l \succ y_w) - \mathcal{L}(y_w \succ y_l)$ for each row of Table 1:

# %%
log_odds = {name: d.gibbs_log_odds(name) for name in d.table1()}
for name, expr in log_odds.items():
    print(f"{name:6s} log-odds of eq. 2 =", expr)

# %% [markdown]
# What this shows:
# * **DPO**: $\beta h$, with $h$ the difference of log-ratios: the Bradley-Terry model (Appendix B).
# * **IPO**: $2h/\beta$. The squares cancel, so the Gibbs objective of eq. 5 turns IPO into a
#   *logistic* loss with temperature $2/\beta$; IPO's target margin $1/(2\beta)$ disappears. This is why
#   the library offers `objective="weighted"` (re-weighting IPO's own squared loss) next to
#   `objective="gibbs"`.
# * **SimPO**: a log-ratio of two sigmoids; it reduces to $\beta(\bar\ell_w - \bar\ell_l)$ only for
#   $\gamma = 0$.
# * **CPO**: $(\alpha + \beta)(\log\pi(y_w) - \log\pi(y_l))$: the NLL term enters the preference
#   probability as extra temperature.
#
# The symbolic losses agree with the numeric ones on random inputs (Table 1 conventions):

# %%
worst = d.check_against_pair_losses(trials=20, seed=seed)
print(f"largest |sympy - rpo.pair_losses| over 80 random cases: {worst:.2e}")
assert worst < 1e-9

# %% [markdown]
# ## Appendix B: DPO's eq. 2 is the Bradley-Terry model

# %%
gap = d.bradley_terry_gap("dpo")
print("p_eq2(DPO) - sigmoid(beta*h) simplifies to:", gap)
assert gap == 0

# %% [markdown]
# ## Eq. 20-28: the closed-form reliability update
# Maximising $\sum_i w_i \log\eta + (1-w_i)\log(1-\eta)$ over $\eta$ with $S=\sum_i w_i$ over $N$ labels:

# %%
eta_hat = d.closed_form_eta()
print("eta* =", eta_hat)

# %% [markdown]
# ## Lemma 4.1, Theorem 4.2 and Remark E.1 by simulation
#
# Labels come from the generative model of section 3.2 and the model is perfectly calibrated:
# it predicts $p^*_i$, the probability that the observed label agrees with the latent preference.
# The EM operator $T_k(\eta)$ should cross the diagonal exactly once, at the true reliability, and
# full-batch EM should reach it from any start in (0, 1).

# %%
grid = torch.linspace(0.001, 0.999, 400, dtype=torch.float64)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
results = {}
for k, eta_k in enumerate(eta_true):
    p_star, z = simulate_calibrated_labels(n_labels, eta_k, seed=seed + k)
    realised = z.double().mean().item()
    axes[0].plot(grid, em_operator(p_star, grid), label=f"$T_k$, true $\\eta$={eta_k}")
    for eta0 in eta_starts:
        traj = em_trajectory(p_star, eta0, steps=em_steps)
        axes[1].plot(traj, color=f"C{k}", alpha=0.8)
        results[f"eta{eta_k}_from{eta0}"] = traj[-1].item()
    axes[1].axhline(realised, color=f"C{k}", ls=":", lw=1)
    print(
        f"true eta {eta_k} (realised {realised:.4f}):",
        ", ".join(f"from {e0} -> {results[f'eta{eta_k}_from{e0}']:.4f}" for e0 in eta_starts),
    )
    for eta0 in eta_starts:
        assert abs(results[f"eta{eta_k}_from{eta0}"] - eta_k) < 0.01

flat, _ = simulate_calibrated_labels(n_labels, 0.8, seed=seed, informative=False)
axes[0].plot(grid, em_operator(flat, grid), "k--", lw=1, label="Remark E.1: all $p^*=1/2$")
axes[0].plot(grid, grid, color="grey", lw=0.8)
axes[0].set(xlabel="$\\eta$", ylabel="$T_k(\\eta)$", title="EM operator (Lemma 4.1)")
axes[0].legend(fontsize=8)
axes[1].set(xlabel="EM iteration", ylabel="$\\eta^{(t)}$", title="Full-batch EM (Theorem 4.2); dotted: truth")
fig.tight_layout()
save_figure(fig, figure_dir, "theorem42_em")
plt.show()

# %% [markdown]
# Remark E.1: when every $p^*_i = 1/2$ the model is uninformative and *every* $\eta$ is a fixed
# point (the dashed line lies on the diagonal), so reliability cannot be identified.

# %%
remark_gap = (em_operator(flat, grid) - grid).abs().max().item()
print(f"max |T(eta) - eta| with uninformative p*: {remark_gap:.2e}")
assert remark_gap < 1e-12

write_metrics(
    metrics_path or None,  # atomic, with the git commit and package versions
    {"n_labels": n_labels, "eta_true": eta_true, "eta_starts": eta_starts, "seed": seed},
    {"sympy_vs_pair_losses_max_abs_diff": worst, "remark_e1_max_gap": remark_gap, "em_limits": results},
)
