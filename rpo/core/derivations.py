"""Table 1 and eq. 2 symbolically (sympy), checked against :func:`rpo.pair_losses`.

The notebook ``00_derivations`` narrates these; the tests run them.
"""

from __future__ import annotations

import random

import sympy as sp
import torch

from rpo.core.losses import pair_losses

# Summed log-probs of the policy (lw, ll) and reference (rw, rl); lengths nw, nl; hyperparameters.
lw, ll, rw, rl = sp.symbols("logpi_w logpi_l logref_w logref_l", real=True)
nw, nl = sp.symbols("n_w n_l", positive=True)
beta, gamma, alpha = sp.symbols("beta gamma alpha", positive=True)


def _log_sigmoid(x):
    return -sp.log(1 + sp.exp(-x))


def table1() -> dict[str, tuple[sp.Expr, sp.Expr]]:
    """``name -> (L(x, y_w > y_l), L(x, y_l > y_w))`` exactly as Table 1 writes them (IPO with summed
    log-ratios, CPO with a summed NLL of weight alpha). The swap exchanges every w/l symbol."""
    h = (lw - rw) - (ll - rl)
    rows = {
        "dpo": -_log_sigmoid(beta * h),
        "ipo": (h - 1 / (2 * beta)) ** 2,
        "simpo": -_log_sigmoid(beta / nw * lw - beta / nl * ll - gamma),
        "cpo": -_log_sigmoid(beta * lw - beta * ll) - alpha * lw,
    }
    swap = {lw: ll, ll: lw, rw: rl, rl: rw, nw: nl, nl: nw}
    return {k: (v, v.xreplace(swap)) for k, v in rows.items()}


def gibbs_probability(name: str) -> sp.Expr:
    """Eq. 2: ``p(y_w >* y_l) = sigmoid(L(y_l > y_w) - L(y_w > y_l))``, simplified."""
    wl, lw_ = table1()[name]
    return sp.simplify(1 / (1 + sp.exp(-(lw_ - wl))))


def gibbs_log_odds(name: str) -> sp.Expr:
    """``L(y_l > y_w) - L(y_w > y_l)``: the log-odds of eq. 2 (for DPO, beta times the reward margin)."""
    wl, lw_ = table1()[name]
    return sp.simplify(sp.expand_log(lw_ - wl, force=True))


def bradley_terry_gap(name: str = "dpo") -> sp.Expr:
    """Appendix B: for DPO, eq. 2 minus the Bradley-Terry probability sigmoid(beta * h); simplifies to 0."""
    h = (lw - rw) - (ll - rl)
    return sp.simplify(gibbs_probability(name) - 1 / (1 + sp.exp(-beta * h)))


def closed_form_eta() -> sp.Expr:
    """Eq. 20-28: maximise ``sum_i w_i log eta + (1 - w_i) log(1 - eta)`` over eta; with
    ``S = sum_i w_i`` and ``N`` labels the stationary point is ``S / N``."""
    eta, s, n = sp.symbols("eta S N", positive=True)
    objective = s * sp.log(eta) + (n - s) * sp.log(1 - eta)
    (sol,) = sp.solve(sp.diff(objective, eta), eta)
    return sol


def check_against_pair_losses(trials: int = 20, seed: int = 0) -> float:
    """Largest absolute difference between the sympy Table 1 and :func:`pair_losses` (with
    ``ipo_length_norm=False, cpo_nll="sum"``, the Table 1 conventions) on random inputs."""
    rng = random.Random(seed)
    worst = 0.0
    for name, (ewl, elw) in table1().items():
        f = sp.lambdify((lw, ll, rw, rl, nw, nl, beta, gamma, alpha), (ewl, elw), "math")
        for _ in range(trials):
            vals = [rng.uniform(-60, -1) for _ in range(4)] + [rng.randint(1, 40), rng.randint(1, 40)]
            b, g, a = rng.uniform(0.01, 2), rng.uniform(0, 2), rng.uniform(0.1, 2)
            t = [torch.tensor([v], dtype=torch.float64) for v in vals]
            ours = pair_losses(
                name,
                t[0],
                t[1],
                t[4],
                t[5],
                t[2],
                t[3],
                beta=b,
                gamma=g,
                cpo_alpha=a,
                ipo_length_norm=False,
                cpo_nll="sum",
            )
            theirs = f(*vals, b, g, a)
            worst = max(worst, *(abs(o.item() - x) for o, x in zip(ours, theirs)))
    return worst
