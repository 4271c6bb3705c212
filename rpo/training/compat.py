"""Every TRL workaround in one place, with the version whose internals they mirror.

RobustTrainer subclasses :class:`trl.DPOTrainer`, whose ``_compute_loss`` does forward, reference
log-probs and one loss in a single method with no per-example hook (shared/notes/stack.md). Overriding it
means mirroring some internals; those lines are listed here and checked by
``tests/training/test_compat.py``, which fails loudly when TRL moves.
"""

from __future__ import annotations

import contextlib
import logging

from accelerate.utils import is_peft_model
from trl.kernels.chunked_logprob import _use_triton
from trl.trainer.utils import add_fused_lm_head

logger = logging.getLogger(__name__)

#: the TRL release whose internals rpo.training.forward mirrors
TESTED_TRL_VERSION = "1.16.0"
#: keys of DPOTrainer's batches that are not model inputs (DPOTrainer._compute_loss's _non_model_keys)
TRL_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})


def check_trl_version() -> None:
    import trl

    if trl.__version__ != TESTED_TRL_VERSION:
        logger.warning("RobustTrainer mirrors TRL %s internals; found TRL %s", TESTED_TRL_VERSION, trl.__version__)


@contextlib.contextmanager
def no_reference_built(args, reference_free: bool):
    """During ``DPOTrainer.__init__``: DPOTrainer builds (or loads from the Hub) a reference model unless
    ``precompute_ref_log_probs`` is set, so a reference-free loss (SimPO, CPO) sets it for the duration and
    restores the user's value afterwards; :func:`skip_precompute` then makes the precompute a no-op."""
    user_value = args.precompute_ref_log_probs
    if reference_free:
        args.precompute_ref_log_probs = True
    try:
        yield
    finally:
        args.precompute_ref_log_probs = user_value


def skip_precompute(reference_free: bool) -> bool:
    """Whether ``DPOTrainer._precompute_ref_logps`` must be skipped (see :func:`no_reference_built`)."""
    return reference_free


def logps_only_head(model) -> None:
    """DPOTrainer's fused head also computes entropy, mean logits and top-1 hits for its metrics; this
    trainer logs none of them, so the head is re-patched to compute the log-probs only."""
    add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model)


def fused_head_is_fast(device) -> bool:
    """Whether TRL runs its fused LM head as a Triton kernel on ``device`` (CUDA, XPU): TRL's own dispatch."""
    return _use_triton(device)
