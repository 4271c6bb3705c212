"""Eq. 2's log-odds in closed form, per Table 1 loss (math core: pure torch).

``d = L(x, y_l > y_w) - L(x, y_w > y_l)`` is the same quantity as ``loss_lw - loss_wl`` from
:func:`rpo.core.losses.pair_losses` (same arguments, same checks), written directly: ``beta h`` for DPO,
``2 h / beta`` for IPO, ``softplus(u + gamma) - softplus(gamma - u)`` for SimPO (``u`` at ``gamma = 0``),
``beta (lp_w - lp_l) + alpha (NLL_l - NLL_w)`` for CPO. The training loop's Gibbs path (eqs. 4 + 5) needs
only d; the closed form is a shorter autograd graph and free of the cancellation of subtracting two losses.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from rpo.core.losses import _cpo_nlls, _dispatch, _ipo_h

Tensor = torch.Tensor

#: name -> function(same arguments as rpo.core.losses.LOSSES) -> d (B,)
LOG_ODDS: dict[str, Callable[..., Tensor]] = {}


def register_log_odds(name: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    def deco(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        LOG_ODDS[name] = fn
        return fn

    return deco


@register_log_odds("dpo")
def dpo_log_odds(
    chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, ref_chosen_logps, ref_rejected_logps, *, beta, **_
):
    """DPO's eq. 2 log-odds: ``softplus(beta h) - softplus(-beta h) = beta h`` (Appendix B: the Gibbs
    probability is Bradley-Terry). Shapes: (B,) -> (B,)."""
    return beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps))


@register_log_odds("ipo")
def ipo_log_odds(
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta,
    ipo_length_norm=True,
    **_,
):
    """IPO's eq. 2 log-odds: ``(h + 1/(2 beta))^2 - (h - 1/(2 beta))^2 = 2 h / beta`` (no target margin
    survives, see the README's departures). Shapes: (B,) -> (B,)."""
    return (2.0 / beta) * _ipo_h(
        chosen_logps,
        rejected_logps,
        chosen_lengths,
        rejected_lengths,
        ref_chosen_logps,
        ref_rejected_logps,
        ipo_length_norm,
    )


@register_log_odds("simpo")
def simpo_log_odds(
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta,
    gamma=0.0,
    **_,
):
    """SimPO's eq. 2 log-odds: ``softplus(u + gamma) - softplus(gamma - u)``, which is ``u`` exactly when
    ``gamma = 0`` (then R-SimPO's Gibbs objective is SimPO's own loss at w = 1). Shapes: (B,) -> (B,)."""
    u = beta * (chosen_logps / chosen_lengths - rejected_logps / rejected_lengths)
    if gamma == 0:
        return u
    return F.softplus(u + gamma) - F.softplus(gamma - u)


@register_log_odds("cpo")
def cpo_log_odds(
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta,
    cpo_alpha=1.0,
    cpo_nll="batch_token_mean",
    **_,
):
    """CPO's eq. 2 log-odds: ``beta (log pi(y_w) - log pi(y_l)) + cpo_alpha (NLL(y_l) - NLL(y_w))``, the
    NLLs normalised as in :func:`cpo_pair`. Shapes: (B,) -> (B,)."""
    nll_w, nll_l = _cpo_nlls(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, cpo_nll)
    return beta * (chosen_logps - rejected_logps) + cpo_alpha * (nll_l - nll_w)


def gibbs_log_odds(
    name: str,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    *,
    beta: float,
    gamma: float = 0.0,
    cpo_alpha: float = 1.0,
    ipo_length_norm: bool = True,
    cpo_nll: str = "batch_token_mean",
    validate: bool = True,
) -> Tensor:
    """Eq. 2's log-odds ``d = L(x, y_l > y_w) - L(x, y_w > y_l)``, so ``p(y_w >* y_l) = sigmoid(d)``.

    The same quantity as ``loss_lw - loss_wl`` from :func:`pair_losses` (same arguments, same checks),
    in closed form (:data:`LOG_ODDS`): ``beta h`` for DPO, ``2 h / beta`` for IPO, ``u`` for SimPO with
    ``gamma = 0``. Eqs. 4 and 5 (Gibbs objective) need nothing else, and the closed form is a shorter
    autograd graph and free of the cancellation of subtracting two losses.
    Shapes: every input (B,) -> (B,), differentiable.
    """
    return _dispatch(
        LOG_ODDS,
        name,
        chosen_logps,
        rejected_logps,
        chosen_lengths,
        rejected_lengths,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        gamma=gamma,
        cpo_alpha=cpo_alpha,
        ipo_length_norm=ipo_length_norm,
        cpo_nll=cpo_nll,
        validate=validate,
    )
