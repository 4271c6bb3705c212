"""The MultiPref loader on a local fixture in the dataset's own layout (tests/fixtures/multipref)."""

import json
from pathlib import Path

import pytest

from rpo.data.multipref import load_multipref, normalize_multipref

FIX = Path(__file__).parent.parent / "fixtures" / "multipref"


def rows():
    return [json.loads(line) for line in (FIX / "train.jsonl").read_text().splitlines()]


def test_one_pair_per_non_tie_annotation_with_its_annotator():
    ds = load_multipref(path=FIX)
    assert len(ds) == 23  # 6 comparisons x 4 annotations, one tie skipped
    assert sorted(set(ds["annotator"])) == ["ex01", "ex02", "nw01", "nw02", "nw03"]
    first = ds[0]
    assert first["prompt"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert first["chosen"] == [{"role": "assistant", "content": "Paris is the capital of France."}]
    assert (first["comparison_id"], first["worker"], first["strength"]) == ("c0000", "normal", "clearly")
    # c0004: nw03 prefers B (the dissent), the other three A
    c4 = [r for r in ds if r["comparison_id"] == "c0004"]
    by = {r["annotator"]: r["chosen"][0]["content"] for r in c4}
    assert by == {"nw02": "Gracias.", "nw03": "Por favor.", "ex01": "Gracias.", "ex02": "Gracias."}
    assert "nw02" not in {r["annotator"] for r in ds if r["comparison_id"] == "c0003"}  # the tie


def test_counts_workers_aspect_and_text():
    pairs, counts = normalize_multipref(rows(), workers=("expert",), as_text=True)
    assert counts == {"comparisons": 6, "annotations": 12, "ties_skipped": 0, "pairs": 12, "annotators": 2}
    assert isinstance(pairs[0]["prompt"], str) and pairs[0]["chosen"] == "Paris is the capital of France."
    with pytest.raises(ValueError, match="no annotation with a preference"):
        normalize_multipref(rows(), aspect="harmless")  # every harmless_pref of the fixture is a tie


def test_hub_parquet_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows()), tmp_path / "data" / "train-00000-of-00001.parquet")
    ds = load_multipref(path=tmp_path, limit=2)
    assert len(ds) == 8 and set(ds["comparison_id"]) == {"c0000", "c0001"}


@pytest.mark.parametrize(
    "edit, word",
    [
        (
            lambda r: r[0]["normal_worker_annotations"][0].update(overall_pref="A-is-better"),
            r"row 0, normal.*\[0\].*A-is-better",
        ),
        (lambda r: r[1]["expert_worker_annotations"][1].update(evaluator=""), r"row 1, expert.*\[1\].*evaluator"),
        (lambda r: r[2].pop("completion_b"), r"row 2: missing column.*completion_b"),
        (lambda r: r[3].update(text=" "), r"row 3, column 'text'"),
        (lambda r: r[4].update(normal_worker_annotations="A"), r"row 4.*list of annotation"),
    ],
)
def test_bad_rows_name_row_and_field(edit, word):
    rs = rows()
    edit(rs)
    with pytest.raises(ValueError, match=word):
        normalize_multipref(rs, source="fixture")


def test_bad_options():
    with pytest.raises(ValueError, match="workers"):
        normalize_multipref(rows(), workers=("crowd",))
    with pytest.raises(ValueError, match="aspect"):
        normalize_multipref(rows(), aspect="funny")
