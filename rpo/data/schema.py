"""The one preference schema and its validator, and the annotator-id mapping the trainer uses.

Canonical schema (what :class:`rpo.training.RobustTrainer` reads): ``prompt``, ``chosen``, ``rejected``,
each a non-empty string or a non-empty list of chat messages ``{"role", "content"}``; optional annotator
column (``annotator`` by default; str names or int ids). Columns that start with ``true_`` or are named
``is_flipped`` hold the *hidden truth*: the trainer never sees them (:func:`public_view` drops them);
metrics and tables read them. Every error names the data set, the column and the row.
"""

from __future__ import annotations

import difflib

import numpy as np

REQUIRED = ("prompt", "chosen", "rejected")
COMPLETIONS = ("chosen", "rejected")
HIDDEN_PREFIX = "true_"
HIDDEN_COLUMNS = ("is_flipped",)
#: the name of the one virtual annotator of a data set without an annotator column (K = 1, the paper's)
VIRTUAL_ANNOTATOR = "all"
DEFAULT_ANNOTATOR_COLUMN = "annotator"


def unformatted(dataset):
    """A ``datasets`` set that was given a format (``with_format("numpy" | "torch" | "pandas" | "arrow")``)
    read back as python objects, its visible columns kept: formatted, it hands the validator and the tokenising
    numpy strings, tensors or Arrow arrays, which fail far from the cause (a bad annotator name, a shape error in
    a loss). Its rows are the same; an unformatted set (or anything else) is returned as it is."""
    from datasets import Dataset, IterableDataset

    if isinstance(dataset, Dataset) and dataset.format["type"] is not None:
        return dataset.with_format(None, dataset.format["columns"], dataset.format["output_all_columns"])
    if isinstance(dataset, IterableDataset) and getattr(dataset._formatting, "format_type", None) is not None:
        return dataset.with_format(None)
    return dataset


def _columns(data):
    """``(column names, row accessor)`` for a ``datasets.Dataset``, a dict of lists or a list of dicts."""
    if hasattr(data, "column_names") and hasattr(data, "__getitem__"):  # datasets.Dataset
        data = unformatted(data)
        # a column sliced whole: iterating ``data[c]`` (a datasets Column) formats one row at a time, ~15x slower
        return list(data.column_names), (lambda c: data[c][:])
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


def _is_missing(value) -> bool:
    """None or a float NaN: what JSON nulls, absent keys and empty CSV / parquet cells become."""
    return value is None or (isinstance(value, float) and value != value)


def _is_typed_content(content) -> bool:
    """A message content in TRL's multimodal form: a non-empty list of parts ``{"type": ...}``, at least one
    of them a non-empty text or an image."""
    if not isinstance(content, list) or not content or not all(isinstance(p, dict) and "type" in p for p in content):
        return False
    return any(p["type"] == "image" or (p["type"] == "text" and str(p.get("text") or "").strip()) for p in content)


def _check_value(value, column: str, row: int) -> str:
    """Validate one prompt/chosen/rejected cell; returns its kind, 'text' or 'chat'."""
    if _is_missing(value):
        raise ValueError(f"column {column!r}, row {row}: missing value")
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
            if not isinstance(m["role"], str) or not m["role"].strip():
                raise ValueError(f"column {column!r}, row {row}, message {j}: empty or non-string role {m['role']!r}")
            if _is_typed_content(m["content"]):  # TRL's multimodal form: [{"type": "image"}, {"type": "text", ...}]
                continue
            if m.get("tool_calls") and isinstance(m["content"], (str, type(None))):  # a tool call may have no text
                continue
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise ValueError(f"column {column!r}, row {row}, message {j}: empty or non-string content")
        # a completion is the assistant's turn: a chat template would render another role as a prompt turn
        # and the model would be trained to answer as the user
        if column in COMPLETIONS and value[-1]["role"] != "assistant":
            raise ValueError(
                f"column {column!r}, row {row}: the completion's last message has role {value[-1]['role']!r}; "
                "chosen / rejected must end with the 'assistant' turn"
            )
        return "chat"
    raise ValueError(f"column {column!r}, row {row}: expected str or list of chat messages, got {type(value).__name__}")


