"""The forward: summed completion log-probs of chosen and rejected, (2B,) split into two (B,), and the
reference's, as the positional arguments of the math core's losses.

Mirrors ``DPOTrainer._compute_loss`` of TRL 1.16 (:mod:`rpo.training.compat`): DPOTrainer's fused LM head
where TRL runs it as a Triton kernel (CUDA), elsewhere the full logits as CPOTrainer computes them
(``RobustConfig.lm_head``). Reference log-probs come from precomputed columns or :func:`reference_pass`
(``RobustTrainer.compute_ref_log_probs``: the policy's head, or TRL's pass where that is fused); reference-free
losses get None.
"""

from __future__ import annotations

import torch
from accelerate.utils import is_peft_model
from trl.trainer.utils import selective_log_softmax

from rpo.training.collator import ANNOTATOR_ID
from rpo.training.compat import TRL_NON_MODEL_KEYS, use_fused_head

NON_MODEL_KEYS = TRL_NON_MODEL_KEYS | {ANNOTATOR_ID}


def model_inputs(inputs: dict) -> dict:
    """The batch's entries the model takes (no masks of TRL's, no annotator ids, no reference columns)."""
    return {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}


def policy_logps(model, inputs: dict, *, fused: bool, router_logits: bool = False):
    """``(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths)``, each (B,), plus the model
    kwargs and outputs. ``fused``: TRL's fused LM head (no (B, T, V) logits); else the full logits."""
    completion_mask = inputs["completion_mask"]
    seq_len = completion_mask.size(1) - 1
    model_kwargs = model_inputs(inputs)
    model_kwargs["use_cache"] = False
    if router_logits:  # MoE: as DPOTrainer, ask for router logits to get outputs.aux_loss
        model_kwargs["output_router_logits"] = True
    if fused:
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        per_token = outputs.log_probs[:, -seq_len:]
    else:  # the model's own head; position t predicts token t + 1
        outputs = model(**model_kwargs)
        per_token = token_logps(outputs.logits[:, :-1], inputs["input_ids"][:, 1:])
        per_token = per_token.masked_fill(completion_mask[:, 1:] == 0, 0.0)
    chosen_logps, rejected_logps = per_token.sum(dim=1).chunk(2, dim=0)
    chosen_len, rejected_len = completion_mask.sum(dim=1).chunk(2, dim=0)  # TRL's ipo convention
    return (chosen_logps, rejected_logps, chosen_len, rejected_len), model_kwargs, outputs


