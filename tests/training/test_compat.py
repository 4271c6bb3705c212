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


def _bpe_tokenizer():
    """A byte-level BPE trained here on a few strings, so that tokens merge across the prompt / completion
    boundary (the case TRL's common-prefix rule exists for); the toy tokenizer is per character."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["the answer is 42", "answer: yes", "no answer", "question? answer!"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>", "<s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="<s>", unk_token="<unk>")


@pytest.mark.parametrize("which", ["toy", "bpe"])
@pytest.mark.parametrize("max_length", [None, 6])
def test_text_preparation_in_batches_equals_trl(which, max_length):
    """compat._prepare_text gives DPOTrainer._prepare_dataset's rows, ids and order exactly: EOS added only
    where missing, the completion split where prompt and prompt + completion diverge, fully truncated
    prompts dropped; and it declines what TRL must prepare itself."""
    from types import SimpleNamespace

    from datasets import Dataset

    from rpo.models import load_model
    from rpo.training.compat import _prepare_text

    tok = load_model("toy")[1] if which == "toy" else _bpe_tokenizer()
    eos = tok.eos_token
    rows = {
        "prompt": ["the answer is", "question?", "the answer is 42 and a much longer prompt", "answe", "x"] * 3,
        "chosen": [" 42", " answer!" + eos, "yes", "r", ""] * 3,  # "answe" + "r": BPE merges across the boundary
        "rejected": ["answer", " no", " no answer" + eos, "r: yes", "y"] * 3,
        "rpo_annotator_id": list(range(15)),
    }
    data = Dataset.from_dict(rows)
    args = SimpleNamespace(dataset_num_proc=None, max_length=max_length, truncation_mode="keep_start")
    ours = _prepare_text(data, tok, args, "t")
    theirs = DPOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tok), data, tok, args, "t")
    assert ours.column_names == theirs.column_names
    assert ours.to_list() == theirs.to_list()
    assert _prepare_text(data, tok, args, "t", as_rows=True) == theirs.to_list()  # a small set scored: python rows
    if max_length is not None:
        assert len(ours) < len(data)  # the long prompt is dropped by both
    if which == "bpe":  # the merge case is exercised: the prompt's last token left out of the completion split
        assert len(ours[3]["prompt_ids"]) < len(tok(text="answe")["input_ids"])
    turn = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    chat = Dataset.from_dict(
        {"prompt": [turn("user", "hi")], "chosen": [turn("assistant", "a")], "rejected": [turn("assistant", "b")]}
    )
    assert _prepare_text(chat, tok, args, "t") is None
    assert _prepare_text(data.to_iterable_dataset(), tok, args, "t") is None
    assert _prepare_text(data.remove_columns("prompt"), tok, args, "t") is None