def validate_preferences(
    data, *, name: str = "dataset", annotator_column: str = "annotator", need_preference: bool = False
) -> None:
    """Raise ``ValueError`` naming the column and row at fault; return None when ``data`` fits the schema.

    Checks: required columns present; each cell a non-empty string or a non-empty list of messages with
    non-empty role and content, a completion ending with the assistant's turn; one kind (text or chat)
    for all three columns; ``annotator``, when present, str or int with no missing value; an
    ``annotator_column`` that is not a column is an error when it was set explicitly or when a column of
    a near name exists (a typo would otherwise train with one virtual annotator). Chosen differs from
    rejected is *not* required (real data has such rows), but with ``need_preference`` (a set to train
    or evaluate on, whose identical pairs are skipped) at least one pair must differ.
    """
    try:
        cols, get = _columns(data)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; found {cols}")
    n, first_kind = None, None
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
        if kinds and first_kind is None:
            first_kind = (c, *kinds)
        elif kinds and kinds != {first_kind[1]}:
            raise ValueError(
                f"{name}: column {first_kind[0]!r} holds {first_kind[1]} but column {c!r} holds {kinds.pop()} "
                "(row 0); prompt, chosen and rejected must all be plain text or all chat messages"
            )
    if n == 0:
        raise ValueError(f"{name}: preference data is empty (0 rows)")
    if need_preference and len(identical_rows(data)) == n:
        raise ValueError(
            f"{name}: all {n} pair(s) have identical chosen and rejected; such pairs carry no preference and "
            "are skipped, which leaves nothing to train or evaluate on"
        )
    _check_annotator_column_name(cols, annotator_column, name)
    if annotator_column in cols:
        for i, a in enumerate(get(annotator_column)):
            if _is_missing(a):
                raise ValueError(f"{name}: column {annotator_column!r}, row {i}: missing value")
            if isinstance(a, bool) or not isinstance(a, (str, int, np.integer)):
                raise ValueError(
                    f"{name}: column {annotator_column!r}, row {i}: expected str or int, got {type(a).__name__}"
                )
            if isinstance(a, str) and not a.strip():
                raise ValueError(f"{name}: column {annotator_column!r}, row {i}: empty string")


