"""The RPO EM algorithm (eqs. 2-7, Lemma 4.1): math core, pure torch.

Notation. For a pair with observed label ``y_w > y_l`` from annotator ``k``:

* ``loss_wl = L(x, y_w > y_l)``, ``loss_lw = L(x, y_l > y_w)``  (:func:`rpo.core.losses.pair_losses`);
* ``d = loss_lw - loss_wl``, so eq. 2 is ``p(y_w >* y_l) = sigmoid(d)``;
* eq. 4 becomes ``w = sigmoid(d + logit(eta_k))``: the posterior that the label is correct is
  a logistic function of the model's evidence plus the annotator's prior log-odds. Computing it
  this way is exact and stays finite where the ratio of eq. 4 would be 0/0.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from rpo.core.checks import (
    check_alpha,
    check_annotator_ids,
    check_eta0,
    check_finite,
    check_probabilities,
    check_same_shape,
)

Tensor = torch.Tensor
OBJECTIVES = ("gibbs", "weighted")


def _gap(loss_wl: Tensor, loss_lw: Tensor) -> Tensor:
    """``loss_lw - loss_wl`` in at least float32, overflow clamped to the largest finite float."""
    dtype = torch.promote_types(loss_wl.dtype, torch.float32)
    d = loss_lw.to(dtype) - loss_wl.to(dtype)
    return torch.nan_to_num(d, nan=0.0)  # +-inf -> +-max float; NaN is rejected before we get here


def gap(loss_wl: Tensor, loss_lw: Tensor) -> Tensor:
    """Eq. 2's log-odds ``d = L(y_l > y_w) - L(y_w > y_l)`` from the pair of Table 1 losses, without gradient:
    the model's evidence that the observed label is right (``p(y_w >* y_l) = sigmoid(d)``). (B,) -> (B,)."""
    with torch.no_grad():
        return _gap(loss_wl.detach(), loss_lw.detach())


