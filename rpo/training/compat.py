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
from trl.data_utils import common_prefix_length
from trl.kernels.chunked_logprob import _use_triton
from trl.trainer.utils import add_fused_lm_head

from rpo.data.schema import unformatted
from rpo.training.collator import ANNOTATOR_ID

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
    """DPOTrainer's fused head also computes entropy, mean logits and top-1 hits for its metrics. On the
    logits path the policy's fused head only serves the reference pass (PEFT with its adapter disabled),
    where they would be discarded, so there it is re-patched to compute the log-probs only; on the fused
    path DPOTrainer's head is kept and its extra outputs feed the same metrics as DPOTrainer's."""
    add_fused_lm_head(model.get_base_model() if is_peft_model(model) else model)


def fused_head_is_fast(device) -> bool:
    """Whether TRL runs its fused LM head as a Triton kernel on ``device`` (CUDA, XPU): TRL's own dispatch."""
    return _use_triton(device)


def head_dtype(model):
    """The dtype of the model's LM head weight (float32 when it cannot be read)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return weight.dtype if weight is not None else torch.float32


def use_fused_head(lm_head: str, model, accelerator) -> bool:
    """``RobustConfig.lm_head`` resolved. ``auto``: TRL's fused head wherever the full-logits path would not
    give DPOTrainer's log-probs: where TRL runs it as a Triton kernel, under mixed precision (autocast
    computes the logits in bf16 / fp16, the fused head accumulates in float32) and for a model whose head
    is not float32. A float32 model without autocast on the CPU keeps the logits path (the toy study's)."""
    import torch

    if lm_head != "auto":
        return lm_head == "fused"
    autocast = getattr(accelerator, "mixed_precision", "no") not in (None, "no")
    return fused_head_is_fast(accelerator.device) or autocast or head_dtype(model) != torch.float32


def is_vision_sample(example) -> bool:
    """DPOTrainer's test for image data (``_is_vision_dataset``): it then skips ``_prepare_dataset``."""
    return "image" in example or "images" in example


def with_explicit_prompt(dataset):
    """Implicit-prompt data (chosen / rejected hold the whole conversation, as Anthropic HH) through TRL's
    own prompt extraction (``trl.data_utils.extract_prompt``, what ``DPOTrainer._prepare_dataset`` maps),
    so that the validator sees the explicit prompt DPOTrainer trains on; explicit-prompt data unchanged. A
    formatted set is first read as python rows (:func:`rpo.data.schema.unformatted`)."""
    from trl.data_utils import extract_prompt

    if dataset is None or isinstance(dataset, (list, tuple, str)):
        return dataset
    if isinstance(dataset, dict):
        return {k: with_explicit_prompt(v) for k, v in dataset.items()}
    dataset = unformatted(dataset)
    first = next(iter(dataset), None)
    if first is None or "prompt" in first or not {"chosen", "rejected"} <= set(first):
        return dataset

    def extract(example, i):
        out = extract_prompt(example)
        if not out["prompt"] or (isinstance(out["prompt"], str) and not out["prompt"].strip()):
            raise ValueError(
                f"row {i}: no 'prompt' column, and chosen / rejected share no prefix to take as the implicit "
                "prompt (TRL's extract_prompt); give a prompt column"
            )
        return out

    return dataset.map(extract, with_indices=True)


def is_streamed(dataset) -> bool:
    """Whether ``dataset`` is a ``datasets.IterableDataset`` (streamed: validated and mapped row by row)."""
    from datasets import IterableDataset

    return isinstance(dataset, IterableDataset)


def raw_splits(train_dataset, eval_dataset, validate):
    """The datasets as the trainer receives them, made ready for the validator: implicit-prompt data through
    :func:`with_explicit_prompt`; image data, for which DPOTrainer skips ``_prepare_dataset`` (so the trainer's
    validation and annotator mapping would never run), through ``validate(dataset, name, drop_identical)``
    here, its annotator ids then carried by TRL's vision collator (``_signature_columns``)."""
    train_dataset, eval_dataset = with_explicit_prompt(train_dataset), with_explicit_prompt(eval_dataset)
    first = next(iter(train_dataset), None) if train_dataset is not None else None
    if first is None or not is_vision_sample(first):  # an empty set is named by the validator, not a StopIteration
        return train_dataset, eval_dataset
    train_dataset = validate(train_dataset, "train", True)
    if isinstance(eval_dataset, dict):
        eval_dataset = {k: validate(d, k, True) for k, d in eval_dataset.items()}
    elif eval_dataset is not None:
        eval_dataset = validate(eval_dataset, "eval", True)
    return train_dataset, eval_dataset


def collator_columns(trainer) -> list[str]:
    """The columns DPOTrainer's collator reads (its ``_signature_columns``): the token ids and reference
    log-probs, or on image data the raw conversation and its images, which the vision collator processes."""
    trainer._set_signature_columns_if_needed()
    return list(trainer._signature_columns)


#: a raw set of at most this many rows that is only scored (``log_odds``, ``label_confidences``: the audit's
#: chunks) is tokenised into python rows, not an Arrow table: for a toy model, map's fingerprint hashing and
#: Arrow writes and the loader's reads of them cost about a tenth of a scoring pass (issue 14). A larger set
#: is mapped, so that its token ids are not all held as python lists.
SCORING_ROWS = 4096


def prepared(trainer, dataset, name: str, processing_class=None, args=None, *, scoring: bool = False):
    """A validated raw dataset tokenised as DPOTrainer does (``DPOTrainer._prepare_dataset``); image data
    unchanged, since DPOTrainer skips its preparation too (the vision collator processes it per batch).
    Plain-text, map-style data with an explicit prompt takes :func:`_prepare_text` (the same columns,
    tokenised in batches; ``scoring``: a list of row dicts when the set is small); everything else TRL's own
    row-by-row preparation."""
    from trl import DPOTrainer

    if trainer._is_vision_dataset:
        return dataset
    processing_class, args = processing_class or trainer.processing_class, args or trainer.args  # None in __init__
    fast = _prepare_text(dataset, processing_class, args, name, as_rows=scoring)
    return fast if fast is not None else DPOTrainer._prepare_dataset(trainer, dataset, processing_class, args, name)


_WARNED: set[str] = set()


def _encoder(tokenizer):
    """``texts -> input ids`` as ``tokenizer(text=texts)["input_ids"]``. A fast tokenizer with no padding or
    truncation set is asked directly (its Rust ``encode_batch``, what transformers calls, without building an
    attention mask and a dict per row: about half of the tokenising time on the toy model)."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return lambda texts: tokenizer(text=texts)["input_ids"]
    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which ids do not need
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return lambda texts: [e.ids for e in encode(texts, add_special_tokens=True)]


def _prefix_length(prompt: list[int], full: list[int]) -> int:
    """TRL's ``common_prefix_length``, with the usual case (the prompt's ids begin the full ids) as one list
    comparison instead of a python loop over the tokens."""
    return len(prompt) if full[: len(prompt)] == prompt else common_prefix_length(prompt, full)


def _prepare_text(dataset, tokenizer, args, name: str, *, as_rows: bool = False):
    """TRL 1.16's ``DPOTrainer._prepare_dataset`` for non-conversational text (EOS appended to chosen and
    rejected, ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` split at the common prefix, prompts that fill
    ``max_length`` dropped under ``keep_start``), with the tokenizer called on 1,000 rows at a time: TRL calls
    it three times per row, ~0.3 ms a pair, which dominated a small model's training set-up and scoring
    (issue 14). Same ids as TRL's (tests/training/test_compat.py). None where it does not apply: a stream,
    chat messages, an implicit prompt, a processor, a tokenizer without an EOS token, an empty set.
    ``as_rows``: a set of at most :data:`SCORING_ROWS` rows comes back as a list of the same rows' dicts,
    tokenised in one call without ``Dataset.map``."""
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase
    from trl.data_utils import is_conversational

    eos = getattr(tokenizer, "eos_token", None)
    if not isinstance(dataset, Dataset) or not isinstance(tokenizer, PreTrainedTokenizerBase) or eos is None:
        return None
    if len(dataset) == 0 or "prompt" not in dataset.column_names or is_conversational(dataset[0]):
        return None

    encode = _encoder(tokenizer)

    def tokenize(batch):
        prompts = batch["prompt"]
        out = {k: [t if t.endswith(eos) else t + eos for t in batch[k]] for k in ("chosen", "rejected")}
        prompt_ids = encode(prompts)
        full = {k: encode([p + t for p, t in zip(prompts, out[k])]) for k in out}
        out.update(prompt_ids=[], chosen_ids=[], rejected_ids=[])
        for p, c, r in zip(prompt_ids, full["chosen"], full["rejected"]):
            n = min(_prefix_length(p, c), _prefix_length(p, r))
            if n < len(p) and name not in _WARNED:
                _WARNED.add(name)  # once per dataset name, as TRL's warning_once
                logger.warning(
                    "%s dataset: a tokenised prompt is not a prefix of its prompt + completion; the completion "
                    "starts where they diverge (TRL's rule) and the prompt's end is left out of training",
                    name,
                )
            out["prompt_ids"].append(p[:n])
            out["chosen_ids"].append(c[n:])
            out["rejected_ids"].append(r[n:])
        return out

    drop_full = args.max_length is not None and args.truncation_mode == "keep_start"
    if as_rows and len(dataset) <= SCORING_ROWS:  # the rows map would write: the columns, tokenize's updates
        batch = dataset[:]
        batch.update(tokenize(batch))
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        return [r for r in rows if len(r["prompt_ids"]) < args.max_length] if drop_full else rows
    kw = dict(batched=True, batch_size=1000, num_proc=args.dataset_num_proc)
    dataset = dataset.map(tokenize, desc=f"Tokenizing {name} dataset", **kw)
    if drop_full:
        keep = args.max_length
        dataset = dataset.filter(
            lambda b: [len(p) < keep for p in b["prompt_ids"]],
            desc=f"Dropping fully truncated examples from {name} dataset",
            **kw,
        )
    return dataset


def with_annotator_ids(trainer, dataset, description: str):
    """A raw image set that ``evaluate`` / ``predict`` pass on unprepared (``DPOTrainer.evaluate`` skips
    ``_prepare_dataset`` on image data) through ``trainer._validate``, which maps its annotator ids; a set
    that carries them (validated at init), text data (prepared by ``_prepare_dataset``) unchanged."""
    from datasets import Dataset, IterableDataset

    if not trainer._is_vision_dataset or not isinstance(dataset, (Dataset, IterableDataset)):
        return dataset
    columns = dataset.column_names  # None for a mapped stream: its first row tells
    if columns is None:
        columns = next(iter(dataset), {})
    if ANNOTATOR_ID in columns:
        return dataset
    return trainer._validate(dataset, description.lower(), drop_identical=True)


def annotator_mapping(trainer, name: str) -> dict:
    """The keyword arguments of the annotator-id mapping (:func:`rpo.data.schema.annotator_ids` /
    ``validate_stream``) for one split: the names fixed so far (the training set's), or before the training
    set ``RobustConfig.annotator_names``, whose order a stream with string names cannot be sorted into."""
    cfg = trainer._cfg
    given = cfg.annotator_names
    return dict(
        column=cfg.annotator_column,
        names=trainer.annotator_names or (list(given) if given else None),
        num_annotators=cfg.num_annotators,
        name=f"{name} dataset",
        names_from="RobustConfig.annotator_names" if given else "the training set",
    )
