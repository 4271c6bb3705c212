"""Bad input at the data layer: the one validator (:func:`rpo.data.schema.validate_preferences`), the
annotator-id mapping and the UltraFeedback loader. Each case names the error it must raise and words the
message must hold (the data set, the row, the column). No training: pure Python, milliseconds each."""

from __future__ import annotations

import json

import pytest

from rpo.data.loaders import load_ultrafeedback, normalize_ultrafeedback
from rpo.data.schema import annotator_ids, validate_preferences


def rows(n=4, **columns):
    """A dict of lists that fits the schema, with ``columns`` replaced."""
    base = {
        "prompt": [f"<bos>w{i}:" for i in range(n)],
        "chosen": [f"W{i}" for i in range(n)],
        "rejected": [f"{i}w" for i in range(n)],
    }
    return {**base, **columns}


def chat(role, content="hi"):
    return [{"role": role, "content": content}]


USER, ASSISTANT = chat("user"), chat("assistant")

# (case id, data, validate_preferences keywords, words the message must hold)
SCHEMA_CASES = [
    ("missing-column", {"chosen": ["a"], "rejected": ["b"]}, {}, ["missing column(s) ['prompt']"]),
    ("zero-rows", rows(0), {}, ["empty (0 rows)"]),
    ("none-cell", rows(prompt=[None, "a", "b", "c"]), {}, ["column 'prompt', row 0"]),
    ("int-cell", rows(chosen=["a", "b", 3, "d"]), {}, ["column 'chosen', row 2", "got int"]),
    ("blank-cell", rows(rejected=["a", "b", "c", "  "]), {}, ["column 'rejected', row 3: empty string"]),
    ("ragged-columns", rows(chosen=["a", "b", "c"]), {}, ["column 'chosen' has 3 rows, expected 4"]),
    (
        "message-without-content",
        {"prompt": [USER], "chosen": [[{"role": "assistant"}]], "rejected": [ASSISTANT]},
        {},
        ["column 'chosen', row 0, message 0", "'role' and 'content'"],
    ),
    (
        "message-role-none",
        {"prompt": [[{"role": None, "content": "hi"}]], "chosen": [ASSISTANT], "rejected": [ASSISTANT]},
        {},
        ["column 'prompt', row 0, message 0", "role None"],
    ),
    (
        "message-role-empty",
        {"prompt": [chat("")], "chosen": [ASSISTANT], "rejected": [ASSISTANT]},
        {},
        ["column 'prompt', row 0, message 0", "role ''"],
    ),
    (
        "completion-by-the-user",
        {"prompt": [USER], "chosen": [USER], "rejected": [ASSISTANT]},
        {},
        ["column 'chosen', row 0", "role 'user'", "'assistant'"],
    ),
    (
        "text-prompt-chat-completions",
        {"prompt": ["<bos>ab:"], "chosen": [ASSISTANT], "rejected": [ASSISTANT]},
        {},
        ["column 'prompt' holds text but column 'chosen' holds chat", "must all be plain text or all chat"],
    ),
    (
        "text-and-chat-in-one-column",
        [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": USER, "chosen": "b", "rejected": "c"}],
        {},
        ["column 'prompt', row 1: mixes plain text and chat"],
    ),
    (
        "non-string-content",
        {"prompt": [[{"role": "user", "content": 5}]], "chosen": [ASSISTANT], "rejected": [ASSISTANT]},
        {},
        ["column 'prompt', row 0, message 0: empty or non-string content"],
    ),
    (
        "all-pairs-identical",
        rows(rejected=[f"W{i}" for i in range(4)]),
        {"need_preference": True},
        ["all 4 pair(s) have identical chosen and rejected", "nothing to train"],
    ),
    (
        "annotator-column-typo",
        rows(annotator=["a", "b", "a", "b"]),
        {"annotator_column": "annotater"},
        ["annotator_column 'annotater' is not a column", "did you mean 'annotator'"],
    ),
    ("explicit-annotator-column-absent", rows(), {"annotator_column": "rater"}, ["annotator_column 'rater'"]),
    (
        "default-annotator-column-beside-a-near-name",
        rows(Annotator=["a", "b", "a", "b"]),
        {},
        ["annotator_column 'annotator' is not a column", "did you mean 'Annotator'"],
    ),
    ("annotator-float", rows(annotator=[0.5] * 4), {}, ["column 'annotator', row 0", "got float"]),
    ("annotator-bool", rows(annotator=[True] * 4), {}, ["column 'annotator', row 0", "got bool"]),
    ("annotator-blank", rows(annotator=["a", " ", "a", "a"]), {}, ["column 'annotator', row 1: empty string"]),
    ("annotator-none", rows(annotator=["a", None, "a", "a"]), {}, ["column 'annotator', row 1"]),
    ("list-of-non-dicts", [{"prompt": "a", "chosen": "b", "rejected": "c"}, ["x"]], {}, ["row 1: expected a dict"]),
    ("data-a-string", "prompt,chosen,rejected", {}, ["unsupported preference data type str"]),
]


@pytest.mark.parametrize("data, kwargs, words", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_validator_names_the_problem(data, kwargs, words):
    with pytest.raises(ValueError) as e:
        validate_preferences(data, name="my dataset", **kwargs)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert "my dataset" in str(e.value)  # the data set is named


def test_hidden_truth_columns_are_no_annotator_candidates():
    validate_preferences(rows(true_annotator=["a"] * 4), name="d")  # K = 1, no error: the trainer never sees it


# (case id, data, annotator_ids keywords, words)
ID_CASES = [
    (
        "num-annotators-with-names",
        rows(annotator=["a", "b", "a", "b"]),
        {"num_annotators": 5},
        ["num_annotators=5 but the column names 2 annotator(s)"],
    ),
    (
        "eval-integer-ids-vs-training-names",
        rows(annotator=[0, 1, 0, 1]),
        {"names": ["alice", "bob"]},
        ["holds integer ids", "['alice', 'bob']"],
    ),
    (
        "eval-integer-ids-vs-virtual-annotator",
        rows(annotator=[0, 0, 0, 0]),
        {"names": ["all"]},
        ["holds integer ids", "['all']"],
    ),
    ("eval-unknown-name", rows(annotator=["a", "zed", "a", "a"]), {"names": ["a"]}, ["['zed'] not in the training"]),
    ("eval-without-column", rows(), {"names": ["a", "b"]}, ["has no 'annotator' column"]),
    ("id-out-of-range", rows(annotator=[0, 3, 0, 1]), {"num_annotators": 2}, ["id 3 at row 1 is out of range"]),
    ("negative-id", rows(annotator=[0, -1, 0, 1]), {}, ["id -1 at row 1"]),
    ("mixed-names-and-ids", [{**r, "annotator": a} for r, a in zip([{}] * 2, ["a", 1])], {}, ["row 0 holds 'a'"]),
]


@pytest.mark.parametrize("data, kwargs, words", [c[1:] for c in ID_CASES], ids=[c[0] for c in ID_CASES])
def test_annotator_mapping_names_the_problem(data, kwargs, words):
    if isinstance(data, list):  # list-of-dicts cases carry only the annotator: give them the text columns
        data = [{"prompt": "p", "chosen": "c", "rejected": "r", **d} for d in data]
    with pytest.raises(ValueError) as e:
        annotator_ids(data, name="eval dataset", **kwargs)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert "eval dataset" in str(e.value)


# ---- the UltraFeedback loader: files in the Hub's layout ----------------------------------------------------
def _uf_row(**over):
    row = {
        "prompt_id": "p0",
        "prompt": "hi",
        "chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}],
    }
    return {**row, **over}


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("train.json", "[{broken", ["train.json:1: not valid JSON"]),
        ("train.json", json.dumps({"rows": []}), ["train.json: expected a JSON list of rows, got dict"]),
        ("train.jsonl", json.dumps(_uf_row()) + "\n[1, 2]\n", ["train.jsonl[train], row 1: expected an object"]),
        ("train.parquet", "not parquet at all", ["train.parquet: not a readable parquet file"]),
        (
            "train.jsonl",
            json.dumps(_uf_row(chosen=[{"content": "x"}, {"role": "assistant", "content": "y"}])),
            ["column 'chosen', row 0, message 0: needs 'role' and 'content'"],
        ),
        (
            "train.jsonl",
            json.dumps(_uf_row(rejected=[{"role": "user", "content": "x"}, {"role": "assistant"}])),
            ["column 'rejected', row 0, message 1"],
        ),
    ],
    ids=["bad-json", "json-not-a-list", "row-not-an-object", "bad-parquet", "message-without-role", "no-content"],
)
def test_loader_errors_name_the_file_and_row(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError) as e:
        load_ultrafeedback("mistral", path=tmp_path / name)
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_normalize_names_a_row_that_is_not_an_object():
    with pytest.raises(ValueError, match=r"uf, row 0: expected an object"):
        normalize_ultrafeedback(["a row as a string"], source="uf")
