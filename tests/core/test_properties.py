"""Properties of eqs. 2-7 (hypothesis), Appendix B, Theorem 4.2 and Remark E.1."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rpo import e_step, em_operator, ema_update, pair_losses, preference_log_probs, rpo_loss
from rpo.core.theory import em_trajectory, simulate_calibrated_labels

LOGP = st.floats(-1e4, 1e4, allow_nan=False)
LENGTH = st.integers(1, 2048)
ETA = st.floats(0.0, 1.0)
NAMES = st.sampled_from(["dpo", "ipo", "simpo", "cpo"])


def pair(name, cw, rw, lw, ll, rcw, rrw, beta):
    f = lambda x: torch.tensor([x], dtype=torch.float32)  # noqa: E731  float32: the training dtype
    return pair_losses(name, f(cw), f(rw), f(lw), f(ll), f(rcw), f(rrw), beta=beta, gamma=0.5)


@settings(max_examples=300, deadline=None)
@given(NAMES, LOGP, LOGP, LENGTH, LENGTH, LOGP, LOGP, st.floats(1e-3, 10.0), ETA)
def test_w_in_unit_interval_and_finite(name, cw, rw, lw, ll, rcw, rrw, beta, eta):
    wl, lw_ = pair(name, cw, rw, lw, ll, rcw, rrw, beta)
    log_pw, log_pl = preference_log_probs(wl, lw_)
    assert torch.isfinite(log_pw).all() and torch.isfinite(log_pl).all()
    w = e_step(wl, lw_, torch.tensor([eta]))
    assert torch.isfinite(w).all() and 0.0 <= w.item() <= 1.0
    for objective in ("gibbs", "weighted"):
        assert torch.isfinite(rpo_loss(wl, lw_, w, objective)).all()


@settings(max_examples=200, deadline=None)
@given(st.floats(-30, 30), st.floats(-30, 30), st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_w_rises_with_eta_and_with_p(gap1, gap2, eta1, eta2):
    # p(y_w >* y_l) = sigmoid(gap) is increasing in gap, so w must be nondecreasing in both.
    zero = torch.zeros(1, dtype=torch.float64)
    w = lambda gap, eta: e_step(
        zero,
        torch.tensor([gap], dtype=torch.float64),  # noqa: E731
        torch.tensor([eta], dtype=torch.float64),
    ).item()
    lo_g, hi_g = sorted((gap1, gap2))
    lo_e, hi_e = sorted((eta1, eta2))
    assert w(lo_g, eta1) <= w(hi_g, eta1)
    assert w(gap1, lo_e) <= w(gap1, hi_e)


@settings(max_examples=100, deadline=None)
@given(NAMES, ETA)
def test_uninformative_model_gives_w_equal_eta(name, eta):
    # Equal log-probs for both responses (and lengths): the model cannot tell them apart, p = 1/2,
    # for the symmetric losses; eq. 4 then returns the prior. CPO and SimPO with a margin are symmetric
    # too when the two responses are identical.
    x = torch.full((1,), -7.0, dtype=torch.float64)
    n = torch.full((1,), 5.0, dtype=torch.float64)
    wl, lw = pair_losses(name, x, x, n, n, x, x, beta=0.3, gamma=0.4)
    assert preference_log_probs(wl, lw)[0].exp().item() == pytest.approx(0.5)
    assert e_step(wl, lw, torch.tensor([eta], dtype=torch.float64)).item() == pytest.approx(eta, abs=1e-12)


def test_no_gradient_flows_through_w():
    cw = torch.randn(8, requires_grad=True)
    rw = torch.randn(8)
    n = torch.ones(8)
    wl, lw = pair_losses("simpo", cw, rw, n, n, beta=1.0)
    w = e_step(wl, lw, torch.full((8,), 0.8))
    assert not w.requires_grad and w.grad_fn is None
    # d loss / d cw with w held fixed equals the autograd gradient: w contributes nothing.
    loss = rpo_loss(wl, lw, w).sum()
    (g,) = torch.autograd.grad(loss, cw)
    p = torch.sigmoid(cw - rw).detach()  # simpo gibbs with gamma = 0 is -[w log p + (1-w) log(1-p)]
    assert torch.allclose(g, -(w - p), atol=1e-6)
    # rpo_loss detaches w even when handed a w with a graph
    w_graph = torch.sigmoid(cw)
    fresh = lambda: pair_losses("simpo", cw, rw, n, n, beta=1.0)  # noqa: E731
    (g2,) = torch.autograd.grad(rpo_loss(*fresh(), w_graph, "weighted").sum(), cw)
    (g3,) = torch.autograd.grad(rpo_loss(*fresh(), w_graph.detach(), "weighted").sum(), cw)
    assert torch.allclose(g2, g3)


@settings(max_examples=200, deadline=None)
@given(LOGP, LOGP, LOGP, LOGP, st.floats(1e-3, 5.0))
def test_appendix_b_dpo_gibbs_probability_is_bradley_terry(cw, rw, rcw, rrw, beta):
    f = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    wl, lw = pair_losses("dpo", f(cw), f(rw), f(1), f(1), f(rcw), f(rrw), beta=beta)
    margin = (cw - rcw) - (rw - rrw)
    log_pw, _ = preference_log_probs(wl, lw)
    expected = -math.log1p(math.exp(-beta * margin)) if beta * margin > -700 else beta * margin
    assert log_pw.item() == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_cdpo_equals_rpo_with_fixed_w():
    # Conservative DPO (label smoothing eps) = RPO's eq. 5 with w frozen at 1 - eps.
    g = torch.Generator().manual_seed(1)
    cw, rw, rcw, rrw = (torch.randn(32, generator=g, dtype=torch.float64) * 10 for _ in range(4))
    n = torch.ones(32, dtype=torch.float64)
    beta, eps = 0.2, 0.15
    wl, lw = pair_losses("dpo", cw, rw, n, n, rcw, rrw, beta=beta)
    h = beta * ((cw - rcw) - (rw - rrw))
    cdpo = -(1 - eps) * torch.nn.functional.logsigmoid(h) - eps * torch.nn.functional.logsigmoid(-h)
    assert torch.allclose(rpo_loss(wl, lw, torch.full_like(n, 1 - eps)), cdpo, atol=1e-12)


# ---- Theorem 4.2 and Remark E.1 by simulation --------------------------------------------------


def iterate(p_star, eta0):
    return em_trajectory(p_star, eta0, steps=5000, tol=1e-12)[-1].item()


@pytest.mark.parametrize("eta_true", [0.6, 0.75, 0.9])
def test_theorem_4_2_em_converges_to_true_reliability(eta_true):
    p_star, z = simulate_calibrated_labels(100_000, eta_true, seed=int(eta_true * 100))
    empirical = z.double().mean().item()
    for eta0 in (0.05, 0.5, 0.95):
        est = iterate(p_star, eta0)
        assert abs(est - eta_true) < 0.01, (eta0, est, eta_true)
        assert abs(est - empirical) < 0.01


def test_lemma_4_1_true_reliability_is_a_fixed_point():
    p_star, _ = simulate_calibrated_labels(100_000, 0.8, seed=7)
    assert em_operator(p_star, 0.8).item() == pytest.approx(0.8, abs=0.005)
    assert abs(em_operator(p_star, 0.6).item() - 0.6) > 0.02  # and other values are not


def test_remark_e_1_uninformative_model_every_eta_is_fixed():
    p_star, _ = simulate_calibrated_labels(1000, 0.8, informative=False)
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert torch.allclose(em_operator(p_star, grid), grid, atol=1e-12)


def test_em_trajectory_moves_monotonically_toward_the_fixed_point():
    p_star, _ = simulate_calibrated_labels(20_000, 0.7, seed=3)
    up, down = em_trajectory(p_star, 0.05, steps=50), em_trajectory(p_star, 0.99, steps=50)
    assert (up.diff() >= 0).all() and (down.diff() <= 0).all()
    assert abs(up[-1] - down[-1]) < 1e-3


@pytest.mark.parametrize("objective", ["gibbs", "weighted"])
@pytest.mark.parametrize("name", ["dpo", "ipo", "simpo", "cpo"])
def test_fused_e_step_and_loss_equals_the_two_steps(name, objective):
    from rpo.core.em import e_step_and_loss

    g = torch.Generator().manual_seed(5)
    cw = (torch.randn(64, generator=g) * 30).requires_grad_()
    rw, rcw, rrw = (torch.randn(64, generator=g) * 30 for _ in range(3))
    n = torch.randint(1, 50, (64,), generator=g).float()
    eta = torch.rand(64, generator=g)
    eta[:2] = torch.tensor([0.0, 1.0])  # the ends, where eq. 4 is exactly 0 or 1
    wl, lw = pair_losses(name, cw, rw, n, n.flip(0), rcw, rrw, beta=0.3, gamma=0.2)
    w_ref = e_step(wl, lw, eta)
    ref = rpo_loss(wl, lw, w_ref, objective)
    (g_ref,) = torch.autograd.grad(ref.sum(), cw, retain_graph=True)
    for validate in (True, False):
        loss, w = e_step_and_loss(wl, lw, eta, objective, validate=validate)
        assert torch.equal(w, w_ref) and not w.requires_grad
        assert torch.allclose(loss, ref, rtol=1e-6, atol=1e-6)
        (g_new,) = torch.autograd.grad(loss.sum(), cw, retain_graph=True)
        assert torch.allclose(g_new, g_ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="mismatched shapes"):
        e_step_and_loss(wl, lw, eta[:3], objective)


@pytest.mark.parametrize(
    "conventions", [dict(), dict(ipo_length_norm=False, cpo_nll="sum"), dict(cpo_nll="token_mean", gamma=0.0)]
)
@pytest.mark.parametrize("name", ["dpo", "ipo", "simpo", "cpo"])
def test_closed_form_log_odds_equal_the_pair_difference(name, conventions):
    """gibbs_log_odds (beta h, 2h/beta, ...) is eq. 2's log-odds L_lw - L_wl of pair_losses, value and gradient,
    computed here in float64 so that the subtraction loses nothing."""
    from rpo.core.log_odds import gibbs_log_odds

    g = torch.Generator().manual_seed(11)
    cw = (torch.randn(64, generator=g, dtype=torch.float64) * 20).requires_grad_()
    rw, rcw, rrw = (torch.randn(64, generator=g, dtype=torch.float64) * 20 for _ in range(3))
    n = torch.randint(1, 40, (64,), generator=g).double()
    opts = dict(beta=0.3, gamma=0.4, cpo_alpha=0.7) | conventions
    wl, lw = pair_losses(name, cw, rw, n, n.flip(0), rcw, rrw, **opts)
    d = gibbs_log_odds(name, cw, rw, n, n.flip(0), rcw, rrw, **opts)
    assert torch.allclose(d, lw - wl, rtol=1e-10, atol=1e-10)
    (g_pair,) = torch.autograd.grad((lw - wl).sum(), cw)
    (g_closed,) = torch.autograd.grad(d.sum(), cw)
    assert torch.allclose(g_closed, g_pair, rtol=1e-10, atol=1e-12)
    assert d.abs().max() > 1.0  # not a degenerate all-zero case
    if name in ("dpo", "ipo"):  # the same argument checks as pair_losses
        with pytest.raises(ValueError, match="needs ref_chosen_logps"):
            gibbs_log_odds(name, cw, rw, n, n, beta=0.3)


def test_gibbs_step_from_log_odds_equals_the_loss_based_one():
    """gibbs_e_step_and_loss(d, logit(eta)) is e_step + rpo_loss('gibbs') for d = L_lw - L_wl."""
    from rpo.core.em import gibbs_e_step_and_loss, prior_log_odds

    g = torch.Generator().manual_seed(2)
    wl, lw = torch.rand(32, generator=g) * 5, torch.rand(32, generator=g) * 5
    eta = torch.rand(32, generator=g)
    d = (lw - wl).requires_grad_()
    loss, w = gibbs_e_step_and_loss(d, prior_log_odds(eta))
    w_ref = e_step(wl, lw, eta)
    assert torch.allclose(w, w_ref, atol=1e-7) and not w.requires_grad
    assert torch.allclose(loss, rpo_loss(wl, lw, w_ref, "gibbs"), atol=1e-6)
    (grad,) = torch.autograd.grad(loss.sum(), d)
    assert torch.allclose(grad, torch.sigmoid(d.detach()) - w, atol=1e-7)  # the M-step gradient


def test_eq7_from_accumulated_sums_equals_eq7_on_the_concatenated_batch():
    """The training loop's eq. 7: per-annotator sums accumulated in Python floats over micro-batches, then
    ema_step per annotator, is exactly ema_update on the whole batch (and ema_update_from_sums)."""
    from rpo.core.em import annotator_sums, ema_step, ema_update_from_sums

    g = torch.Generator().manual_seed(4)
    w, ids = torch.rand(24, generator=g), torch.randint(0, 3, (24,), generator=g)
    ids[ids == 2] = 0  # annotator 2 absent from the batch: it must keep its value
    eta = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    sums, counts = [0.0] * 3, [0] * 3
    for part in range(3):  # three micro-batches of 8
        for w_i, k in zip(w[8 * part : 8 * part + 8].tolist(), ids[8 * part : 8 * part + 8].tolist()):
            sums[k] += w_i
            counts[k] += 1
    new = [ema_step(e, s_, c, 0.1) for e, s_, c in zip(eta.tolist(), sums, counts)]
    assert new == ema_update(eta, w, ids, 0.1).tolist()  # bitwise
    assert new == ema_update_from_sums(eta, *annotator_sums(w, ids, 3), 0.1).tolist()
    assert new[2] == 0.7 and new[0] != 0.9 and counts == [int((ids == k).sum()) for k in range(3)]


def test_prior_log_odds_floats_and_tensors_agree():
    from rpo.core.em import prior_log_odds

    etas = [0.0, 1e-9, 0.3, 0.5, 0.9, 1 - 1e-12, 1.0]
    as_floats = [prior_log_odds(e) for e in etas]
    assert as_floats[0] == -math.inf and as_floats[-1] == math.inf and as_floats[3] == 0.0
    assert torch.allclose(
        torch.tensor(as_floats, dtype=torch.float64),
        prior_log_odds(torch.tensor(etas, dtype=torch.float64)),
        rtol=1e-14,
    )
    with pytest.raises(ValueError, match="eta"):
        prior_log_odds(1.5)
