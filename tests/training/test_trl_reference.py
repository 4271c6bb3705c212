"""Outside reference: TRL 1.16 computes the same losses as ``pair_losses`` on the same log-probs.

TRL's loss code is inline in its trainers, so we run TRL's *own* methods
(``DPOTrainer._compute_loss``, ``CPOTrainer.get_batch_loss_metrics``) unbound, on a stand-in
``self`` and a stand-in model whose outputs are random log-probs / logits we control. Nothing of
TRL's arithmetic is re-implemented here.
"""

import types
from collections import defaultdict

import pytest
import torch

from rpo import pair_losses, rpo_loss

trl = pytest.importorskip("trl")
from trl import DPOTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402

B, T = 6, 12


class Acc:  # what TRL asks of its accelerate.Accelerator here: identity gathers on one process
    device = torch.device("cpu")

    def gather(self, x):
        return x

    gather_for_metrics = gather


def completion_batch(seed):
    """Random prompts/completions: completion_mask marks the tail of each row, and per-token
    log-probs for positions 1..T-1 are negative where the shifted mask is 1, else 0."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(2, 5, (2 * B,), generator=g)
    comp_len = torch.randint(1, T - 5, (2 * B,), generator=g)
    pos = torch.arange(T)
    completion_mask = ((pos >= prompt_len[:, None]) & (pos < (prompt_len + comp_len)[:, None])).long()
    per_token = -torch.rand(2 * B, T - 1, generator=g, dtype=torch.float64) * 3 * completion_mask[:, 1:]
    ref_sum = -torch.rand(2 * B, generator=g, dtype=torch.float64) * 20
    return completion_mask, per_token, ref_sum


def trl_dpo_loss(loss_type, beta, completion_mask, per_token, ref_sum):
    def model(**kwargs):
        n, length = per_token.shape
        return types.SimpleNamespace(
            log_probs=per_token,
            entropy=torch.zeros(n, length),
            mean_logits=torch.zeros(n, length),
            is_top1=torch.zeros(n, length, dtype=torch.bool),
        )

    me = types.SimpleNamespace(
        model=types.SimpleNamespace(training=True),
        accelerator=Acc(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        use_weighting=False,
        _metrics={"train": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    n = completion_mask.shape[0] // 2
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_sum[:n],
        "ref_rejected_logps": ref_sum[n:],
    }
    return DPOTrainer._compute_loss(me, model, inputs, return_outputs=False)


@pytest.mark.parametrize("name,loss_type", [("dpo", "sigmoid"), ("ipo", "ipo")])
@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5])
def test_dpo_and_ipo_match_trl_per_example(name, loss_type, beta):
    completion_mask, per_token, ref_sum = completion_batch(seed=int(beta * 1000))
    logps = per_token.sum(1)
    lengths = completion_mask.sum(1)
    wl, lw = pair_losses(name, logps[:B], logps[B:], lengths[:B], lengths[B:], ref_sum[:B], ref_sum[B:], beta=beta)
    w = torch.ones(B, dtype=torch.float64)
    ours = rpo_loss(wl, lw, w, "weighted")  # w = 1: the weighted objective is the base loss
    for i in range(B):  # TRL reduces with .mean(): feed it one pair at a time to see each example
        rows = [i, B + i]
        theirs = trl_dpo_loss(loss_type, beta, completion_mask[rows], per_token[rows], ref_sum[rows])
        assert ours[i].item() == pytest.approx(theirs.item(), rel=1e-9, abs=1e-9)
    batch = trl_dpo_loss(loss_type, beta, completion_mask, per_token, ref_sum)
    assert ours.mean().item() == pytest.approx(batch.item(), rel=1e-9)
    assert wl.mean().item() == pytest.approx(batch.item(), rel=1e-9)
    # eq. 5 as written (Gibbs) with w = 1 is -log p(y_w >* y_l): DPO's own loss (Appendix B), but for
    # IPO it is -log sigmoid(L_lw - L_wl) = -log sigmoid(2h / beta), a logistic loss, not IPO's square.
    gibbs = rpo_loss(wl, lw, w, "gibbs")
    assert torch.allclose(gibbs, wl, rtol=1e-9) == (name == "dpo")


def trl_cpo_loss(loss_type, beta, cpo_alpha, gamma, logits, labels):
    """TRL's CPOTrainer.get_batch_loss_metrics on a stand-in model returning ``logits``."""
    n = labels.shape[0] // 2
    model = lambda input_ids, attention_mask, use_cache, **kw: types.SimpleNamespace(logits=logits)  # noqa: E731
    me = types.SimpleNamespace(
        accelerator=Acc(),
        is_encoder_decoder=False,
        pad_token_id=0,
        aux_loss_enabled=False,
        cpo_alpha=cpo_alpha,
        loss_type=loss_type,
        beta=beta,
        label_smoothing=0.0,
        simpo_gamma=gamma,
        alpha=0.0,
        concatenated_inputs=CPOTrainer.concatenated_inputs,
        get_batch_logps=CPOTrainer.get_batch_logps,
    )
    me.concatenated_forward = types.MethodType(CPOTrainer.concatenated_forward, me)
    me.cpo_loss = types.MethodType(CPOTrainer.cpo_loss, me)
    ids = torch.zeros(2 * n, T, dtype=torch.long)
    batch = {
        "chosen_input_ids": ids[:n],
        "chosen_attention_mask": torch.ones_like(ids[:n]),
        "chosen_labels": labels[:n],
        "rejected_input_ids": ids[n:],
        "rejected_attention_mask": torch.ones_like(ids[n:]),
        "rejected_labels": labels[n:],
    }
    loss, _ = CPOTrainer.get_batch_loss_metrics(me, model, batch)
    return loss


