"""rpo.data.files: the same preference data from every format the audit reads, and errors that name the file,
the row and the column."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict

from rpo.data.files import read_preferences

ROWS = [
    {"prompt": "<bos>ab:", "chosen": "AB", "rejected": "ba", "annotator": "x"},
    {"prompt": "<bos>cd:", "chosen": "CD", "rejected": "dc", "annotator": "y"},
    {"prompt": "<bos>ef:", "chosen": "fe", "rejected": "EF", "annotator": "x"},
]


def _write(tmp_path, kind: str, rows=ROWS):
    path = tmp_path / f"prefs.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "csv":
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False)
    elif kind == "parquet":
        Dataset.from_list(rows).to_parquet(str(path))
    elif kind == "disk":
        path = tmp_path / "saved"
        Dataset.from_list(rows).save_to_disk(str(path))
    elif kind == "diskdict":
        path = tmp_path / "saved_dict"
        DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    elif kind == "hub_layout":  # a folder of data files, read through datasets.load_dataset (the Hub code path)
        path = tmp_path / "hub"
        (path / "data").mkdir(parents=True)
        Dataset.from_list(rows).to_parquet(str(path / "data" / "train-00000-of-00001.parquet"))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "disk", "diskdict", "hub_layout"])
def test_every_format_gives_the_same_data(tmp_path, kind):
    ds, info = read_preferences(_write(tmp_path, kind))
    assert isinstance(ds, Dataset) and len(ds) == 3
    assert ds["prompt"] == [r["prompt"] for r in ROWS] and ds["rejected"] == [r["rejected"] for r in ROWS]
    assert info["names"] == ["x", "y"] and info["ids"] == [0, 1, 0] and info["annotator_column"] == "annotator"


def test_json_of_columns_and_in_memory_data(tmp_path):
    cols = {k: [r[k] for r in ROWS] for k in ROWS[0]}
    (tmp_path / "c.json").write_text(json.dumps(cols))
    assert read_preferences(tmp_path / "c.json")[1]["ids"] == [0, 1, 0]
    assert read_preferences(cols)[1]["ids"] == [0, 1, 0]
    assert read_preferences(Dataset.from_list(ROWS))[1]["names"] == ["x", "y"]


def test_chat_messages_and_no_annotator_column(tmp_path):
    rows = [
        {
            "prompt": [{"role": "user", "content": "ab"}],
            "chosen": [{"role": "assistant", "content": "AB"}],
            "rejected": [{"role": "assistant", "content": "ba"}],
        }
    ] * 2
    ds, info = read_preferences(_write(tmp_path, "jsonl", rows))
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "AB"}]
    assert info["annotator_column"] is None and info["names"] == ["all"] and info["ids"] == [0, 0]


def test_integer_ids_are_compacted_and_another_column_can_be_named(tmp_path):
    rows = [dict(r, rater=i * 5) for i, r in enumerate(ROWS)]  # ids 0, 5, 10
    ds, info = read_preferences(_write(tmp_path, "jsonl", rows), annotator_column="rater")
    assert info["names"] == ["0", "5", "10"] and info["ids"] == [0, 1, 2]


@pytest.mark.parametrize(
    "kind, rows, column, pattern",
    [
        ("jsonl", [{"prompt": "a", "chosen": "b"}], None, r"prefs.jsonl: missing column\(s\) \['rejected'\]"),
        (
            "jsonl",
            [ROWS[0], dict(ROWS[1], chosen=" ")],
            None,
            r"prefs.jsonl: column 'chosen', row 1: empty string \(line 2 of .*prefs.jsonl\)",
        ),
        ("jsonl", [ROWS[0], dict(ROWS[1], rejected=None)], None, r"column 'rejected', row 1: missing value"),
        ("csv", [ROWS[0], dict(ROWS[1], chosen="")], None, r"prefs.csv: column 'chosen', row 1: empty string"),
        ("csv", [ROWS[0], dict(ROWS[1], annotator="")], None, r"prefs.csv: column 'annotator', row 1: empty string"),
        ("jsonl", ROWS, "rater", r"prefs.jsonl: annotator_column 'rater' is not a column"),
        ("jsonl", [ROWS[0], dict(ROWS[1], annotator=1.5)], None, r"column 'annotator', row 1: expected str or int"),
        ("jsonl", [ROWS[0], dict(ROWS[1], annotator=3)], None, r"column 'annotator' must hold integer ids or str"),
        ("parquet", [ROWS[0], dict(ROWS[1], prompt=None)], None, r"prefs.parquet: column 'prompt', row 1: missing"),
    ],
)
def test_bad_data_names_file_row_and_column(tmp_path, kind, rows, column, pattern):
    path = _write(tmp_path, kind, rows)
    with pytest.raises(ValueError, match=pattern):
        read_preferences(path, annotator_column=column)


def test_unreadable_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_preferences(tmp_path / "absent.jsonl")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unknown file type '.txt'"):
        read_preferences(tmp_path / "p.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_preferences(tmp_path / "bad.jsonl")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        read_preferences(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"no split 'test'"):
        read_preferences(_write(tmp_path, "diskdict"), split="test")
