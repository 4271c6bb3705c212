"""Shared fixtures: a tiny, learnable synthetic preference set for the toy char-level Llama.

The rule the model can learn in a few dozen steps: the chosen response is the prompt's letters in
upper case, the rejected one is the same letters reversed in lower case. ``flip_frac`` of the pairs
have chosen and rejected swapped (label noise, z = 0), deterministically from ``seed``.
"""

from __future__ import annotations

import os
import random

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest


def make_pairs(
    n: int = 16, flip_frac: float = 0.0, seed: int = 0, annotators: list[str] | None = None, bos: str = "<bos>"
) -> dict[str, list]:
    """Columns prompt/chosen/rejected (+ annotator, round-robin over ``annotators``) and ``flipped``
    (bool, the ground truth of which labels are wrong). Exactly ``round(flip_frac * n)`` rows flipped."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    flipped = set(rng.sample(range(n), round(flip_frac * n)))
    rows = {"prompt": [], "chosen": [], "rejected": [], "flipped": []}
    if annotators:
        rows["annotator"] = []
    for i in range(n):
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
        good, bad = word.upper(), word[::-1]
        if i in flipped:
            good, bad = bad, good
        rows["prompt"].append(f"{bos}{word}:")
        rows["chosen"].append(good)
        rows["rejected"].append(bad)
        rows["flipped"].append(i in flipped)
        if annotators:
            rows["annotator"].append(annotators[i % len(annotators)])
    return rows


@pytest.fixture
def pairs():
    """A factory: ``pairs(n, flip_frac=..., seed=..., annotators=...)`` -> datasets.Dataset."""
    from datasets import Dataset

    def build(n: int = 16, **kwargs):
        return Dataset.from_dict(make_pairs(n, **kwargs))

    return build
