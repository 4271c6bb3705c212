"""rpo.training.forward: the logits path's per-token log-probs, and the reference's by the policy's head."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from trl import DPOTrainer  # noqa: E402
from trl.trainer.utils import selective_log_softmax  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import ANNOTATOR_ID, RobustConfig, RobustTrainer  # noqa: E402
from rpo.training.forward import token_logps  # noqa: E402


@pytest.mark.parametrize("budget", [1, 500, 1 << 24])  # one sequence per call, a few, the whole batch
def test_token_logps_equals_trl_bit_for_bit(budget):
    """Chunking the logsumexp over sequences changes nothing, values or gradients: a training on the logits
    path is the same run whichever way it is computed."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 7, 50, generator=g) * 3).requires_grad_()
    targets = torch.randint(0, 50, (6, 7), generator=g)
    ours = token_logps(logits, targets, budget=budget)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    theirs = selective_log_softmax(logits, targets)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), logits)
    assert torch.equal(ours, theirs) and torch.equal(grad_ours, grad_theirs)
    assert torch.allclose(ours, logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1), atol=1e-6)


def test_token_logps_half_precision_is_trl_s():
    logits, targets = torch.randn(2, 3, 10).bfloat16(), torch.randint(0, 10, (2, 3))
    assert torch.equal(token_logps(logits, targets), selective_log_softmax(logits, targets))


@pytest.mark.parametrize("lm_head", ["logits", "fused"])
def test_the_reference_goes_through_the_policy_s_head(tmp_path, pairs, monkeypatch, lm_head):
    """Logits path: the reference's log-probs by the same head as the policy's, TRL's fused values bit for bit
    on the toy vocabulary (one of TRL's tiles), and a policy equal to its reference has margins of exactly 0.
    Fused path: TRL's own reference pass."""
    torch.set_num_threads(1)
    tok = build_toy_tokenizer()
    cpu = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True, seed=0)
    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        ref_model=build_toy_model(0, tokenizer=tok),
        args=RobustConfig(output_dir=str(tmp_path), pref_loss="dpo", lm_head=lm_head, **cpu),
        train_dataset=pairs(16),
        processing_class=tok,
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    trl_calls = []
    real = DPOTrainer.compute_ref_log_probs
    monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", lambda *a: trl_calls.append(1) or real(*a))
    with torch.no_grad():
        ours = trainer.compute_ref_log_probs(trainer.ref_model, batch)
        logps, _, _ = trainer._forward(trainer.model, batch)
    assert len(trl_calls) == (0 if lm_head == "logits" else 2)
    plain = {k: v for k, v in batch.items() if k != ANNOTATOR_ID}
    with torch.no_grad():
        theirs = real(trainer, trainer.ref_model, plain)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    if lm_head == "logits":
        chosen, rejected, _, _, ref_chosen, ref_rejected = logps
        assert torch.equal(chosen, ref_chosen) and torch.equal(rejected, ref_rejected)
