"""The per-example training objective of every method, from the policy's log-probs: RPO (eqs. 4 + 5),
the plain base loss, and the known-noise baselines. Pure torch; reduction happens once, at the caller.

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
from rpo.core.losses import pair_losses

Tensor = torch.Tensor


@dataclass
class ObjectiveContext:
    pref_loss: str  # base loss of Table 1
    loss_options: dict  # beta, gamma, cpo_alpha, validate, ...
    prior: Tensor | None = None  # (B,) or (1,) logit(eta_k) of each row's annotator (Gibbs RPO)
    eta: Tensor | None = None  # (B,) eta_k of each row's annotator (weighted RPO)
    noise_eps: float | None = None  # known flip rate (cdpo / rdpo)


def _rpo_gibbs(logps, ctx: ObjectiveContext):
    # eq. 2's log-odds in closed form, then eqs. 4 and 5 in one pass
    d = gibbs_log_odds(ctx.pref_loss, *logps, **ctx.loss_options)
    if d.dtype not in (torch.float32, torch.float64):
        d = d.float()  # eqs. 4 and 5 in at least float32, as rpo.core.em does
    return gibbs_e_step_and_loss(d, ctx.prior)


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


#: objective key -> fn(logps, ctx) -> (per-example loss (B,), w (B,) or None)
OBJECTIVES: dict[str, Callable[..., tuple[Tensor, Tensor | None]]] = {
    "rpo-gibbs": _rpo_gibbs,
    "rpo-weighted": _rpo_weighted,
    "plain": _plain,
    "cdpo": _cdpo,
    "rdpo": _rdpo,
}


def objective_key(method_objective: str, m_step: str = "gibbs") -> str:
    """The :data:`OBJECTIVES` key of a method (``"rpo"``, ``"plain"``, ``"cdpo"``, ``"rdpo"``) under an
    M-step objective (``"gibbs"`` or ``"weighted"``, RPO only)."""
    return f"rpo-{m_step}" if method_objective == "rpo" else method_objective
