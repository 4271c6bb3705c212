"""The per-example training objective of every method, from the policy's log-probs: RPO (eqs. 4 + 5),
the plain base loss, the known-noise baselines, label smoothing and Hölder-DPO. Pure torch; reduction happens
once, at the caller.

Hölder-DPO (``holder``, method ``holder-dpo``; Fujisawa et al. 2025, Prob. (12)) is
:func:`rpo.core.losses.holder_dpo_loss` of eq. 2's log-odds ``d``: for DPO ``d = beta h``, the paper's
``g_theta(s)``. On another base loss it applies the same score to that loss's Gibbs probability
``sigmoid(d)``, an extension the paper does not make.

Label smoothing (``ls-gibbs`` / ``ls-weighted``, methods ``dpo-ls`` ... ``cpo-ls``) is eq. 5 with the E-step
replaced by the constant ``w = 1 - eps``: under the Gibbs M-step ``-((1 - eps) log p(y_w > y_l) +
eps log p(y_l > y_w))`` with eq. 2's probabilities, under the weighted one ``(1 - eps) L_wl + eps L_lw``
(TRL's ``label_smoothing`` form). It follows the same ``objective`` switch as RPO, so X+LS and R-X differ by
the E-step alone: at eps = 1 - eta0 and initialisation (p = 1/2, so w = eta0) the two objectives are equal.
For DPO (and SimPO without margin) the two forms coincide; for IPO, CPO and SimPO with a margin they differ,
and the Gibbs form is the one RPO's objective smooths.

Each entry of :data:`OBJECTIVES` is ``fn(logps, ctx) -> (loss (B,), w (B,) or None)``, where ``logps`` are
the positional arguments of :func:`rpo.core.losses.pair_losses` (summed log-probs, lengths, reference
log-probs; each (B,)) and ``ctx`` an :class:`ObjectiveContext`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rpo.core.em import e_step_and_loss, gibbs_e_step_and_loss, rpo_loss
from rpo.core.log_odds import gibbs_log_odds
from rpo.core.losses import holder_dpo_loss, pair_losses

Tensor = torch.Tensor


@dataclass
class ObjectiveContext:
    pref_loss: str  # base loss of Table 1
    loss_options: dict  # beta, gamma, cpo_alpha, validate, ...
    prior: Tensor | None = None  # (B,) or (1,) logit(eta_k) of each row's annotator (Gibbs RPO)
    eta: Tensor | None = None  # (B,) eta_k of each row's annotator (weighted RPO)
    noise_eps: float | None = None  # known flip rate (cdpo / rdpo)
    smoothing: float | None = None  # label-smoothing rate eps (ls)
    holder_gamma: float | None = None  # Hölder-DPO's gamma (holder)


def _log_odds(logps, ctx: ObjectiveContext) -> Tensor:
    # eq. 2's log-odds in closed form, in at least float32 (as rpo.core.em computes eqs. 4 and 5)
    d = gibbs_log_odds(ctx.pref_loss, *logps, **ctx.loss_options)
    return d if d.dtype in (torch.float32, torch.float64) else d.float()


def _rpo_gibbs(logps, ctx: ObjectiveContext):
    # eq. 2's log-odds, then eqs. 4 and 5 in one pass
    return gibbs_e_step_and_loss(_log_odds(logps, ctx), ctx.prior)


def _rpo_weighted(logps, ctx: ObjectiveContext):
    loss_wl, loss_lw = pair_losses(ctx.pref_loss, *logps, **ctx.loss_options)
    return e_step_and_loss(loss_wl, loss_lw, ctx.eta, "weighted", validate=False)


def _plain(logps, ctx: ObjectiveContext):
    loss_wl, _ = pair_losses(ctx.pref_loss, *logps, **ctx.loss_options)
    return loss_wl, None


def _cdpo(logps, ctx: ObjectiveContext):
    # conservative DPO: eq. 5's weighted objective with the fixed weight w = 1 - eps
    loss_wl, loss_lw = pair_losses(ctx.pref_loss, *logps, **ctx.loss_options)
    return rpo_loss(loss_wl, loss_lw, torch.full_like(loss_wl, 1.0 - ctx.noise_eps), "weighted"), None


def _rdpo(logps, ctx: ObjectiveContext):
    # Chowdhury et al. 2024: unbiased under a known flip rate eps
    loss_wl, loss_lw = pair_losses(ctx.pref_loss, *logps, **ctx.loss_options)
    eps = ctx.noise_eps
    return ((1.0 - eps) * loss_wl - eps * loss_lw) / (1.0 - 2.0 * eps), None


def _holder(logps, ctx: ObjectiveContext):
    # Hölder-DPO, Prob. (12): the density-power score of sigmoid(d), per example
    return holder_dpo_loss(_log_odds(logps, ctx), ctx.holder_gamma), None


def _label_smoothing(m_step: str):
    def fn(logps, ctx: ObjectiveContext):
        # eq. 5 with w fixed at 1 - eps instead of eq. 4's posterior (see the module docstring)
        loss_wl, loss_lw = pair_losses(ctx.pref_loss, *logps, **ctx.loss_options)
        return rpo_loss(loss_wl, loss_lw, torch.full_like(loss_wl, 1.0 - ctx.smoothing), m_step), None

    return fn


#: objective key -> fn(logps, ctx) -> (per-example loss (B,), w (B,) or None)
OBJECTIVES: dict[str, Callable[..., tuple[Tensor, Tensor | None]]] = {
    "rpo-gibbs": _rpo_gibbs,
    "rpo-weighted": _rpo_weighted,
    "plain": _plain,
    "cdpo": _cdpo,
    "rdpo": _rdpo,
    "ls-gibbs": _label_smoothing("gibbs"),
    "ls-weighted": _label_smoothing("weighted"),
    "holder": _holder,
}


def objective_key(method_objective: str, m_step: str = "gibbs") -> str:
    """The :data:`OBJECTIVES` key of a method (``"rpo"``, ``"plain"``, ``"cdpo"``, ``"rdpo"``, ``"ls"``,
    ``"holder"``) under an M-step objective (``"gibbs"`` or ``"weighted"``; RPO and label smoothing only)."""
    return f"{method_objective}-{m_step}" if method_objective in ("rpo", "ls") else method_objective
