"""The one preference schema and its validator, and the annotator-id mapping the trainer uses.

Canonical schema (what :class:`rpo.training.RobustTrainer` reads): ``prompt``, ``chosen``, ``rejected``,
each a non-empty string or a non-empty list of chat messages ``{"role", "content"}``; optional annotator
column (``annotator`` by default; str names or int ids). Columns that start with ``true_`` or are named
``is_flipped`` hold the *hidden truth*: the trainer never sees them (:func:`public_view` drops them);
metrics and tables read them. Every error names the data set, the column and the row.
"""

from __future__ import annotations

import numpy as np

REQUIRED = ("prompt", "chosen", "rejected")
HIDDEN_PREFIX = "true_"
HIDDEN_COLUMNS = ("is_flipped",)
#: the name of the one virtual annotator of a data set without an annotator column (K = 1, the paper's)
VIRTUAL_ANNOTATOR = "all"


def _columns(data):
    """``(column names, row accessor)`` for a ``datasets.Dataset``, a dict of lists or a list of dicts."""
    if hasattr(data, "column_names") and hasattr(data, "__getitem__"):  # datasets.Dataset
        return list(data.column_names), (lambda c: data[c])
    if isinstance(data, dict):
        return list(data), (lambda c: data[c])
    if isinstance(data, list):
        if not data:
            raise ValueError("preference data is empty (0 rows)")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise ValueError(f"row {i}: expected a dict, got {type(row).__name__}")
        cols = list(dict.fromkeys(k for row in data for k in row))
        return cols, (lambda c: [row.get(c) for row in data])
    raise ValueError(
        f"unsupported preference data type {type(data).__name__}; "
        "expected datasets.Dataset, dict of lists or list of dicts"
    )


def _check_value(value, column: str, row: int) -> str:
    """Validate one prompt/chosen/rejected cell; returns its kind, 'text' or 'chat'."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"column {column!r}, row {row}: empty string")
        return "text"
    if isinstance(value, list):
        if not value:
            raise ValueError(f"column {column!r}, row {row}: empty message list")
        for j, m in enumerate(value):
            if not isinstance(m, dict) or not {"role", "content"} <= set(m):
                raise ValueError(
                    f"column {column!r}, row {row}, message {j}: expected a dict with "
                    f"'role' and 'content', got {m!r:.80}"
                )
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise ValueError(f"column {column!r}, row {row}, message {j}: empty or non-string content")
        return "chat"
    raise ValueError(f"column {column!r}, row {row}: expected str or list of chat messages, got {type(value).__name__}")


def validate_preferences(data, *, name: str = "dataset", annotator_column: str = "annotator") -> None:
    """Raise ``ValueError`` naming the column and row at fault; return None when ``data`` fits the schema.

    Checks: required columns present; each cell a non-empty string or a non-empty list of messages with
    non-empty content; one kind (text or chat) per column; ``annotator``, when present, str or int with
    no missing value; chosen differs from rejected is *not* required (real data has such rows).
    """
    cols, get = _columns(data)
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; found {cols}")
    n = None
    for c in REQUIRED:
        values = get(c)
        n = len(values) if n is None else n
        if len(values) != n:
            raise ValueError(f"{name}: column {c!r} has {len(values)} rows, expected {n}")
        kinds = set()
        for i, v in enumerate(values):
            try:
                kinds.add(_check_value(v, c, i))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            if len(kinds) > 1:
                raise ValueError(f"{name}: column {c!r}, row {i}: mixes plain text and chat messages")
    if n == 0:
        raise ValueError(f"{name}: preference data is empty (0 rows)")
    if annotator_column in cols:
        for i, a in enumerate(get(annotator_column)):
            if isinstance(a, bool) or not isinstance(a, (str, int, np.integer)):
                raise ValueError(
                    f"{name}: column {annotator_column!r}, row {i}: expected str or int, got {type(a).__name__}"
                )
            if isinstance(a, str) and not a.strip():
                raise ValueError(f"{name}: column {annotator_column!r}, row {i}: empty string")


def is_hidden(column: str) -> bool:
    """Whether a column holds hidden truth the trainer must not see."""
    return column.startswith(HIDDEN_PREFIX) or column in HIDDEN_COLUMNS


def public_view(dataset):
    """The dataset without its hidden-truth columns (what a trainer may read)."""
    return dataset.remove_columns([c for c in dataset.column_names if is_hidden(c)])


def identical_rows(data) -> list[int]:
    """Rows whose chosen and rejected are identical: such a pair carries no preference (``L_wl = L_lw``,
    so ``w = eta`` whatever the model)."""
    _, get = _columns(data)
    return [i for i, (c, r) in enumerate(zip(get("chosen"), get("rejected"))) if c == r]


def annotator_ids(
    data,
    *,
    column: str = "annotator",
    names: list[str] | None = None,
    num_annotators: int | None = None,
    name: str = "dataset",
) -> tuple[list[int], list[str]]:
    """``(ids, names)``: an integer id in [0, K) for every row, and the K annotator names.

    ``names=None`` fixes the mapping (do it on the training set): string names map to ids in sorted
    order; integer ids are kept, K = ``num_annotators`` or max id + 1; no ``column``: one virtual
    annotator. Given ``names`` (another split of the same run), rows are mapped onto them and an unknown
    annotator is an error naming the row."""
    cols, get = _columns(data)
    if column not in cols:
        if names is None:
            names = [VIRTUAL_ANNOTATOR]
        elif names != [VIRTUAL_ANNOTATOR]:
            raise ValueError(f"{name} has no {column!r} column, but the training set has annotators")
        return [0] * len(get(REQUIRED[0])), names
    values = list(get(column))
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        if names is None:
            names = sorted(set(values))
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            row = next(i for i, v in enumerate(values) if v in set(unknown))
            raise ValueError(
                f"{name} column {column!r}: annotators {unknown[:5]} not in the training set (first at row {row})"
            )
        return [index[v] for v in values], names
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise ValueError(
            f"{name} column {column!r} must hold integer ids or string names; row {bad[0]} "
            f"holds {values[bad[0]]!r} ({type(values[bad[0]]).__name__})"
        )
    values = [int(v) for v in values]
    if names is None:
        k = num_annotators or (max(values) + 1 if values else 1)
        names = [str(i) for i in range(k)]
    k = len(names)
    bad = [i for i, v in enumerate(values) if not 0 <= v < k]
    if bad:
        raise ValueError(f"{name} column {column!r}: id {values[bad[0]]} at row {bad[0]} is out of range [0, {k})")
    return values, names
