"""Hand-derived values for each Table 1 loss and each equation of the math core (eqs. 2-7)."""

import math

import pytest
import torch

from rpo import e_step, em_operator, ema_update, full_update, init_eta, pair_losses, preference_log_probs, rpo_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def softplus(x):  # -log sigmoid(-x), written out independently of torch
    return math.log1p(math.exp(x))


# One pair, numbers chosen so every quantity is easy to derive by hand.
CW, RW = -10.0, -15.0  # policy log pi(y_w), log pi(y_l)
RCW, RRW = -12.0, -14.0  # reference
LW, LL = 4.0, 5.0  # |y_w|, |y_l|
BETA = 0.1


def losses(name, **kw):
    return pair_losses(name, t(CW), t(RW), t(LW), t(LL), t(RCW), t(RRW), beta=kw.pop("beta", BETA), **kw)


def test_dpo_hand_values():
    # h = (-10 + 12) - (-15 + 14) = 3, so L_wl = -log sigmoid(0.3) = softplus(-0.3), L_lw = softplus(0.3)
    wl, lw = losses("dpo")
    assert wl.item() == pytest.approx(softplus(-0.3), abs=1e-12)
    assert lw.item() == pytest.approx(softplus(0.3), abs=1e-12)
    assert wl.item() == pytest.approx(0.5543552444685, abs=1e-12)


def test_ipo_hand_values_both_conventions():
    # Table 1 (summed): h = 3, target 1/(2*0.1) = 5 -> (3-5)^2 = 4, swapped (-3-5)^2 = 64
    wl, lw = losses("ipo", ipo_length_norm=False)
    assert (wl.item(), lw.item()) == (pytest.approx(4.0), pytest.approx(64.0))
    # TRL (length-normalised): h = 2/4 - (-1)/5 = 0.7 -> (0.7-5)^2 = 18.49, (-0.7-5)^2 = 32.49
    wl, lw = losses("ipo")
    assert (wl.item(), lw.item()) == (pytest.approx(18.49), pytest.approx(32.49))


def test_simpo_hand_values():
    # u = 0.1 * (-10/4 - (-15/5)) = 0.05; gamma = 0.5: L_wl = softplus(-(0.05-0.5)), L_lw = softplus(-(-0.05-0.5))
    wl, lw = losses("simpo", gamma=0.5)
    assert wl.item() == pytest.approx(softplus(0.45), abs=1e-12)
    assert lw.item() == pytest.approx(softplus(0.55), abs=1e-12)


def test_cpo_hand_values_each_nll_convention():
    # u = 0.1 * (-10 + 15) = 0.5; sigmoid parts softplus(-0.5), softplus(0.5)
    wl, lw = losses("cpo", cpo_nll="sum")  # Table 1: + (-log pi(y_w)) = +10, swapped + 15
    assert wl.item() == pytest.approx(softplus(-0.5) + 10.0)
    assert lw.item() == pytest.approx(softplus(0.5) + 15.0)
    wl, lw = losses("cpo", cpo_nll="token_mean", cpo_alpha=2.0)  # 2 * 10/4, 2 * 15/5
    assert wl.item() == pytest.approx(softplus(-0.5) + 5.0)
    assert lw.item() == pytest.approx(softplus(0.5) + 6.0)
    # batch token mean with one example = token mean
    wl2, _ = losses("cpo", cpo_nll="batch_token_mean", cpo_alpha=2.0)
    assert wl2.item() == pytest.approx(wl.item())


def test_cpo_batch_token_mean_is_trl_token_mean():
    logp_w, len_w = t(-10.0, -30.0), t(4.0, 20.0)
    wl, _ = pair_losses("cpo", logp_w, t(-1.0, -1.0), len_w, t(1.0, 1.0), beta=1e-9, cpo_alpha=1.0)
    # beta -> 0 leaves log 2 + NLL; batch mean of NLL = (10 + 30) / (4 + 20), the token mean over chosen tokens
    assert (wl.mean() - math.log(2)).item() == pytest.approx(40.0 / 24.0, rel=1e-6)


def test_eq2_preference_probabilities():
    log_pw, log_pl = preference_log_probs(t(1.0), t(3.0))  # p(y_w >* y_l) = sigmoid(3 - 1)
    assert log_pw.exp().item() == pytest.approx(1 / (1 + math.exp(-2)))
    assert (log_pw.exp() + log_pl.exp()).item() == pytest.approx(1.0)


def test_eq4_e_step_hand_value():
    # p_w = sigmoid(2) = 0.8808, eta = 0.7: w = 0.8808*0.7 / (0.8808*0.7 + 0.1192*0.3)
    pw = 1 / (1 + math.exp(-2))
    expected = pw * 0.7 / (pw * 0.7 + (1 - pw) * 0.3)
    w = e_step(t(1.0), t(3.0), t(0.7))
    assert w.item() == pytest.approx(expected, abs=1e-12)
    assert not w.requires_grad


def test_eq5_gibbs_and_weighted_hand_values():
    wl, lw, w = t(1.0), t(3.0), t(0.25)
    pw = 1 / (1 + math.exp(-2))
    gibbs = -(0.25 * math.log(pw) + 0.75 * math.log(1 - pw))
    assert rpo_loss(wl, lw, w).item() == pytest.approx(gibbs)
    assert rpo_loss(wl, lw, w, objective="weighted").item() == pytest.approx(0.25 * 1 + 0.75 * 3)


