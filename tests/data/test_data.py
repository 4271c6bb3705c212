"""Schema validation, noise models, hidden-truth columns and the UltraFeedback loaders."""

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from rpo import data as D
from rpo.data.loaders import _read_local as read_local

FIX = Path(__file__).parent.parent / "fixtures" / "ultrafeedback"


def clean_pairs(n, seed=0):
    """n synthetic clean pairs with margins spread over (0, 1]."""
    rng = np.random.default_rng(seed)
    margins = rng.choice([0.1, 0.2, 0.25, 0.5, 0.75, 1.0], size=n)
    return [
        {"prompt": f"p{i}", "chosen": f"good{i}", "rejected": f"bad{i}", "true_margin": float(m)}
        for i, m in enumerate(margins)
    ]


def within(k, n, p, sigmas=4.0):
    return abs(k / n - p) <= sigmas * np.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


# ----------------------------------------------------------------------------- validation


def test_valid_text_and_chat_pass():
    D.validate_preferences({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"], "annotator": ["x"]})
    chat = [{"role": "assistant", "content": "b"}]
    D.validate_preferences(
        [{"prompt": [{"role": "user", "content": "a"}], "chosen": chat, "rejected": chat, "annotator": 3}]
    )
    D.validate_preferences(Dataset.from_dict({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]}))


@pytest.mark.parametrize("fmt", ["numpy", "torch", "pandas", "arrow"])
def test_formatted_datasets_validate_as_their_rows(fmt):
    """A datasets set given a format is validated on its python rows (numpy strings, tensors or Arrow arrays
    were refused as 'not text'); a bad cell is still named by row and column."""
    from rpo.data.schema import annotator_ids

    ds = Dataset.from_dict(
        {"prompt": ["a", "q"], "chosen": ["b", "x"], "rejected": ["c", "y"], "annotator": ["u", "v"]}
    )
    assert D.validate_preferences(ds.with_format(fmt)) == D.validate_preferences(ds)
    assert annotator_ids(ds.with_format(fmt)) == annotator_ids(ds)
    with pytest.raises(ValueError, match=r"column 'chosen', row 1"):
        D.validate_preferences(
            ds.map(lambda r, i: {"chosen": "" if i else r["chosen"]}, with_indices=True).with_format(fmt)
        )


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ({"prompt": ["a"], "chosen": ["b"]}, r"missing column\(s\) \['rejected'\]"),
        ({"prompt": ["a", "q"], "chosen": ["b", 5], "rejected": ["c", "d"]}, r"column 'chosen', row 1: expected str"),
        (
            {"prompt": ["a", "  "], "chosen": ["b", "c"], "rejected": ["c", "d"]},
            r"column 'prompt', row 1: empty string",
        ),
        ({"prompt": ["a"], "chosen": [[]], "rejected": ["c"]}, r"column 'chosen', row 0: empty message list"),
        (
            {"prompt": ["a"], "chosen": [[{"role": "assistant"}]], "rejected": ["c"]},
            r"column 'chosen', row 0, message 0: expected a dict with 'role' and 'content'",
        ),
        (
            {"prompt": ["a"], "chosen": ["b"], "rejected": [[{"role": "assistant", "content": ""}]]},
            r"column 'rejected', row 0, message 0: empty",
        ),
        (
            {"prompt": ["a", "b"], "chosen": ["b", [{"role": "assistant", "content": "x"}]], "rejected": ["c", "d"]},
            r"column 'chosen', row 1: mixes plain text and chat",
        ),
        ({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"], "annotator": [None]}, r"column 'annotator', row 0"),
        ({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"], "annotator": [""]}, r"column 'annotator', row 0: empty"),
        ({"prompt": ["a", "b"], "chosen": ["b"], "rejected": ["c", "d"]}, r"column 'chosen' has 1 rows, expected 2"),
        ({"prompt": [], "chosen": [], "rejected": []}, r"empty \(0 rows\)"),
        ([], r"empty \(0 rows\)"),
        (["not a dict"], r"row 0: expected a dict"),
        ("a string", r"unsupported preference data type"),
    ],
)
def test_bad_input_errors_name_column_and_row(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        D.validate_preferences(bad)


# ----------------------------------------------------------------------------- noise models


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.45])
def test_symmetric_flip_rate(rate):
    ds = D.single_annotator(clean_pairs(8000), rate, seed=1)
    k = sum(ds["is_flipped"])
    assert within(k, len(ds), rate)
    assert ds["true_eta"][0] == pytest.approx(1 - k / len(ds))


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_bradley_terry_rate_and_instance_dependence(rate):
    pairs = clean_pairs(8000, seed=2)
    ds = D.single_annotator(pairs, rate, kind="bt", seed=3)
    probs = np.array(ds["true_flip_prob"])
    assert probs.mean() == pytest.approx(rate, abs=1e-6)  # tau solved for the set rate
    flips, margins = np.array(ds["is_flipped"]), np.array(ds["true_margin"])
    assert within(flips.sum(), len(flips), rate)
    small, large = flips[margins <= 0.2].mean(), flips[margins >= 0.75].mean()
    assert small > large + 0.1  # close calls are flipped far more often
    expected = 1 / (1 + np.exp(margins / D.bt_tau_for_rate(margins, rate)))
    np.testing.assert_allclose(probs, expected, rtol=1e-9)


def test_bradley_terry_needs_margins_and_valid_rate():
    with pytest.raises(ValueError, match="true_margin"):
        D.single_annotator([{"prompt": "p", "chosen": "a", "rejected": "b"}], 0.2, kind="bt")
    with pytest.raises(ValueError, match="rate must be in"):
        D.Annotator("x", 0.7)
    with pytest.raises(ValueError, match="kind must be"):
        D.Annotator("x", 0.1, kind="uniform")


def test_hidden_truth_columns_and_public_view():
    ds = D.single_annotator(clean_pairs(500), 0.3, seed=4)
    for row in ds:
        if row["is_flipped"]:
            assert (row["chosen"], row["rejected"]) == (row["true_rejected"], row["true_chosen"])
        else:
            assert (row["chosen"], row["rejected"]) == (row["true_chosen"], row["true_rejected"])
        assert row["true_chosen"].startswith("good")
    pub = D.public_view(ds)
    assert set(pub.column_names) == {"prompt", "chosen", "rejected", "annotator"}
    D.validate_preferences(pub)


def test_two_annotators_layout():
    pairs = clean_pairs(3000)
    ds = D.two_annotators(pairs, 0.4, seed=5)
    assert len(ds) == 2 * len(pairs)
    eta = D.true_reliability(ds)
    assert eta["a1"] == 1.0
    assert within(round((1 - eta["a2"]) * len(pairs)), len(pairs), 0.4)
    a2 = ds.filter(lambda r: r["annotator"] == "a2")
    assert np.allclose(a2["true_eta"], eta["a2"])
    assert sorted(a2["true_chosen"]) == sorted(p["chosen"] for p in pairs)  # a full copy


def test_many_annotators_split_layout():
    pairs = clean_pairs(3000)
    anns = [D.Annotator("a", 0.0), D.Annotator("b", 0.2), D.Annotator("c", 0.3, kind="bt")]
    ds = D.annotate(pairs, anns, layout="split", seed=6)
    assert len(ds) == len(pairs) and sorted(ds["prompt"]) == sorted(p["prompt"] for p in pairs)
    eta = D.true_reliability(ds)
    assert eta["a"] == 1.0 and within(1000 * (1 - eta["b"]), 1000, 0.2) and within(1000 * (1 - eta["c"]), 1000, 0.3)
    with pytest.raises(ValueError, match="duplicate"):
        D.annotate(pairs, [D.Annotator("a"), D.Annotator("a")])
    with pytest.raises(ValueError, match="layout"):
        D.annotate(pairs, anns, layout="mix")


def test_apply_layout():
    pairs = clean_pairs(600)
    assert len(D.apply_layout(pairs, "single", 0.2)) == 600
    two = D.apply_layout(pairs, "two", 0.3, seed=1)
    assert len(two) == 1200 and D.true_reliability(two)["a1"] == 1.0
    many = D.apply_layout(pairs, "many", rates=[0.0, 0.1, 0.2], seed=2)
    assert len(many) == 600 and set(many["annotator"]) == {"a1", "a2", "a3"}
    assert len(D.apply_layout(pairs, "many-copy", rates=[0.0, 0.1], seed=2)) == 1200
    with pytest.raises(ValueError, match="needs rates"):
        D.apply_layout(pairs, "many")
    with pytest.raises(ValueError, match="unknown layout"):
        D.apply_layout(pairs, "three")


def test_noise_is_seeded():
    pairs = clean_pairs(400)
    a = D.single_annotator(pairs, 0.3, seed=7)["is_flipped"]
    assert a == D.single_annotator(pairs, 0.3, seed=7)["is_flipped"]
    assert a != D.single_annotator(pairs, 0.3, seed=8)["is_flipped"]


def test_renoising_starts_from_truth():
    noisy = D.single_annotator(clean_pairs(300), 0.4, seed=1)
    again = D.single_annotator(noisy, 0.0, seed=2)  # a clean annotator on noisy data restores the truth
    assert again["chosen"] == noisy["true_chosen"] and not any(again["is_flipped"])


# ----------------------------------------------------------------------------- loaders


@pytest.mark.parametrize(
    "name, folder",
    [
        ("mistral", "mistral-instruct-ultrafeedback"),
        ("llama3", "llama3-ultrafeedback-armorm"),
        ("llama3", "llama3-ultrafeedback-armorm-hub"),
    ],
)
@pytest.mark.parametrize("split, n", [("train", 3), ("test", 2)])
def test_loaders_normalise_fixtures(name, folder, split, n):
    ds = D.load_ultrafeedback(name, split=split, path=FIX / folder)
    assert len(ds) == n
    assert set(ds.column_names) == {"prompt_id", "prompt", "chosen", "rejected"}
    D.validate_preferences(ds)
    row = ds[0]
    assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["chosen"] != row["rejected"]
    text = D.load_ultrafeedback(name, split=split, path=FIX / folder, as_text=True, limit=1)
    assert len(text) == 1 and text[0]["prompt"] == row["prompt"][-1]["content"]
    assert text[0]["chosen"] == row["chosen"][0]["content"]


def test_loader_chosen_is_best_scored():
    rows = read_local(FIX / "mistral-instruct-ultrafeedback", "train")
    for r in rows:
        best = r["all_generated_responses"][int(np.argmax(r["all_rm_scores"]))]
        assert r["chosen"][-1]["content"] == best


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_ultrafeedback("gpt", path=FIX)
    with pytest.raises(FileNotFoundError, match="no dev.jsonl"):
        D.load_ultrafeedback("mistral", split="dev", path=FIX / "mistral-instruct-ultrafeedback")
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "a", "chosen": [], "rejected": []}\n{not json\n')
    with pytest.raises(ValueError, match=r"train.jsonl, line 2: invalid JSON"):
        D.load_ultrafeedback("mistral", path=tmp_path)
    bad.write_text(
        '{"prompt": "a", "chosen": [{"role": "user", "content": "a"}], '
        '"rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    with pytest.raises(ValueError, match=r"column 'chosen', row 0: last message is not from the assistant"):
        D.load_ultrafeedback("mistral", path=tmp_path)
    bad.write_text('{"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}]}\n')
    with pytest.raises(ValueError, match=r"row 0: missing column\(s\) \['rejected'\]"):
        D.load_ultrafeedback("mistral", path=tmp_path)
