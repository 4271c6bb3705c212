"""Which checkpoint a resume can trust.

RobustTrainer writes RPO's state (``rpo_state.json``: eta, annotator names, the step) into a checkpoint
folder *before* transformers saves the model, optimizer and ``trainer_state.json`` there and rotates older
checkpoints out (``save_total_limit``), so a kill at any moment leaves at least one complete checkpoint.
A folder is complete when it holds RPO's state, transformers' ``trainer_state.json`` (the last file
transformers writes) and the model's weights. ``train(resume_from_checkpoint=True)`` resumes from the
newest complete one and warns about the newer ones it passes over.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

STATE_FILE = "rpo_state.json"
TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME
WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def missing_parts(folder) -> list[str]:
    """What a checkpoint folder lacks to be resumed from (empty: complete). DeepSpeed's own layout
    (``global_step*/``) counts as weights."""
    folder = Path(folder)
    missing = [name for name in (STATE_FILE, TRAINER_STATE) if not (folder / name).is_file()]
    has_weights = any((folder / w).is_file() for w in WEIGHTS) or any(folder.glob("global_step*"))
    if not has_weights:
        missing.append("model weights (" + " / ".join(WEIGHTS[:3]) + " ...)")
    return missing


def checkpoints(output_dir) -> list[Path]:
    """The ``checkpoint-<step>`` folders of ``output_dir``, newest (highest step) first."""
    if not os.path.isdir(output_dir):
        return []
    found = [
        (int(m.group(1)), p) for p in Path(output_dir).iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))
    ]
    return [p for _, p in sorted(found, reverse=True)]


def newest_complete(output_dir) -> tuple[Path | None, list[tuple[Path, list[str]]]]:
    """``(the newest complete checkpoint or None, [(newer incomplete folder, what it lacks), ...])``."""
    skipped = []
    for folder in checkpoints(output_dir):
        missing = missing_parts(folder)
        if not missing:
            return folder, skipped
        skipped.append((folder, missing))
    return None, skipped