def cpo_batch(seed, vocab=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2 * B, T, vocab, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, vocab, (2 * B, T), generator=g)
    prompt_len = torch.randint(2, 5, (2 * B, 1), generator=g)
    comp_len = torch.randint(1, T - 5, (2 * B, 1), generator=g)
    pos = torch.arange(T)
    labels = labels.masked_fill((pos < prompt_len) | (pos >= prompt_len + comp_len), -100)
    # Summed completion log-probs, computed here independently of TRL (next-token shift).
    logp = torch.log_softmax(logits[:, :-1], -1)
    tgt = labels[:, 1:]
    mask = tgt != -100
    per_token = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return logits, labels, per_token.sum(1), mask.sum(1)


@pytest.mark.parametrize("beta,gamma", [(2.0, 0.0), (2.5, 1.4), (10.0, 3.0)])
def test_simpo_matches_trl(beta, gamma):
    logits, labels, logps, lengths = cpo_batch(seed=int(beta * 10))
    wl, _ = pair_losses("simpo", logps[:B], logps[B:], lengths[:B], lengths[B:], beta=beta, gamma=gamma)
    for i in range(B):
        rows = [i, B + i]
        theirs = trl_cpo_loss("simpo", beta, 0.0, gamma, logits[rows], labels[rows])
        assert wl[i].item() == pytest.approx(theirs.item(), rel=1e-9)
    assert wl.mean().item() == pytest.approx(trl_cpo_loss("simpo", beta, 0.0, gamma, logits, labels).item(), rel=1e-9)


@pytest.mark.parametrize("beta,cpo_alpha", [(0.1, 1.0), (0.01, 0.5)])
def test_cpo_matches_trl_batch_loss(beta, cpo_alpha):
    # TRL's NLL is a token mean over the whole batch: only the batch loss is comparable.
    logits, labels, logps, lengths = cpo_batch(seed=int(beta * 1000))
    wl, lw = pair_losses("cpo", logps[:B], logps[B:], lengths[:B], lengths[B:], beta=beta, cpo_alpha=cpo_alpha)
    theirs = trl_cpo_loss("sigmoid", beta, cpo_alpha, 0.0, logits, labels)
    assert wl.mean().item() == pytest.approx(theirs.item(), rel=1e-9)
    assert rpo_loss(wl, lw, torch.ones(B, dtype=torch.float64), "weighted").mean().item() == pytest.approx(
        theirs.item(), rel=1e-9
    )
