"""The collator: TRL's preference collator plus the annotator ids (TRL's collator drops unknown keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

#: internal column carrying the integer annotator id through tokenisation and collation
ANNOTATOR_ID = "rpo_annotator_id"
_TEXT_KEYS = {"prompt_ids", "chosen_ids", "rejected_ids", ANNOTATOR_ID}


@dataclass
class RobustCollator:
    """Wraps TRL's collator; adds ``rpo_annotator_id`` (B,) long to its batch. ``default_id``: the id of a
    row without the column (0 when there is one annotator, as for a raw image set that DPOTrainer.evaluate
    passes on unprepared); None makes a missing id an error."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    default_id: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = text_batch(self.base, examples)
        batch = self.base(examples) if batch is None else batch
        if self.default_id is None and any(ANNOTATOR_ID not in ex for ex in examples):
            raise KeyError(f"a row has no {ANNOTATOR_ID!r} column: it did not go through RobustTrainer's validator")
        ids = [int(ex.get(ANNOTATOR_ID, self.default_id)) for ex in examples]
        batch[ANNOTATOR_ID] = torch.tensor(ids, dtype=torch.long)
        return batch


def text_batch(base, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor] | None:
    """TRL 1.16's ``DataCollatorForPreference`` batch of tokenised text rows, built with one tensor per field
    instead of one per row and field (a tiny model's training and scoring spent a twentieth of their time
    there); the same tensors, value for value and dtype (tests/training/test_collator.py). None where the
    collator is another, or a row carries anything else (precomputed reference log-probs): TRL's own then."""
    if type(base) is not DataCollatorForPreference or base.return_tensors != "pt" or not examples:
        return None
    sides = ("chosen_ids", "rejected_ids")  # all chosen rows first, then all rejected: (2B, T), as TRL's
    lists = ("prompt_ids", *sides)  # Arrow rows give lists; a tensor or a tuple is TRL's to handle
    if any(ex.keys() - _TEXT_KEYS or not all(isinstance(ex.get(k), list) for k in lists) for ex in examples):
        return None
    ids = [ex["prompt_ids"] + ex[k] for k in sides for ex in examples]
    completion = [[0] * len(ex["prompt_ids"]) + [1] * len(ex[k]) for k in sides for ex in examples]
    if base.max_length is not None:
        sl = {"keep_start": slice(None, base.max_length), "keep_end": slice(-base.max_length, None)}.get(
            base.truncation_mode
        )
        if sl is None:
            return None  # TRL's collator raises its own error
        ids, completion = [s[sl] for s in ids], [m[sl] for m in completion]
    if not all(ids):
        return None  # an empty row: TRL's torch.tensor([]) is float, leave that to it
    width = max(map(len, ids))
    if base.pad_to_multiple_of and width % base.pad_to_multiple_of:
        width += base.pad_to_multiple_of - width % base.pad_to_multiple_of
    fill = lambda rows, value: torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)  # noqa: E731
    return {
        "input_ids": fill(ids, base.pad_token_id),
        "attention_mask": fill([[1] * len(s) for s in ids], 0),
        "completion_mask": fill(completion, 0),
    }
