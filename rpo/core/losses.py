"""Table 1 preference losses, as pairs of per-example values (math core: pure torch).

Every loss here returns the pair ``(loss_wl, loss_lw)``:

* ``loss_wl = L_pref(x, y_w > y_l)``: the loss of the observed label, Table 1 as written;
* ``loss_lw = L_pref(x, y_l > y_w)``: the same loss with the two responses swapped.

Eq. 2 turns the pair into a Gibbs probability ``p(y_w >* y_l) = sigmoid(loss_lw - loss_wl)``
(see :mod:`rpo.core.em`), which is why the swapped loss is needed at all. Both tensors have shape
``(B,)``; reduction happens once, at the caller.

Inputs are *per-sequence summed* completion log-probs ``log pi(y|x)`` of shape ``(B,)`` and the
completion token counts ``|y|`` of shape ``(B,)``. DPO and IPO need the reference model's summed
log-probs too; SimPO and CPO are reference-free.

Dispatch is a small registry (:data:`LOSSES`), not a string ``if`` ladder: a new loss is one
decorated function.

Departures from Table 1 (also in the README's table):

* IPO: Table 1 writes summed log-ratios. TRL (which the paper used) length-normalises them
  (mean per-token log-ratio). ``ipo_length_norm=True`` (default) follows TRL; ``False`` is Table 1
  literally.
* CPO: Table 1 adds ``-log pi(y_w|x)`` (a summed NLL). TRL's CPOTrainer adds ``cpo_alpha`` times a
  token-mean cross-entropy over all chosen tokens *of the batch*. ``cpo_nll`` selects:
  ``"batch_token_mean"`` (default; per example ``-log pi(y_w|x) / mean_batch(|y_w|)``, whose batch
  mean is exactly TRL's term), ``"token_mean"`` (``-log pi(y_w|x) / |y_w|``) or ``"sum"`` (Table 1).
  In the swapped loss the NLL is on ``y_l``, because ``L(x, y_l > y_w)`` treats ``y_l`` as chosen.
* SimPO: ``gamma`` is the absolute margin of Table 1 (TRL's ``simpo_gamma``); TRL's CPOTrainer
  divides it by beta internally and then multiplies back, which is the same thing.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from rpo.core.checks import check_finite, check_hyper, check_same_shape

Tensor = torch.Tensor
PairLoss = Callable[..., tuple[Tensor, Tensor]]

#: name -> function(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths,
#: ref_chosen_logps, ref_rejected_logps, **hyperparameters) -> (loss_wl, loss_lw)
LOSSES: dict[str, PairLoss] = {}
#: names of the losses that need reference log-probs
NEEDS_REFERENCE: set[str] = set()

CPO_NLL_MODES = ("batch_token_mean", "token_mean", "sum")


def register(name: str, *, needs_reference: bool) -> Callable[[PairLoss], PairLoss]:
    def deco(fn: PairLoss) -> PairLoss:
        LOSSES[name] = fn
        if needs_reference:
            NEEDS_REFERENCE.add(name)
        return fn

    return deco


@register("dpo", needs_reference=True)
def dpo_pair(
    chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, ref_chosen_logps, ref_rejected_logps, *, beta, **_
):
    """DPO, Table 1 row 1 (eq. 1): ``-log sigmoid(beta * h)`` with
    ``h = log pi/pi_ref (y_w) - log pi/pi_ref (y_l)``; swapped: ``-log sigmoid(-beta * h)``.

    Shapes: every input (B,); returns two (B,) tensors.
    """
    h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * h), -F.logsigmoid(-beta * h)


@register("ipo", needs_reference=True)
def ipo_pair(
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
    """IPO, Table 1 row 2: ``(h - 1/(2 beta))^2``; swapped: ``(-h - 1/(2 beta))^2``.

    ``h`` is the difference of log-ratios. With ``ipo_length_norm`` (default, TRL's convention)
    each log-ratio is divided by its completion length; without it, summed as in Table 1.
    Shapes: every input (B,); returns two (B,) tensors.
    """
    h = _ipo_h(
        chosen_logps,
        rejected_logps,
        chosen_lengths,
        rejected_lengths,
        ref_chosen_logps,
        ref_rejected_logps,
        ipo_length_norm,
    )
    target = 1.0 / (2.0 * beta)
    return (h - target) ** 2, (-h - target) ** 2


def _ipo_h(
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps,
    ref_rejected_logps,
    ipo_length_norm,
):
    chosen_ratio = chosen_logps - ref_chosen_logps
    rejected_ratio = rejected_logps - ref_rejected_logps
    if ipo_length_norm:
        chosen_ratio = chosen_ratio / chosen_lengths
        rejected_ratio = rejected_ratio / rejected_lengths
    return chosen_ratio - rejected_ratio


@register("simpo", needs_reference=False)
def simpo_pair(
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
    """SimPO, Table 1 row 3: ``-log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)``;
    swapped: the same with y_w and y_l exchanged (the margin gamma stays subtracted).

    Reference-free. Shapes: every input (B,); returns two (B,) tensors.
    """
    u = beta * (chosen_logps / chosen_lengths - rejected_logps / rejected_lengths)
    return -F.logsigmoid(u - gamma), -F.logsigmoid(-u - gamma)


@register("cpo", needs_reference=False)
def cpo_pair(
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
    """CPO, Table 1 row 4: ``-log sigmoid(beta (log pi(y_w) - log pi(y_l))) + cpo_alpha * NLL(y_w)``;
    swapped: ``-log sigmoid(-beta (...)) + cpo_alpha * NLL(y_l)``.

    ``cpo_nll`` picks the NLL's normalisation (see the module docstring; Table 1 is ``"sum"`` with
    ``cpo_alpha=1``). Reference-free. Shapes: every input (B,); returns two (B,) tensors.
    """
    nll_w, nll_l = _cpo_nlls(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, cpo_nll)
    u = beta * (chosen_logps - rejected_logps)
    return -F.logsigmoid(u) + cpo_alpha * nll_w, -F.logsigmoid(-u) + cpo_alpha * nll_l


def _cpo_nlls(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, cpo_nll):
    if cpo_nll == "batch_token_mean":
        # Dividing each summed NLL by the batch's mean length makes the batch mean of the
        # per-example terms equal TRL's token-mean cross-entropy over all chosen tokens.
        return -chosen_logps / chosen_lengths.mean(), -rejected_logps / rejected_lengths.mean()
    if cpo_nll == "token_mean":
        return -chosen_logps / chosen_lengths, -rejected_logps / rejected_lengths
    if cpo_nll == "sum":
        return -chosen_logps, -rejected_logps
    raise ValueError(f"cpo_nll must be one of {CPO_NLL_MODES}, got {cpo_nll!r}")


def holder_dpo_loss(log_odds: Tensor, holder_gamma: float) -> Tensor:
    """Hölder-DPO's per-example loss (Fujisawa, Adachi, Osborne 2025, arXiv 2505.17859, Prob. (12), derived
    in their Appendix D), not a Table 1 loss: with ``p = sigmoid(d)`` the model's probability of the
    observed label (``d = g_theta(s) = beta h`` for DPO, eq. 2's log-odds),

        ``l(d) = holder_gamma * p^(1 + holder_gamma) - (1 + holder_gamma) * p^holder_gamma``.

    This is the density-power Hölder score ``S_gamma(p_D || sigmoid(g_theta)) = phi(A / B) B`` with
    ``phi(h) = gamma - (1 + gamma) h`` (Prob. (8)-(9)), ``A = E[p^gamma]`` and the intractable
    ``B = int p^(1 + gamma) ds`` both estimated by the empirical measure of the data (Appendix D); it is
    linear in A and B, so its batch mean is Prob. (12) and it separates per example.

    ``dl/dd = -gamma (1 + gamma) p^gamma (1 - p)^2`` vanishes as ``d -> -inf`` (the redescending property,
    Corollary 1: a confidently contradicted label, likely flipped, has no pull), where DPO's ``-(1 - p)``
    tends to -1. ``holder_gamma > 0`` (Theorem 4; the paper's default 2.0, section 5). Shapes: (B,) -> (B,).
    """
    if isinstance(holder_gamma, bool) or not isinstance(holder_gamma, (int, float)) or not 0 < holder_gamma < math.inf:
        raise ValueError(f"holder_gamma must be a finite number > 0 (Hölder-DPO's gamma), got {holder_gamma!r}")
    log_p = F.logsigmoid(log_odds)  # p^gamma through its log: no 0 ** gamma, no overflow
    p_gamma = torch.exp(holder_gamma * log_p)
    return p_gamma * (holder_gamma * torch.exp(log_p) - (1.0 + holder_gamma))


def pair_losses(
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
) -> tuple[Tensor, Tensor]:
    """Table 1: ``(L(x, y_w > y_l), L(x, y_l > y_w))`` for ``name`` in {dpo, ipo, simpo, cpo}.

    Args:
        name: a key of :data:`LOSSES`.
        chosen_logps, rejected_logps: summed completion log-probs under the policy, (B,).
        chosen_lengths, rejected_lengths: completion token counts, (B,), positive.
        ref_chosen_logps, ref_rejected_logps: summed reference log-probs, (B,); required by
            dpo and ipo, ignored by simpo and cpo.
        beta: temperature (all losses). gamma: SimPO's absolute margin. cpo_alpha: weight of
            CPO's NLL. ipo_length_norm, cpo_nll: conventions, see the module docstring.

    Returns:
        ``(loss_wl, loss_lw)``, each (B,), in the dtype of the inputs.

    Raises:
        ValueError: unknown name, missing reference log-probs, mismatched shapes, NaN inputs,
            non-positive lengths or beta. ``validate=False`` skips the tensor checks (each is a host
            sync) for a training loop whose inputs come from a model; the name and beta are still checked.
    """
    return _dispatch(
        LOSSES,
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


def _dispatch(
    table,
    name,
    chosen_logps,
    rejected_logps,
    chosen_lengths,
    rejected_lengths,
    ref_chosen_logps,
    ref_rejected_logps,
    *,
    beta,
    validate,
    **hyper,
):
    if name not in table:
        raise ValueError(f"unknown preference loss {name!r}; known: {sorted(table)}")
    # scalars first (Python only, no host sync): a NaN or infinite gamma / cpo_alpha / beta gives NaN losses
    check_hyper(beta, **{k: hyper[k] for k in ("gamma", "cpo_alpha") if k in hyper})
    tensors = {
        "chosen_logps": chosen_logps,
        "rejected_logps": rejected_logps,
        "chosen_lengths": chosen_lengths,
        "rejected_lengths": rejected_lengths,
    }
    if name in NEEDS_REFERENCE:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(f"{name} needs ref_chosen_logps and ref_rejected_logps")
        tensors.update(ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if validate:
        check_same_shape(tensors, ndim=1)
        check_finite(tensors)
        if (chosen_lengths <= 0).any() or (rejected_lengths <= 0).any():
            raise ValueError("completion lengths must be positive (an empty response carries no preference)")
    chosen_lengths = chosen_lengths.to(chosen_logps.dtype)
    rejected_lengths = rejected_lengths.to(rejected_logps.dtype)
    return table[name](
        chosen_logps,
        rejected_logps,
        chosen_lengths,
        rejected_lengths,
        ref_chosen_logps,
        ref_rejected_logps,
        beta=beta,
        **hyper,
    )
