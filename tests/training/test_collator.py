"""rpo.training.collator: the batched text collation gives TRL's DataCollatorForPreference batch exactly."""

from __future__ import annotations

import random

import pytest
import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference

from rpo.training.collator import ANNOTATOR_ID, RobustCollator, text_batch


def rows(n: int, seed: int) -> list[dict]:
    """Random tokenised rows, empty completions included, annotators 0, 1, 2 in turn."""
    rng = random.Random(seed)
    ids = lambda lo: [rng.randrange(3, 500) for _ in range(rng.randint(lo, 12))]  # noqa: E731
    return [{"prompt_ids": ids(1), "chosen_ids": ids(0), "rejected_ids": ids(0), ANNOTATOR_ID: i % 3} for i in range(n)]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_length": 9},
        {"max_length": 9, "truncation_mode": "keep_end"},
        {"pad_to_multiple_of": 8},
        {"max_length": 7, "pad_to_multiple_of": 4},
    ],
)
@pytest.mark.parametrize("seed", range(5))
def test_text_batch_equals_trls_collator(options, seed):
    base = DataCollatorForPreference(pad_token_id=1, **options)
    examples = rows(1 + seed * 7, seed)
    ours, theirs = text_batch(base, examples), base(examples)
    assert ours is not None and ours.keys() == theirs.keys()
    for k in theirs:
        assert ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]), k


def test_robust_collator_adds_the_annotator_ids_on_either_path():
    examples = rows(4, 0)
    batch = RobustCollator(DataCollatorForPreference(pad_token_id=0))(examples)
    assert batch[ANNOTATOR_ID].tolist() == [0, 1, 2, 0]
    with_ref = [dict(r, ref_chosen_logps=-1.0, ref_rejected_logps=-2.0) for r in examples]
    batch = RobustCollator(DataCollatorForPreference(pad_token_id=0))(with_ref)
    assert batch["ref_chosen_logps"].tolist() == [-1.0] * 4 and batch[ANNOTATOR_ID].tolist() == [0, 1, 2, 0]


def test_anything_but_plain_tokenised_text_is_left_to_trl():
    base = DataCollatorForPreference(pad_token_id=0)
    examples = rows(3, 1)
    assert text_batch(base, [dict(r, ref_chosen_logps=0.0) for r in examples]) is None  # precomputed reference
    assert text_batch(lambda ex: ex, examples) is None  # another collator (images)
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):  # ids that are not lists (a tuple): TRL's to handle
        assert text_batch(base, [dict(r, **{key: tuple(r[key])}) for r in examples]) is None, key
    assert (
        text_batch(DataCollatorForPreference(pad_token_id=0, max_length=4, truncation_mode="middle"), examples) is None
    )
    with pytest.raises(ValueError, match="Unsupported truncation mode"):  # TRL's own error, as before
        RobustCollator(DataCollatorForPreference(pad_token_id=0, max_length=4, truncation_mode="middle"))(examples)
