"""The forward: summed completion log-probs of chosen and rejected, (2B,) split into two (B,), and the
reference's, as the positional arguments of the math core's losses.

Mirrors ``DPOTrainer._compute_loss`` of TRL 1.16 (:mod:`rpo.training.compat`): DPOTrainer's fused LM head
where TRL runs it as a Triton kernel (CUDA), elsewhere the full logits as CPOTrainer computes them
(``RobustConfig.lm_head``). Reference log-probs come from precomputed columns or TRL's
``compute_ref_log_probs``; reference-free losses get None.
"""

from __future__ import annotations

from accelerate.utils import is_peft_model
from trl.trainer.utils import selective_log_softmax

from rpo.training.collator import ANNOTATOR_ID
from rpo.training.compat import TRL_NON_MODEL_KEYS

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
        per_token = selective_log_softmax(outputs.logits[:, :-1], inputs["input_ids"][:, 1:])
        per_token = per_token.masked_fill(completion_mask[:, 1:] == 0, 0.0)
    chosen_logps, rejected_logps = per_token.sum(dim=1).chunk(2, dim=0)
    chosen_len, rejected_len = completion_mask.sum(dim=1).chunk(2, dim=0)  # TRL's ipo convention
    return (chosen_logps, rejected_logps, chosen_len, rejected_len), model_kwargs, outputs


def reference_logps(trainer, inputs: dict):
    """``(ref_chosen_logps, ref_rejected_logps)`` from precomputed columns, the reference model, or the
    PEFT policy with its adapter disabled (TRL's ``compute_ref_log_probs``)."""
    if "ref_chosen_logps" in inputs:
        return inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
    if trainer.ref_model is None and not is_peft_model(trainer.model):
        raise ValueError(
            "reference log-probs are unavailable: pass ref_model, use PEFT, or a dataset "
            "with ref_chosen_logps / ref_rejected_logps columns"
        )
    trl_inputs = {k: v for k, v in inputs.items() if k != ANNOTATOR_ID}
    return trainer.compute_ref_log_probs(
        trainer.ref_model if trainer.ref_model is not None else trainer.model, trl_inputs
    )


def forward(trainer, model, inputs: dict, *, fused: bool, reference_free: bool):
    """The losses' positional arguments ``(chosen, rejected, chosen_len, rejected_len, ref_chosen,
    ref_rejected)`` (references None when reference-free), the model kwargs and the outputs."""
    logps, model_kwargs, outputs = policy_logps(model, inputs, fused=fused, router_logits=trainer.aux_loss_enabled)
    ref = (None, None) if reference_free else reference_logps(trainer, inputs)
    return (*logps, *ref), model_kwargs, outputs
