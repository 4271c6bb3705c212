"""rpo.training.forward: the logits path's per-token log-probs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from trl.trainer.utils import selective_log_softmax  # noqa: E402

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