def token_logps(logits: torch.Tensor, targets: torch.Tensor, budget: int = 1 << 24) -> torch.Tensor:
    """``log_softmax(logits)`` gathered at ``targets``, (N, T), as TRL's ``selective_log_softmax`` on float32
    (the target's logit minus a logsumexp per sequence, to bound memory), but over as many sequences per call
    as fit ``budget`` logits: a tiny model's whole batch in one call, not 2B calls, which cost a toy model's
    scoring pass a tenth of its time (issue 14). Same values, bit for bit (tests/training/test_forward.py)."""
    if logits.dtype not in (torch.float32, torch.float64):
        return selective_log_softmax(logits, targets)
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    per_call = max(1, budget // max(1, logits[0].numel()))
    return picked - torch.cat([torch.logsumexp(chunk, dim=-1) for chunk in logits.split(per_call)])


def reference_logps(trainer, inputs: dict):
    """``(ref_chosen_logps, ref_rejected_logps)`` from precomputed columns, the reference model, or the
    PEFT policy with its adapter disabled (``RobustTrainer.compute_ref_log_probs``: :func:`reference_pass`)."""
    if "ref_chosen_logps" in inputs:
        return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
    if trainer.ref_model is None and not is_peft_model(trainer.model):
        raise ValueError(
            "reference log-probs are unavailable: pass ref_model, use PEFT, or a dataset "
            "with ref_chosen_logps / ref_rejected_logps columns"
        )
    return trainer.compute_ref_log_probs(trainer.ref_model if trainer.ref_model is not None else trainer.model, inputs)


def reference_pass(trainer, trl_pass, model, inputs: dict):
    """The reference's ``(chosen_logps, rejected_logps)`` of one batch, by the policy's head: where the policy's
    log-probs come from the full logits (``fused=False``), so do the reference's, instead of TRL's fused head
    (``trl_pass``, ``DPOTrainer.compute_ref_log_probs``). One head for both means that a policy equal to its
    reference has a margin of exactly 0, and a CPU pass skips the fused kernel's tiling: about a tenth of a toy
    model's scoring pass (issue 14). On a vocabulary that fits one of TRL's tiles (the toy model's) the values
    are TRL's bit for bit (tests/training/test_forward.py). TRL's pass stays where the policy is fused,
    for LD-DPO's length weighting, and for a PEFT policy whose disabled adapter is the reference."""
    inputs = {k: v for k, v in inputs.items() if k != ANNOTATOR_ID}  # they never reach ``model.forward``
    peft_reference = trainer.ref_model is None and is_peft_model(trainer.model)
    # TRL precomputes reference log-probs inside DPOTrainer.__init__, before the trainer has set its head
    fused = getattr(trainer, "fused_head", None)
    if fused is None:
        fused = use_fused_head(trainer.args.lm_head, trainer.model, trainer.accelerator)
    if fused or trainer.ld_alpha is not None or peft_reference:
        return trl_pass(model, inputs)
    with torch.no_grad(), trainer.accelerator.autocast():
        chosen, rejected, _, _ = policy_logps(model, inputs, fused=False)[0]
    return chosen, rejected


def forward(trainer, model, inputs: dict, *, fused: bool, reference_free: bool):
    """The losses' positional arguments ``(chosen, rejected, chosen_len, rejected_len, ref_chosen,
    ref_rejected)`` (references None when reference-free), the model kwargs and the outputs."""
    logps, model_kwargs, outputs = policy_logps(model, inputs, fused=fused, router_logits=trainer.aux_loss_enabled)
    ref = (None, None) if reference_free else reference_logps(trainer, inputs)
    return (*logps, *ref), model_kwargs, outputs


def _logits_token_stats(logits, targets):
    """Per-token entropy, mean logit and top-1 hit from full logits (B, T, V), as TRL's fused head computes
    them (``trl.kernels.chunked_logprob``), one row at a time so that no second (B, T, V) tensor is held."""
    entropy, mean_logits, is_top1 = [], [], []
    for row, target in zip(logits, targets):
        row = row.float()
        logp = row.log_softmax(dim=-1)
        entropy.append(-(logp.exp() * logp).sum(dim=-1))
        mean_logits.append(row.mean(dim=-1))
        is_top1.append(row.argmax(dim=-1) == target)
    return torch.stack(entropy), torch.stack(mean_logits), torch.stack(is_top1)


@torch.no_grad()
def token_stats(outputs, inputs: dict, *, fused: bool) -> torch.Tensor:
    """DPOTrainer's token metrics as per-pair sums, (B, 8): entropy and token count over chosen + rejected,
    chosen / rejected mean-logit sums and token counts, chosen top-1 hits, attention tokens of the pair.
    The fused path reads the head's own outputs (DPOTrainer's); the logits path derives them from the
    logits it already has. Summed on the host by :func:`rpo.training.metrics.log_token_stats`."""
    mask = inputs["completion_mask"][:, 1:]
    seq_len = mask.size(1)
    if fused:
        entropy, mean_logits, is_top1 = (
            getattr(outputs, k)[:, -seq_len:] for k in ("entropy", "mean_logits", "is_top1")
        )
    else:
        entropy, mean_logits, is_top1 = _logits_token_stats(outputs.logits[:, :-1], inputs["input_ids"][:, 1:])
    mask_f = mask.to(entropy.dtype)
    ent, tok = (entropy.float() * mask_f).sum(1), mask.sum(1).float()
    logit_sum = (mean_logits.float() * mask_f).sum(1)
    top1 = (is_top1.bool() & mask.bool()).sum(1).float()
    attn = inputs["attention_mask"].sum(1).float()
    (ent_c, ent_r), (tok_c, tok_r) = ent.chunk(2), tok.chunk(2)
    (logit_c, logit_r), (attn_c, attn_r) = logit_sum.chunk(2), attn.chunk(2)
    top1_c = top1.chunk(2)[0]
    return torch.stack([ent_c + ent_r, tok_c + tok_r, logit_c, tok_c, logit_r, tok_r, top1_c, attn_c + attn_r], 1)