def preference_log_probs(loss_wl: Tensor, loss_lw: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 2 in log space: ``(log p(y_w >* y_l), log p(y_l >* y_w))``.

    ``log p(y_w >* y_l) = log sigmoid(L(y_l > y_w) - L(y_w > y_l))`` and its complement, through
    ``logsigmoid`` so both stay finite for any finite input (no ``log(1 - p)``).

    Shapes: ``loss_wl``, ``loss_lw`` (B,) -> two (B,) tensors, float32 or wider.
    """
    check_same_shape({"loss_wl": loss_wl, "loss_lw": loss_lw})
    check_finite({"loss_wl": loss_wl, "loss_lw": loss_lw})
    d = _gap(loss_wl, loss_lw)
    return F.logsigmoid(d), F.logsigmoid(-d)


def _logit(eta: Tensor) -> Tensor:
    # log(eta) - log(1 - eta), exact at the ends: eta = 1 gives +inf, so w = 1 exactly.
    return torch.log(eta) - torch.log1p(-eta)


def prior_log_odds(eta: Tensor | float) -> Tensor | float:
    """``logit(eta) = log eta - log(1 - eta)``: the annotator's term of eq. 4 in log-odds form
    (``w = sigmoid(d + logit(eta))``); +-inf at eta in {1, 0}, where w is exactly 1 or 0.
    A tensor gives a tensor of its shape; a Python float gives a float (float64), which is what a
    training loop uses once per eta update for its (K,) table, rather than per example.
    """
    if isinstance(eta, Tensor):
        return _logit(eta)
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if eta in (0.0, 1.0):
        return math.inf if eta == 1.0 else -math.inf
    return math.log(eta) - math.log1p(-eta)


def e_step(loss_wl: Tensor, loss_lw: Tensor, eta: Tensor) -> Tensor:
    """Eq. 4: posterior ``w_i = p(z_i = 1 | label, theta, eta)`` that each observed label is correct.

    ``w = p_w eta / (p_w eta + p_l (1 - eta))`` with ``p_w = p(y_w >* y_l)`` from eq. 2, computed as
    ``sigmoid(log p_w - log p_l + log eta - log(1 - eta))``, which is the same quantity in log
    space. The result carries no gradient (the E-step holds theta fixed).

    Shapes: ``loss_wl``, ``loss_lw``, ``eta`` (B,) (eta per example, i.e. ``eta[annotator_ids]``)
    -> ``w`` (B,) in [0, 1], float32 or wider.
    """
    check_same_shape({"loss_wl": loss_wl, "loss_lw": loss_lw, "eta": eta})
    check_finite({"loss_wl": loss_wl, "loss_lw": loss_lw, "eta": eta})
    if (eta < 0).any() or (eta > 1).any():
        raise ValueError("eta must lie in [0, 1]")
    with torch.no_grad():
        d = _gap(loss_wl.detach(), loss_lw.detach())
        prior = _logit(eta.detach().to(d.dtype))
        # d is finite; prior may be +-inf only at eta in {0, 1}, where w is exactly 1 or 0.
        return torch.sigmoid(d + prior)


def rpo_loss(loss_wl: Tensor, loss_lw: Tensor, w: Tensor, objective: str = "gibbs") -> Tensor:
    """Eq. 5, per example: the M-step objective for theta given E-step weights ``w``.

    * ``"gibbs"`` (eq. 5 as written): ``-(w log p(y_w >* y_l) + (1 - w) log p(y_l >* y_w))``;
    * ``"weighted"``: ``w L(y_w > y_l) + (1 - w) L(y_l > y_w)``, re-weighting the raw losses.

    The two coincide for DPO (its Gibbs probability is the Bradley-Terry one, Appendix B, so
    ``-log p = L``) and for SimPO with ``gamma = 0``; they differ for IPO, CPO and SimPO with a
    margin. The paper does not say which one it trained.

    ``w`` is treated as a constant (detached) even if the caller forgot to detach it.
    Shapes: all (B,) -> (B,). Reduce at the caller.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    check_same_shape({"loss_wl": loss_wl, "loss_lw": loss_lw, "w": w})
    check_finite({"loss_wl": loss_wl, "loss_lw": loss_lw})
    check_probabilities({"w": w})
    w = w.detach()
    if objective == "gibbs":
        log_pw, log_pl = preference_log_probs(loss_wl, loss_lw)
        w = w.to(log_pw.dtype)
        return -(w * log_pw + (1.0 - w) * log_pl)
    w = w.to(loss_wl.dtype)
    return w * loss_wl + (1.0 - w) * loss_lw


def e_step_and_loss(
    loss_wl: Tensor, loss_lw: Tensor, eta: Tensor, objective: str = "gibbs", *, validate: bool = True
) -> tuple[Tensor, Tensor]:
    """Eq. 4 then eq. 5 in one pass, for the training loop: ``(loss per example, w)``.

    The same values as ``w = e_step(loss_wl, loss_lw, eta)`` and ``rpo_loss(loss_wl, loss_lw, w, objective)``
    (tested), with the gap ``L_lw - L_wl`` computed once and the inputs checked once. ``validate=False``
    skips the checks: for callers that guarantee equal shapes, no NaN and eta in [0, 1] (the trainer's
    losses come from :func:`rpo.core.losses.pair_losses` of finite log-probs; eta stays in [0, 1] under eq. 7),
    because each check is a host sync and the E-step should add only O(B) work to a step.
    Shapes: all (B,) -> ``loss`` (B,), ``w`` (B,) without gradient.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if validate:
        check_same_shape({"loss_wl": loss_wl, "loss_lw": loss_lw, "eta": eta})
        check_finite({"loss_wl": loss_wl, "loss_lw": loss_lw, "eta": eta})
        if (eta < 0).any() or (eta > 1).any():
            raise ValueError("eta must lie in [0, 1]")
    d = (
        _gap(loss_wl, loss_lw)
        if validate
        else (loss_lw - loss_wl).to(torch.promote_types(loss_wl.dtype, torch.float32))
    )
    prior = _logit(eta.detach().to(d.dtype))
    if objective == "gibbs":
        return gibbs_e_step_and_loss(d, prior)
    with torch.no_grad():
        w = torch.sigmoid(d.detach() + prior)
    wt = w.to(loss_wl.dtype)
    return wt * loss_wl + (1.0 - wt) * loss_lw, w


def gibbs_e_step_and_loss(d: Tensor, prior: Tensor) -> tuple[Tensor, Tensor]:
    """Eqs. 4 and 5 (Gibbs objective) from log-odds alone: ``(loss per example, w)``.

    ``d = L(y_l > y_w) - L(y_w > y_l)`` is eq. 2's log-odds (differentiable; e.g.
    :func:`rpo.core.log_odds.gibbs_log_odds`), ``prior = logit(eta_k)`` per example (:func:`prior_log_odds`).
    Eq. 4: ``w = sigmoid(d + prior)``, without gradient. Eq. 5:
    ``-(w log sigmoid(d) + (1 - w) log sigmoid(-d)) = softplus(d) - w d``, whose gradient in d is exactly
    ``sigmoid(d) - w``; the value loses ~1e-7 |d| to cancellation when w -> 1.
    The training loop's hot path: four elementwise ops forward, three backward, no checks (no host sync).
    Shapes: ``d`` (B,), ``prior`` (B,) or broadcastable to it (one annotator: (1,)) -> two (B,) tensors.
    """
    with torch.no_grad():
        w = torch.sigmoid(d.detach() + prior)
    return F.softplus(d) - w * d, w


def init_eta(num_annotators: int, eta0: float = 0.9) -> Tensor:
    """Algorithm 1's input: every annotator starts at ``eta0`` in [0.5, 1). Returns (K,) float64."""
    check_eta0(eta0)
    if isinstance(num_annotators, bool) or not isinstance(num_annotators, numbers.Integral):
        raise ValueError(f"num_annotators must be an integer, got {num_annotators!r}")
    if num_annotators < 1:
        raise ValueError(f"num_annotators must be >= 1, got {num_annotators}")
    return torch.full((num_annotators,), float(eta0), dtype=torch.float64)


