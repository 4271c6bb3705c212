"""Annotator id columns a run cannot use as they are: mixed kinds, and integer ids with gaps (the trainer's
rule: an annotator without a label has an eta that never moves)."""

import pytest

from rpo.data.schema import annotator_ids


def data(ids):
    n = len(ids)
    return {"prompt": ["p"] * n, "chosen": ["a"] * n, "rejected": ["b"] * n, "annotator": list(ids)}


@pytest.mark.parametrize(
    "ids, rows", [(["x", 3], "row 0 holds 'x', row 1 holds 3"), ([2, "y"], "row 1 holds 'y', row 0 holds 2")]
)
def test_mixed_names_and_ids_are_refused(ids, rows):
    with pytest.raises(ValueError, match=f"must hold integer ids or string names, not both: {rows}"):
        annotator_ids(data(ids))


def test_gaps_are_refused_where_the_trainer_asks():
    with pytest.raises(ValueError, match=r"integer ids have gaps, 3 of 0..5 have no row \(first \[2, 3, 4\]\)"):
        annotator_ids(data([0, 1, 5]), allow_gaps=False)
    with pytest.raises(ValueError, match=r"gaps, 1 of 0..2 have no row \(first \[0\]\)"):
        annotator_ids(data([1, 2, 2]), allow_gaps=False)  # 1-based ids
    assert annotator_ids(data([0, 1, 5]), allow_gaps=False, num_annotators=6)[1] == [str(i) for i in range(6)]
    assert annotator_ids(data([0, 1, 5]))[0] == [0, 1, 5]  # other callers (a file reader compacting ids) may
    assert annotator_ids(data([2, 0, 1]), allow_gaps=False) == ([2, 0, 1], ["0", "1", "2"])
