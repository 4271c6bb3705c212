"""A learnable preference set with known flips, for the audit's tests, notebook and benchmark.

The rule (that of ``tests/conftest.py``'s ``make_pairs``): the prompt is a short lower-case word, the
truly better response is the word in upper case, the worse one the word reversed in lower case. The tiny
toy Llama of :mod:`rpo.models` learns it in a few dozen steps. Annotators then relabel the pairs through
:func:`rpo.data.noise.annotate` (``layout="split"``: each annotator labels a disjoint share, flipping each
label with its own probability), so the hidden columns ``is_flipped`` and ``true_eta`` hold the truth.
"""

from __future__ import annotations

import random

#: the audit's benchmark set: three annotators of flip rates 0.05 / 0.20 / 0.40 (issue 14)
RATES = (0.05, 0.20, 0.40)


RULES = ("case", "sort", "shift")


def learnable_pairs(n: int, seed: int = 0, bos: str = "<bos>", rule: str = "case") -> list[dict]:
    """``n`` clean pairs (chosen truly better), prompt ``<bos>word:``. ``rule="case"``: chosen ``WORD``,
    rejected ``drow`` (learnt in a few steps); ``"sort"``, a harder preference: chosen the word's letters in
    alphabetical order, rejected the same letters in another order (words of distinct letters)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows = []
    while len(rows) < n:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
        if rule == "case":
            rows.append({"prompt": f"{bos}{word}:", "chosen": word.upper(), "rejected": word[::-1]})
            continue
        if rule == "shift":  # each letter one further in the alphabet, against two further: relational, no shortcut
            shift = lambda w, k: "".join(letters[(letters.index(c) + k) % 26] for c in w)
            rows.append({"prompt": f"{bos}{word}:", "chosen": shift(word, 1), "rejected": shift(word, 2)})
            continue
        word = "".join(rng.sample(letters, len(word)))  # distinct letters: one sorted order
        good = "".join(sorted(word))
        bad = good
        while bad == good:
            bad = "".join(rng.sample(word, len(word)))
        rows.append({"prompt": f"{bos}{word}:", "chosen": good, "rejected": bad})
    return rows


def known_flips(n: int = 1500, rates=RATES, seed: int = 0, rule: str = "case"):
    """A ``datasets.Dataset`` of ``n`` learnable pairs dealt to annotators ``a1, a2, ...`` (one per rate, equal
    disjoint shares, rows in random order), each label flipped with its annotator's rate; hidden truth in
    ``is_flipped`` and ``true_eta`` (each annotator's measured share of correct labels). ``rule``: as
    :func:`learnable_pairs`."""
    from rpo.data.noise import Annotator, annotate

    annotators = [Annotator(f"a{i + 1}", float(r)) for i, r in enumerate(rates)]
    data = annotate(learnable_pairs(n, seed, rule=rule), annotators, layout="split", seed=seed)
    return data.shuffle(seed=seed).flatten_indices()  # annotate groups rows by annotator; real data mixes them