def annotator_sums(
    w: Tensor, annotator_ids: Tensor, num_annotators: int, *, validate: bool = True
) -> tuple[Tensor, Tensor]:
    """Per-annotator ``(sum of w, count)``, each (K,) float64: the sufficient statistics of eqs. 6 and 7.
    ``validate=False`` skips the tensor checks (host syncs). Shapes: ``w``, ``annotator_ids`` (B,) -> two (K,).
    """
    if validate:
        check_same_shape({"w": w, "annotator_ids": annotator_ids}, ndim=1)
        check_probabilities({"w": w})
        check_annotator_ids(annotator_ids, num_annotators)
    ids = annotator_ids.long()
    w = w.detach().to(torch.float64)
    sums = torch.zeros(num_annotators, dtype=torch.float64, device=w.device).index_add_(0, ids, w)
    counts = torch.zeros(num_annotators, dtype=torch.float64, device=w.device).index_add_(0, ids, torch.ones_like(w))
    return sums, counts


def ema_update(eta: Tensor, w: Tensor, annotator_ids: Tensor, alpha: float, *, validate: bool = True) -> Tensor:
    """Eq. 7: ``eta_k <- (1 - alpha) eta_k + alpha * mean_{i in B, k_i = k} w_i``.

    Annotators absent from the batch keep their value (Algorithm 1, line 8).
    Shapes: ``eta`` (K,), ``w`` (B,), ``annotator_ids`` (B,) integers in [0, K) -> new ``eta``
    (K,) in eta's dtype; the input is not modified. ``validate=False`` skips the tensor checks (host
    syncs) for a training loop whose ids were validated with the dataset.
    """
    if eta.ndim != 1:
        raise ValueError(f"eta must have shape (K,), got {tuple(eta.shape)}")
    check_alpha(alpha)
    sums, counts = annotator_sums(w, annotator_ids, eta.shape[0], validate=validate)
    return ema_update_from_sums(eta, sums.to(eta.device), counts.to(eta.device), alpha)