def test_eq5_objectives_coincide_for_dpo_and_simpo_without_margin_only():
    g = torch.Generator().manual_seed(0)
    cw, rw, rcw, rrw = (torch.randn(16, generator=g, dtype=torch.float64) * 20 - 50 for _ in range(4))
    lens = torch.randint(1, 30, (16,), generator=g).double()
    w = torch.rand(16, generator=g, dtype=torch.float64)
    for name, kw, same in [
        ("dpo", {}, True),
        ("simpo", {"gamma": 0.0}, True),
        ("simpo", {"gamma": 1.0}, False),
        ("ipo", {}, False),
        ("cpo", {}, False),
    ]:
        wl, lw = pair_losses(name, cw, rw, lens, lens.flip(0), rcw, rrw, beta=0.5, **kw)
        diff = (rpo_loss(wl, lw, w, "gibbs") - rpo_loss(wl, lw, w, "weighted")).abs().max().item()
        assert (diff < 1e-9) == same, (name, kw, diff)


def test_eq6_full_update_hand_value():
    w = t(1.0, 0.0, 0.5, 0.25, 0.75)
    ids = torch.tensor([0, 0, 1, 1, 1])
    assert full_update(w, ids, 2).tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match=r"annotators \[2\] have no labels"):
        full_update(w, ids, 3)
    assert full_update(w, ids, 3, eta=t(0.9, 0.9, 0.8)).tolist() == pytest.approx([0.5, 0.5, 0.8])


def test_eq7_ema_update_hand_value_and_absent_annotators():
    eta = t(0.9, 0.8, 0.7)
    w = t(0.5, 0.7, 0.1)
    ids = torch.tensor([0, 0, 2])
    new = ema_update(eta, w, ids, alpha=0.1)
    # k=0: 0.9*0.9 + 0.1*0.6 = 0.87; k=1 absent: 0.8; k=2: 0.9*0.7 + 0.1*0.1 = 0.64
    assert new.tolist() == pytest.approx([0.87, 0.8, 0.64])
    assert eta.tolist() == [0.9, 0.8, 0.7]  # input untouched
    assert ema_update(eta, w, ids, alpha=1.0).tolist() == pytest.approx([0.6, 0.8, 0.1])


def test_em_operator_hand_value_and_grid():
    p = t(0.9, 0.5)
    # T(0.8) = (0.72/(0.72+0.02) + 0.8) / 2
    assert em_operator(p, 0.8).item() == pytest.approx((0.72 / 0.74 + 0.8) / 2)
    grid = em_operator(p, t(0.2, 0.8))
    assert grid.shape == (2,) and grid[1].item() == pytest.approx((0.72 / 0.74 + 0.8) / 2)


def test_em_operator_agrees_with_e_step():
    # T_k(eta) is the mean E-step weight when the model's probability is p*: eq. 4 with loss gap logit(p*)
    p = torch.rand(50, dtype=torch.float64).clamp(0.01, 0.99)
    gap = torch.log(p) - torch.log1p(-p)
    w = e_step(torch.zeros_like(p), gap, torch.full_like(p, 0.63))
    assert em_operator(p, 0.63).item() == pytest.approx(w.mean().item(), abs=1e-12)


def test_init_eta():
    assert init_eta(3, 0.9).tolist() == [0.9, 0.9, 0.9]


def test_fixed_point_eta_recovers_calibrated_reliabilities():
    """With calibrated evidence (p* drawn, labels flipped with the annotator's 1 - eta), the exact EM at
    the fixed model lands near each annotator's true reliability, and the returned w is eq. 4 at it."""
    from rpo.core.em import fixed_point_eta

    g = torch.Generator().manual_seed(0)
    truth = torch.tensor([0.95, 0.8, 0.6], dtype=torch.float64)
    ids = torch.arange(3).repeat_interleave(4000)
    # calibrated model: log-odds of the true preference ~ N(0, 3^2) around the truth's sign
    z = 3.0 * torch.randn(len(ids), generator=g, dtype=torch.float64)
    p_true = torch.sigmoid(z)
    correct_label = torch.rand(len(ids), generator=g, dtype=torch.float64) < truth[ids]
    # observed label agrees with the latent preference with prob eta; the model's evidence for the
    # observed label is z when the latent preference is "chosen" and -z otherwise
    latent_chosen = torch.rand(len(ids), generator=g, dtype=torch.float64) < p_true
    observed_chosen = torch.where(correct_label, latent_chosen, ~latent_chosen)
    d = torch.where(observed_chosen, z, -z)
    eta, w, iters = fixed_point_eta(d, ids, 3, 0.9)
    assert torch.allclose(eta, truth, atol=0.03), eta
    assert iters > 1 and torch.allclose(w, torch.sigmoid(d + torch.logit(eta)[ids]))
    empty, _, _ = fixed_point_eta(d[:10], torch.zeros(10, dtype=torch.long), 2, 0.9)
    assert empty[1].item() == 0.9  # no labels: keeps its start
