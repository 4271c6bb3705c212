"""Hölder-DPO through RobustTrainer on the toy Llama: ``holder_gamma`` reaches the loss, the config refuses a
bad gamma, and it trains (test_trainer.py's toy setup)."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")

import test_trainer  # noqa: E402  (its toy setup: make, batch_loss, the tokenizer fixture)

from rpo.training import RobustConfig  # noqa: E402

CPU, batch_loss, make = test_trainer.CPU, test_trainer.batch_loss, test_trainer.make
tok = test_trainer.tok  # the module-scoped fixture, registered here too
HOLDER = dict(robust=False, baseline="holder")


@pytest.mark.parametrize("gamma, expected", [(2.0, -0.5), (1.0, -0.75), (0.5, 0.5 * 0.5**1.5 - 1.5 * 0.5**0.5)])
def test_policy_equal_to_reference_gives_the_loss_at_one_half(tok, pairs, tmp_path, gamma, expected):
    """Policy = reference (both seed 0): h = 0, p = 1/2, so every pair's loss is
    gamma / 2^(1+gamma) - (1+gamma) / 2^gamma, whatever the batch."""
    trainer = make(tok, pairs(8), tmp_path, ref_seed=0, holder_gamma=gamma, **HOLDER)
    assert trainer.method.key == "holder-dpo" and trainer.method.label == "Holder-DPO"
    assert batch_loss(trainer) == pytest.approx(expected, rel=1e-6)


def test_holder_dpo_trains_two_steps(tok, pairs, tmp_path):
    trainer = make(tok, pairs(16), tmp_path, max_steps=2, **HOLDER)
    assert trainer.args.holder_gamma == 2.0  # the paper's default
    before = batch_loss(trainer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and "w/mean" not in trainer.state.log_history[0]  # no E-step, no weights
    assert batch_loss(trainer) < before


@pytest.mark.parametrize(
    "bad, word",
    [
        (dict(holder_gamma=0.0), "holder_gamma must be > 0"),
        (dict(holder_gamma=-1.0), "holder_gamma must be > 0"),
        (dict(holder_gamma=float("nan")), "holder_gamma must be a finite number"),
        (dict(holder_gamma="2"), "holder_gamma must be a finite number"),
        (dict(robust=True), "needs robust=False"),
    ],
)
def test_config_refuses_bad_holder_settings(tmp_path, bad, word):
    with pytest.raises(ValueError, match=word):
        RobustConfig(output_dir=str(tmp_path), **{**CPU, **HOLDER, **bad})
