"""Every documented ValueError of the math core, with a message that names the problem."""

import math

import pytest
import torch

from rpo import e_step, em_operator, ema_update, full_update, init_eta, pair_losses, preference_log_probs, rpo_loss

B = 4
ones = torch.ones(B)
logp = -torch.ones(B)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown preference loss 'kto'"):
        pair_losses("kto", logp, logp, ones, ones, beta=0.1)


def test_reference_required_for_dpo_and_ipo_only():
    for name in ("dpo", "ipo"):
        with pytest.raises(ValueError, match="needs ref_chosen_logps"):
            pair_losses(name, logp, logp, ones, ones, beta=0.1)
    for name in ("simpo", "cpo"):
        pair_losses(name, logp, logp, ones, ones, beta=0.1)


@pytest.mark.parametrize("eta0", [0.49, 1.0, 1.2, -0.1])
def test_eta0_range(eta0):
    with pytest.raises(ValueError, match=r"eta0 must be in \[0.5, 1\)"):
        init_eta(2, eta0)


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.01])
def test_alpha_range(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        ema_update(torch.full((2,), 0.9), torch.ones(2), torch.tensor([0, 1]), alpha)


def test_annotator_ids_out_of_range_or_not_integer():
    with pytest.raises(ValueError, match=r"annotator ids must lie in \[0, 2\)"):
        ema_update(torch.full((2,), 0.9), torch.ones(2), torch.tensor([0, 2]), 0.1)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        full_update(torch.ones(2), torch.tensor([-1, 0]), 2)
    with pytest.raises(ValueError, match="must be integers"):
        ema_update(torch.full((2,), 0.9), torch.ones(2), torch.tensor([0.0, 1.0]), 0.1)


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched shapes"):
        pair_losses("simpo", logp, logp[:3], ones, ones, beta=0.1)
    with pytest.raises(ValueError, match="mismatched shapes"):
        e_step(logp, logp, torch.full((3,), 0.9))
    with pytest.raises(ValueError, match="mismatched shapes"):
        rpo_loss(logp, logp, torch.ones(2))
    with pytest.raises(ValueError, match="mismatched shapes"):
        ema_update(torch.full((2,), 0.9), torch.ones(3), torch.tensor([0, 1]), 0.1)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        pair_losses("simpo", logp.reshape(2, 2), logp.reshape(2, 2), ones.reshape(2, 2), ones.reshape(2, 2), beta=0.1)


def test_nan_inputs_are_named():
    bad = logp.clone()
    bad[1] = math.nan
    with pytest.raises(ValueError, match="rejected_logps contains NaN"):
        pair_losses("cpo", logp, bad, ones, ones, beta=0.1)
    with pytest.raises(ValueError, match="loss_lw contains NaN"):
        preference_log_probs(logp, bad)
    with pytest.raises(ValueError, match="eta contains NaN"):
        e_step(logp, logp, bad)
    with pytest.raises(ValueError, match="w contains NaN"):
        rpo_loss(logp, logp, bad)
    with pytest.raises(ValueError, match="w contains NaN"):
        ema_update(torch.full((2,), 0.9), torch.tensor([0.5, math.nan]), torch.tensor([0, 1]), 0.1)
    with pytest.raises(ValueError, match="p_star contains NaN"):
        em_operator(torch.tensor([0.5, math.nan]), 0.5)


def test_other_bad_values():
    with pytest.raises(ValueError, match="objective must be one of"):
        rpo_loss(logp, logp, ones, objective="mixture")
    with pytest.raises(ValueError, match="lengths must be positive"):
        pair_losses("simpo", logp, logp, torch.zeros(B), ones, beta=0.1)
    with pytest.raises(ValueError, match="beta must be > 0"):
        pair_losses("simpo", logp, logp, ones, ones, beta=0.0)
    with pytest.raises(ValueError, match="cpo_nll must be one of"):
        pair_losses("cpo", logp, logp, ones, ones, beta=0.1, cpo_nll="median")
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        e_step(logp, logp, torch.full((B,), 1.5))
    with pytest.raises(ValueError, match=r"p_star must lie in \[0, 1\]"):
        em_operator(torch.tensor([1.5]), 0.5)
