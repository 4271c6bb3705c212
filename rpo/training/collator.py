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
    start = [len(ex["prompt_ids"]) for _ in sides for ex in examples]  # where each completion begins
    if base.max_length is not None:
        if base.truncation_mode == "keep_start":
            ids = [s[: base.max_length] for s in ids]
        elif base.truncation_mode == "keep_end":
            cut = [max(len(s) - base.max_length, 0) for s in ids]
            ids, start = [s[c:] for s, c in zip(ids, cut)], [p - c for p, c in zip(start, cut)]
        else:
            return None  # TRL's collator raises its own error
    if not all(ids):
        return None  # an empty row: TRL's torch.tensor([]) is float, leave that to it
    width = max(map(len, ids))
    if base.pad_to_multiple_of and width % base.pad_to_multiple_of:
        width += base.pad_to_multiple_of - width % base.pad_to_multiple_of
    # the masks from the lengths: one python-to-tensor conversion per batch instead of three (a third of the time)
    pos = torch.arange(width)
    inside = pos < torch.tensor([len(s) for s in ids])[:, None]
    return {
        "input_ids": torch.tensor([s + [base.pad_token_id] * (width - len(s)) for s in ids], dtype=torch.long),
        "attention_mask": inside.long(),
        "completion_mask": (inside & (pos >= torch.tensor(start)[:, None])).long(),
    }
