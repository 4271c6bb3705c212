"""Hölder-DPO (Fujisawa, Adachi, Osborne 2025, Prob. (12)): the per-example density-power score
``gamma p^(1+gamma) - (1+gamma) p^gamma`` of ``p = sigmoid(beta h)``, its registry entry, and the paper's
redescending property (the gradient weight of a confidently contradicted label vanishes, DPO's does not)."""

import math

import pytest
import torch
import torch.nn.functional as F

from rpo.core.losses import holder_dpo_loss
from rpo.core.methods import BASELINES, KNOWN_NOISE, METHODS, from_config, from_trainer_args, trainer_kwargs
from rpo.core.objectives import OBJECTIVES, ObjectiveContext, objective_key

D = torch.tensor([0.0, math.log(3.0), -math.log(3.0)], dtype=torch.float64)  # p = 1/2, 3/4, 1/4


def test_values_by_hand():
    # gamma = 2: 2 p^3 - 3 p^2 ; gamma = 1: p^2 - 2 p
    two = holder_dpo_loss(D, 2.0)
    assert torch.allclose(two, torch.tensor([-0.5, -0.84375, -0.15625], dtype=torch.float64))
    one = holder_dpo_loss(D, 1.0)
    assert torch.allclose(one, torch.tensor([-0.75, 0.5625 - 1.5, 0.0625 - 0.5], dtype=torch.float64))
    assert two.shape == D.shape and two.dtype == D.dtype


def test_batch_mean_is_the_empirical_density_power_score():
    """Appendix D: S = phi(A / B) B with phi(h) = gamma - (1 + gamma) h, A = mean p^gamma and B = mean
    p^(1+gamma) (the empirical measure in place of the integral): the per-example losses' mean."""
    d = torch.linspace(-4, 5, 11, dtype=torch.float64)
    p = torch.sigmoid(d)
    for gamma in (0.5, 2.0, 4.0):
        a, b = (p**gamma).mean(), (p ** (1 + gamma)).mean()
        assert holder_dpo_loss(d, gamma).mean() == pytest.approx(((gamma - (1 + gamma) * a / b) * b).item(), rel=1e-12)


def test_gradient_is_the_redescending_weight():
    """dl/dd = -gamma (1 + gamma) p^gamma (1 - p)^2: zero in the limit d -> -inf (a flipped label the model
    confidently contradicts), where DPO's -(1 - p) tends to -1; and zero again as d -> +inf."""
    d = torch.tensor([-40.0, -8.0, -2.0, 0.0, 1.0, 3.0, 40.0], dtype=torch.float64, requires_grad=True)
    gamma = 2.0
    (grad,) = torch.autograd.grad(holder_dpo_loss(d, gamma).sum(), d)
    p = torch.sigmoid(d.detach())
    assert torch.allclose(grad, -gamma * (1 + gamma) * p**gamma * (1 - p) ** 2, atol=1e-15)
    (dpo_grad,) = torch.autograd.grad(-F.logsigmoid(d).sum(), d)
    assert dpo_grad[0].item() == pytest.approx(-1.0) and abs(grad[0].item()) < 1e-30
    assert abs(grad[1]) < 1e-4 * abs(dpo_grad[1])  # already negligible at d = -8
    weight = grad.abs()
    assert weight[3] > weight[2] > weight[1] > weight[0]  # grows towards the uncertain middle ...
    assert weight[4] > weight[5] > weight[6] and weight[6] < 1e-30  # ... and falls off on the other side


def test_stable_at_extreme_log_odds_and_low_precision():
    d = torch.tensor([-1e4, -100.0, 100.0, 1e4])
    out = holder_dpo_loss(d, 2.0)
    assert torch.isfinite(out).all() and out[0] == 0 and out[-1] == pytest.approx(-1.0)
    half = holder_dpo_loss(D.to(torch.bfloat16), 2.0)
    assert torch.allclose(half.double(), holder_dpo_loss(D, 2.0), atol=2e-2)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True, "2"])
def test_bad_gamma_is_refused(bad):
    with pytest.raises(ValueError, match="holder_gamma"):
        holder_dpo_loss(D, bad)


def test_registry_and_objective_on_dpo_log_probs():
    m = METHODS["holder-dpo"]
    assert (m.loss, m.robust, m.baseline, m.label, m.objective, m.needs_reference) == (
        "dpo",
        False,
        "holder",
        "Holder-DPO",
        "holder",
        True,
    )
    assert from_config({"method": "holder-dpo", "robust": False}) is m
    assert from_trainer_args(**trainer_kwargs(m)) is m
    assert "holder" in BASELINES and "holder" not in KNOWN_NOISE  # it is told no noise rate
    assert objective_key("holder", "weighted") == objective_key("holder") == "holder"
    # log pi/pi_ref differences h = 2 ln 3 and -2 ln 3 at beta 0.5: d = +-ln 3, p = 3/4 and 1/4
    h = 2 * math.log(3.0)
    logps = [
        torch.tensor([-1.0 + h, -2.0], dtype=torch.float64),  # chosen
        torch.tensor([-3.0, -4.0 + h], dtype=torch.float64),  # rejected
        torch.tensor([3.0, 4.0], dtype=torch.float64),
        torch.tensor([5.0, 2.0], dtype=torch.float64),
        torch.tensor([-1.0, -2.0], dtype=torch.float64),  # reference chosen
        torch.tensor([-3.0, -4.0], dtype=torch.float64),  # reference rejected
    ]
    ctx = ObjectiveContext("dpo", {"beta": 0.5, "validate": True}, holder_gamma=2.0)
    loss, w = OBJECTIVES["holder"](logps, ctx)
    assert w is None and torch.allclose(loss, torch.tensor([-0.84375, -0.15625], dtype=torch.float64))
