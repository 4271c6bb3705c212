"""Label smoothing (``dpo-ls`` ... ``cpo-ls``): eq. 5 with w fixed at 1 - eps, under either M-step objective,
and exactly RPO's objective at initialisation (value and gradient) when eps = 1 - eta0."""

import pytest
import torch

from rpo.core.em import rpo_loss
from rpo.core.losses import pair_losses
from rpo.core.methods import METHODS, from_config
from rpo.core.objectives import OBJECTIVES, ObjectiveContext, objective_key

OPTS = {"dpo": dict(beta=0.5), "ipo": dict(beta=0.5), "simpo": dict(beta=2.0, gamma=0.3), "cpo": dict(beta=0.5)}


def logps(seed=0, same_reference=False):
    g = torch.Generator().manual_seed(seed)
    cw, rw = -5 * torch.rand(6, generator=g, dtype=torch.float64), -5 * torch.rand(6, generator=g, dtype=torch.float64)
    n_w, n_l = torch.randint(2, 9, (6,), generator=g).double(), torch.randint(2, 9, (6,), generator=g).double()
    rcw, rrw = (cw.clone(), rw.clone()) if same_reference else (cw - 0.3, rw + 0.2)
    return [cw.requires_grad_(), rw.requires_grad_(), n_w, n_l, rcw, rrw]


def ctx(loss, **kw):
    return ObjectiveContext(loss, {**OPTS[loss], "validate": False}, **kw)


def test_registry_entries():
    for loss, label in (("dpo", "DPO"), ("ipo", "IPO"), ("simpo", "SimPO"), ("cpo", "CPO")):
        m = METHODS[f"{loss}-ls"]
        assert (m.loss, m.robust, m.baseline, m.label, m.objective) == (loss, False, "ls", f"{label}+LS", "ls")
        assert from_config({"method": f"{loss}-ls", "robust": False}) is m
    assert objective_key("ls", "weighted") == "ls-weighted" and objective_key("cdpo", "weighted") == "cdpo"


@pytest.mark.parametrize("loss", list(OPTS))
@pytest.mark.parametrize("m_step", ["gibbs", "weighted"])
def test_ls_is_eq5_with_w_fixed(loss, m_step):
    lp = logps()
    got, w = OBJECTIVES[f"ls-{m_step}"](lp, ctx(loss, smoothing=0.15))
    loss_wl, loss_lw = pair_losses(loss, *lp, **OPTS[loss])
    assert w is None and torch.allclose(got, rpo_loss(loss_wl, loss_lw, torch.full_like(loss_wl, 0.85), m_step))
    if m_step == "weighted":  # TRL's label_smoothing form
        assert torch.allclose(got, 0.85 * loss_wl + 0.15 * loss_lw)


def test_the_two_forms_agree_for_dpo_and_differ_for_ipo_and_cpo():
    for loss, same in (("dpo", True), ("ipo", False), ("cpo", False)):
        lp = logps(1)
        g = OBJECTIVES["ls-gibbs"](lp, ctx(loss, smoothing=0.1))[0]
        wt = OBJECTIVES["ls-weighted"](lp, ctx(loss, smoothing=0.1))[0]
        assert torch.allclose(g, wt) == same, loss


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_at_initialisation_ls_is_rpo_value_and_gradient(loss):
    """Policy = reference (h = 0, so p = 1/2 and eq. 4 gives w = eta0): R-X's Gibbs objective and X+LS at
    eps = 1 - eta0 have the same value and the same gradient; away from it they part."""
    eta0 = 0.9
    prior = torch.logit(torch.tensor([eta0], dtype=torch.float64))
    for same_reference, equal in ((True, True), (False, False)):
        lp_r, lp_s = logps(2, same_reference), logps(2, same_reference)
        rpo, _ = OBJECTIVES["rpo-gibbs"](lp_r, ctx(loss, prior=prior))
        ls, _ = OBJECTIVES["ls-gibbs"](lp_s, ctx(loss, smoothing=1 - eta0))
        rpo.sum().backward()
        ls.sum().backward()
        assert torch.allclose(rpo, ls) == equal
        assert torch.allclose(lp_r[0].grad, lp_s[0].grad) == equal