def ema_update_from_sums(eta: Tensor, sums: Tensor, counts: Tensor, alpha: float) -> Tensor:
    """Eq. 7 from a batch's per-annotator statistics (:func:`annotator_sums`): :func:`ema_step` for each
    annotator. Shapes: all (K,) -> new ``eta`` (K,) in eta's dtype and device; the input is not modified."""
    check_alpha(alpha)
    new = [ema_step(e, s, c, alpha) for e, s, c in zip(eta.tolist(), sums.tolist(), counts.tolist())]
    return torch.tensor(new, dtype=torch.float64).to(eta.device, eta.dtype)


def ema_step(eta_k: float, sum_w: float, count: float, alpha: float) -> float:
    """Eq. 7 for one annotator, in Python floats (float64): ``(1 - alpha) eta_k + alpha sum_w / count``, or
    ``eta_k`` when the batch holds none of its labels (``count == 0``, Algorithm 1, line 8).

    The one implementation of eq. 7: the tensor forms call it, and the trainer calls it for each of its K
    annotators once per optimizer step, where a dozen (K,)-sized tensor ops would cost more than the
    E-step itself on a small model. The caller checks alpha (:func:`rpo.core.checks.check_alpha`)."""
    if count == 0:
        return eta_k
    return (1.0 - alpha) * eta_k + alpha * (sum_w / count)


def count_prior_strength(alpha: float) -> float:
    """The default prior strength ``n0`` of :func:`count_step`: ``(1 - alpha) / alpha`` (9 at the paper's
    alpha 0.1), the one at which the count update's first step on a single label *is* eq. 7's step."""
    check_alpha(alpha)
    return (1.0 - alpha) / alpha


def count_step(eta_k: float, seen: float, sum_w: float, count: float, prior_strength: float) -> float:
    """The count-aware update for one annotator, a running Beta-posterior mean seeded by eta0.

    With ``n0 = prior_strength`` pseudo-labels at eta0 and the ``N_k`` labels seen so far, eta_k is
    ``(n0 eta0 + sum of their w) / (n0 + N_k)``. Written as an update of the current value (so that an
    assigned eta, an exact refit say, is carried on with the same weight): ``seen`` = N_k before this
    step, ``sum_w`` / ``count`` the step's statistics ->
    ``(eta_k (n0 + seen) + sum_w) / (n0 + seen + count)``. Eq. 7 moves by ``alpha`` per step whatever
    the number of labels behind it; here each label moves eta_k by ``1 / (n0 + N_k)``, so an annotator's
    estimate rests on all its labels, not on its last few. ``count == 0`` keeps eta_k."""
    if count == 0:
        return eta_k
    return (eta_k * (prior_strength + seen) + sum_w) / (prior_strength + seen + count)


def full_update(w: Tensor, annotator_ids: Tensor, num_annotators: int, eta: Tensor | None = None) -> Tensor:
    """Eq. 6 (= eq. 28): ``eta_k = (1 / N_k) sum_{i in I_k} w_i`` over the whole dataset.

    An annotator with no labels has no estimate: it keeps its value from ``eta`` when given,
    otherwise this raises. Shapes: ``w``, ``annotator_ids`` (N,) -> (K,) float64.
    """
    sums, counts = annotator_sums(w, annotator_ids, num_annotators)
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing and eta is None:
        raise ValueError(f"annotators {missing} have no labels: eq. 6 is undefined for them")
    new = sums / counts.clamp(min=1)
    if missing:
        new = torch.where(counts > 0, new, eta.detach().to(torch.float64))
    return new


