"""The TRL internals rpo.training mirrors (rpo.training.compat, rpo.training.forward): this fails loudly
when TRL moves."""

from __future__ import annotations

import inspect

import pytest
import torch

pytest.importorskip("trl")

from trl import DPOTrainer  # noqa: E402

from rpo.training.compat import TESTED_TRL_VERSION, TRL_NON_MODEL_KEYS  # noqa: E402


def test_trl_internals_unchanged():
    """Fails loudly when TRL moves: rpo.training.forward mirrors these lines of DPOTrainer."""
    import trl
    from trl.trainer import dpo_trainer

    assert trl.__version__ == TESTED_TRL_VERSION, "RobustTrainer was written against TRL 1.16.0: re-read dpo_trainer.py"
    src = inspect.getsource(DPOTrainer._compute_loss)
    for line in (
        '_non_model_keys = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}',
        'labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)',
        "outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)",
        "per_token_logps = outputs.log_probs[:, -seq_len:]",
        "chosen_logps, rejected_logps = logps.chunk(2, dim=0)",
        "chosen_mask.sum(dim=1).clamp(min=1.0)",
    ):
        assert line in src, f"DPOTrainer._compute_loss changed: {line!r} is gone"
    init = inspect.getsource(DPOTrainer.__init__)
    assert "if is_peft_model(self.model) or (args.precompute_ref_log_probs and not self.is_fsdp_enabled):" in init
    assert "train_dataset = self._precompute_ref_logps(" in init
    assert 'train_dataset = self._prepare_dataset(train_dataset, processing_class, args, "train")' in init
    assert list(inspect.signature(DPOTrainer.compute_ref_log_probs).parameters) == ["self", "model", "inputs"]
    assert list(inspect.signature(DPOTrainer._prepare_dataset).parameters) == [
        "self",
        "dataset",
        "processing_class",
        "args",
        "dataset_name",
    ]
    assert list(inspect.signature(DPOTrainer._precompute_ref_logps).parameters) == [
        "self",
        "dataset",
        "name",
        "batch_size",
    ]
    assert "self._signature_columns = [" in inspect.getsource(DPOTrainer._set_signature_columns_if_needed)
    collate = inspect.getsource(dpo_trainer.DataCollatorForPreference.torch_call)
    assert 'example["prompt_ids"] + example["chosen_ids"]' in collate
    assert 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}' in init
    from trl.kernels.chunked_logprob import _use_triton  # lm_head="auto" follows TRL's own kernel dispatch

    assert not _use_triton(torch.device("cpu")) and '("cuda", "xpu")' in inspect.getsource(_use_triton)
    assert set(TRL_NON_MODEL_KEYS) == {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
    # image data (compat.prepared, compat.with_annotator_ids): DPOTrainer prepares none, evaluate passes it on raw
    from transformers import Trainer

    assert "skip_prepare_dataset = self._is_vision_dataset" in init
    assert "if not self._is_vision_dataset and eval_dataset is not None" in inspect.getsource(DPOTrainer.evaluate)
    assert list(inspect.signature(Trainer._get_dataloader).parameters)[:3] == ["self", "dataset", "description"]
