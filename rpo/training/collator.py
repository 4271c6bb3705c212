"""The collator: TRL's preference collator plus the annotator ids (TRL's collator drops unknown keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

#: internal column carrying the integer annotator id through tokenisation and collation
ANNOTATOR_ID = "rpo_annotator_id"


@dataclass
class RobustCollator:
    """Wraps TRL's collator; adds ``rpo_annotator_id`` (B,) long to its batch. ``default_id``: the id of a
    row without the column (0 when there is one annotator, as for a raw image set that DPOTrainer.evaluate
    passes on unprepared); None makes a missing id an error."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]
    default_id: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        if self.default_id is None and any(ANNOTATOR_ID not in ex for ex in examples):
            raise KeyError(f"a row has no {ANNOTATOR_ID!r} column: it did not go through RobustTrainer's validator")
        ids = [int(ex.get(ANNOTATOR_ID, self.default_id)) for ex in examples]
        batch[ANNOTATOR_ID] = torch.tensor(ids, dtype=torch.long)
        return batch
