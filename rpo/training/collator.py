"""The collator: TRL's preference collator plus the annotator ids (TRL's collator drops unknown keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

#: internal column carrying the integer annotator id through tokenisation and collation
ANNOTATOR_ID = "rpo_annotator_id"


@dataclass
class RobustCollator:
    """Wraps TRL's collator; adds ``rpo_annotator_id`` (B,) long to its batch."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        batch[ANNOTATOR_ID] = torch.tensor([int(ex[ANNOTATOR_ID]) for ex in examples], dtype=torch.long)
        return batch