def _check_annotator_column_name(cols: list[str], annotator_column: str, name: str) -> None:
    """A missing annotator column means one virtual annotator (K = 1), but only when nothing suggests the
    user meant another column: an explicitly set name that is absent, or the default name absent beside
    a near one (``Annotator``, ``annotators``, ``annotator_id``), is an error naming both."""
    if annotator_column in cols:
        return
    visible = [c for c in cols if not is_hidden(c)]  # the hidden truth is no candidate
    near = difflib.get_close_matches(annotator_column, visible, n=3, cutoff=0.8)
    near += [c for c in visible if c.lower() == annotator_column.lower() and c not in near]
    if annotator_column != DEFAULT_ANNOTATOR_COLUMN or near:
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(
            f"{name}: annotator_column {annotator_column!r} is not a column (found {cols}){hint}; set "
            "annotator_column to the column of annotator ids, or drop such columns to train with one "
            "virtual annotator"
        )


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
    allow_gaps: bool = True,
    names_from: str = "the training set",
) -> tuple[list[int], list[str]]:
    """``(ids, names)``: an integer id in [0, K) for every row, and the K annotator names.

    ``names=None`` fixes the mapping (do it on the training set): string names map to ids in sorted
    order; integer ids are kept, K = ``num_annotators`` or max id + 1; no ``column``: one virtual
    annotator. Given ``names`` (another split of the same run, or an order fixed up front; ``names_from``
    says which in the errors), rows are mapped onto them and an unknown annotator is an error naming the
    row. Refused: a column mixing string names and integer ids, and, with
    ``allow_gaps=False`` (the trainer's), integer ids with gaps when K is inferred (ids 0, 1, 5 would make
    annotators 2-4 with no label, whose eta never moves from eta0; give ``num_annotators`` to mean that, or
    use names)."""
    cols, get = _columns(data)
    if column not in cols:
        if names is None:
            names = [VIRTUAL_ANNOTATOR]
        elif names != [VIRTUAL_ANNOTATOR]:
            raise ValueError(f"{name} has no {column!r} column, but {names_from} names annotators {names[:5]}")
        return [0] * len(get(REQUIRED[0])), names
    values = list(get(column))
    kinds = {type(v) for v in values}
    if kinds <= {str}:
        if names is None:
            names = sorted(set(values))
            if num_annotators is not None and num_annotators != len(names):
                raise ValueError(
                    f"{name} column {column!r}: num_annotators={num_annotators} but the column names "
                    f"{len(names)} annotator(s) {names[:5]}; num_annotators applies to integer ids only"
                )
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(values) - set(index))
        if unknown:
            row = next(i for i, v in enumerate(values) if v in set(unknown))
            raise ValueError(
                f"{name} column {column!r}: annotators {unknown[:5]} not in {names_from} (first at row {row})"
            )
        return [index[v] for v in values], names
    if str in kinds:
        first_str = next(i for i, v in enumerate(values) if isinstance(v, str))
        ints = (i for i, v in enumerate(values) if isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        first_int = next(ints, None)
        if first_int is not None:
            raise ValueError(
                f"{name} column {column!r} must hold integer ids or string names, not both: row {first_str} "
                f"holds {values[first_str]!r}, row {first_int} holds {values[first_int]!r}"
            )
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise ValueError(
            f"{name} column {column!r} must hold integer ids or string names; row {bad[0]} "
            f"holds {values[bad[0]]!r} ({type(values[bad[0]]).__name__})"
        )
    values = [int(v) for v in values]
    if names is not None and names != [str(i) for i in range(len(names))]:
        # integer ids cannot be matched to names: id 0 need not be the first name of the training set
        raise ValueError(
            f"{name} column {column!r} holds integer ids, but {names_from} named its annotators "
            f"{names[:5]}; use the same names in every split"
        )
    if names is None:
        k = num_annotators or (max(values) + 1 if values else 1)
        names = [str(i) for i in range(k)]
        gaps = sorted(set(range(min(k, max(values, default=-1) + 1))) - set(values))
        if gaps and num_annotators is None and not allow_gaps:
            raise ValueError(
                f"{name} column {column!r}: integer ids have gaps, {len(gaps)} of 0..{k - 1} have no row "
                f"(first {gaps[:5]}): their eta could never move. Renumber the ids 0..K-1, use string "
                "names, or set num_annotators=K to keep annotators without labels"
            )
    k = len(names)
    bad = [i for i, v in enumerate(values) if not 0 <= v < k]
    if bad:
        raise ValueError(f"{name} column {column!r}: id {values[bad[0]]} at row {bad[0]} is out of range [0, {k})")
    return values, names


def validate_row(row: dict, index: int, *, name: str = "dataset", annotator_column: str = "annotator") -> str:
    """The one validator on a single row (a streamed example): the cell checks of
    :func:`validate_preferences` for ``prompt`` / ``chosen`` / ``rejected`` and the annotator cell; returns
    the row's kind ('text' or 'chat'). Errors name the data set, the column and the row."""
    missing = [c for c in REQUIRED if c not in row]
    if missing:
        raise ValueError(f"{name}: row {index}: missing column(s) {missing}; found {list(row)}")
    try:
        kinds = {_check_value(row[c], c, index) for c in REQUIRED}
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if len(kinds) > 1:
        raise ValueError(f"{name}: row {index}: mixes plain text and chat messages across prompt / chosen / rejected")
    a = row.get(annotator_column)
    if annotator_column in row and (isinstance(a, bool) or not isinstance(a, (str, int, np.integer))):
        raise ValueError(f"{name}: column {annotator_column!r}, row {index}: expected str or int, got {a!r:.40}")
    return kinds.pop()


def validate_stream(
    dataset,
    id_column: str,
    drop_identical: bool = True,
    *,
    column: str = "annotator",
    names: list[str] | None = None,
    num_annotators: int | None = None,
    name: str = "dataset",
    names_from: str = "the training set",
):
    """``(dataset, names)`` for a streamed (``datasets.IterableDataset``) set: every row is validated
    (:func:`validate_row`) and given its integer annotator id in ``id_column`` as it streams, and identical
    pairs are filtered out. The annotators must be known before the first row: without an annotator column
    (judged on the first row) one virtual annotator; integer ids need ``num_annotators`` (K cannot be
    inferred without reading the whole stream), or the training set's names; string names need their
    order up front (a stream's names cannot be sorted before it ends): ``names``, from a map-style training
    set or ``RobustConfig.annotator_names`` (``names_from`` says which in the errors)."""
    first = next(iter(dataset), None)
    if first is None:
        raise ValueError(f"{name}: preference data is empty (0 rows)")
    _check_annotator_column_name(list(first), column, name)
    if column not in first:
        if names is not None and names != [VIRTUAL_ANNOTATOR]:
            raise ValueError(f"{name} has no {column!r} column, but {names_from} names annotators {names[:5]}")
        names = [VIRTUAL_ANNOTATOR]
    elif names is None:
        if isinstance(first[column], str):
            raise ValueError(
                f"{name}: a streamed set with string annotator names needs the names before its first row; pass "
                "them in eta's order as RobustConfig(annotator_names=[...]), or map them to integer ids 0..K-1 "
                "and set num_annotators=K, or train on a map-style Dataset"
            )
        if num_annotators is None:
            raise ValueError(
                f"{name}: a streamed set with integer annotator ids needs num_annotators (K cannot be inferred "
                "without reading the whole stream)"
            )
        names = [str(i) for i in range(num_annotators)]
    index = {n: i for i, n in enumerate(names)}
    first_kind = validate_row(first, 0, name=name, annotator_column=column)

    def check(row, i):
        if validate_row(row, i, name=name, annotator_column=column) != first_kind:
            raise ValueError(f"{name}: row {i} is not {first_kind} like row 0; all rows must be of one kind")
        if column not in row:
            return {id_column: 0}
        a = row[column]
        key = a if isinstance(a, str) else str(int(a))
        if key not in index:
            raise ValueError(f"{name} column {column!r}: annotator {a!r} at row {i} is not in {names_from} {names[:5]}")
        return {id_column: index[key]}

    dataset = dataset.map(check, with_indices=True)
    if drop_identical:
        dataset = dataset.filter(lambda row: row["chosen"] != row["rejected"])
    return dataset, names