def fixed_point_eta(
    d: Tensor,
    annotator_ids: Tensor,
    num_annotators: int,
    eta0: Tensor | float = 0.9,
    *,
    max_iter: int = 1000,
    tol: float = 1e-10,
) -> tuple[Tensor, Tensor, int]:
    """Exact EM for eta at a fixed model (Theorem 4.2's operator on the data): eq. 4 with the model's
    eq. 2 log-odds ``d`` held fixed, ``w_i = sigmoid(d_i + logit(eta_{k_i}))``, then eq. 6,
    ``eta_k = mean_{i in I_k} w_i``, repeated until no eta moves by more than ``tol`` (or ``max_iter``).

    Shapes: ``d``, ``annotator_ids`` (N,); ``eta0`` a float or (K,) start -> ``(eta (K,) float64, w (N,)
    float64 at that eta, iterations)``. An annotator with no labels keeps its start value. The fixed point
    is the one this start leads to: from ``eta0 >= 0.5`` and an informative model, the reliable one.
    """
    if max_iter < 1 or not tol >= 0:  # with no iteration there is no fixed point to return
        raise ValueError(f"fixed_point_eta needs max_iter >= 1 and tol >= 0, got max_iter={max_iter}, tol={tol}")
    d = d.detach().to(torch.float64).flatten()
    ids = annotator_ids.long().flatten()
    check_same_shape({"d": d, "annotator_ids": ids}, ndim=1)
    check_finite({"d": d})
    check_annotator_ids(ids, num_annotators)
    eta = torch.as_tensor(eta0, dtype=torch.float64).clone()
    eta = eta.expand(num_annotators).clone() if eta.ndim == 0 else eta
    if eta.shape != (num_annotators,):
        raise ValueError(f"eta0 must be a float or have shape ({num_annotators},), got {tuple(eta.shape)}")
    if ((eta <= 0) | (eta >= 1)).any():
        raise ValueError("eta0 must lie strictly inside (0, 1)")
    counts = torch.zeros(num_annotators, dtype=torch.float64).index_add_(0, ids, torch.ones_like(d))
    for it in range(1, max_iter + 1):
        w = torch.sigmoid(d + _logit(eta)[ids])
        sums = torch.zeros(num_annotators, dtype=torch.float64).index_add_(0, ids, w)
        new = torch.where(counts > 0, sums / counts.clamp(min=1), eta)
        # keep eta off {0, 1}, where logit is infinite and EM can never move again
        new = new.clamp(1e-12, 1 - 1e-12)
        done = (new - eta).abs().max().item() <= tol
        eta = new
        if done:
            break
    return eta, torch.sigmoid(d + _logit(eta)[ids]), it


def em_operator(p_star: Tensor, eta: Tensor | float) -> Tensor:
    """Lemma 4.1: ``T_k(eta) = (1/N_k) sum_i p*_i eta / (p*_i eta + (1 - p*_i)(1 - eta))``.

    ``p_star`` (N,) holds the calibrated probabilities that each *observed* label agrees with the
    latent preference, for the labels of one annotator. ``eta`` is a scalar, or a (M,) grid on
    which T is evaluated at once (for plots). Returns a 0-d tensor, or (M,). Computed with
    :func:`e_step`'s log-odds form, so p* in {0, 1} is handled exactly.
    """
    p_star = torch.as_tensor(p_star, dtype=torch.float64)
    eta_t = torch.as_tensor(eta, dtype=torch.float64)
    if p_star.ndim != 1:
        raise ValueError(f"p_star must have shape (N,), got {tuple(p_star.shape)}")
    check_finite({"p_star": p_star, "eta": eta_t})
    if (p_star < 0).any() or (p_star > 1).any():
        raise ValueError("p_star must lie in [0, 1]")
    if (eta_t < 0).any() or (eta_t > 1).any():
        raise ValueError("eta must lie in [0, 1]")
    evidence = _logit(p_star)  # log p* - log(1 - p*)
    grid = eta_t.reshape(-1, 1)
    # w_i(eta) = sigmoid(logit p*_i + logit eta). At p* = 1, eta = 0 (or p* = 0, eta = 1) eq. 4 is
    # 0/0 and the logits read inf - inf; there we fall back to the prior, w = eta.
    z = evidence.reshape(1, -1) + _logit(grid)
    z = torch.where(torch.isnan(z), _logit(grid).expand_as(z), z)
    out = torch.sigmoid(z).mean(dim=1)
    return out.reshape(eta_t.shape)
