"""Preference data from wherever it lives: a JSONL / JSON / CSV / parquet file, a ``datasets`` folder
(``save_to_disk``), a folder of data files or a Hub id (``datasets.load_dataset``; on a cluster). Read,
then checked by the one validator (:func:`rpo.data.schema.validate_preferences`) with the file as the data
set's name, so every error names the file, the row (0-based, the row index the audit reports) and the
column; a JSON Lines error also names the line.
"""

from __future__ import annotations

import re
from pathlib import Path

from rpo.data.schema import DEFAULT_ANNOTATOR_COLUMN, annotator_ids, validate_preferences
from rpo.io import numbered_jsonl, read_json

FILE_KINDS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _jsonl(path: Path) -> tuple[list[dict], list[int]]:
    rows, lines = [], []
    for lineno, rec in numbered_jsonl(path):
        rows.append(rec)
        lines.append(lineno)
    return rows, lines


def _json(path: Path) -> list[dict] | dict:
    data = read_json(path)
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return data  # columns
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of rows or an object of columns, got {type(data).__name__}")
    return data


def _csv(path: Path) -> dict:
    import pandas as pd

    try:  # every cell as text: an empty cell is "" (the validator names it), ids stay names
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: not a readable CSV file ({e})") from None
    return {c: frame[c].tolist() for c in frame.columns}


def _parquet(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    try:
        return Dataset(pq.read_table(path))
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None


def _folder_or_hub(source: str, split: str):
    import datasets

    path = Path(source)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"{path}: no split {split!r}; splits: {sorted(data)}")
            data = data[split]
        return data
    try:  # a folder of data files (the Hub's layout), or a Hub id on a cluster
        return datasets.load_dataset(source, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        where = "folder" if path.is_dir() else "Hub id (or missing file)"
        raise ValueError(f"{source}: cannot read preference data from this {where}: {e}") from None


def load_preferences(source, *, split: str = "train"):
    """``(data, lines)``: the rows of ``source`` (a list of dicts, a dict of columns or a ``datasets.Dataset``)
    and, for JSON Lines, each row's line number (else None). Not yet validated."""
    if not isinstance(source, (str, Path)):
        raise TypeError(f"preference data source must be a path or Hub id, got {type(source).__name__}")
    path = Path(source)
    if path.is_file():
        kind = FILE_KINDS.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"{path}: unknown file type {path.suffix!r}; expected one of {sorted(FILE_KINDS)}")
        if kind == "jsonl":
            return _jsonl(path)
        return {"json": _json, "csv": _csv, "parquet": _parquet}[kind](path), None
    if not path.exists() and (path.suffix.lower() in FILE_KINDS or str(source).startswith((".", "/"))):
        raise FileNotFoundError(f"{path}: no such file or folder")
    return _folder_or_hub(str(source), split), None


def read_preferences(source, *, annotator_column: str | None = None, split: str = "train"):
    """``(dataset, info)``: the preference data of ``source`` (a path or Hub id, or data already in memory) as
    a ``datasets.Dataset``, validated.

    ``annotator_column=None`` reads the default column ``annotator`` when there is one (else one virtual
    annotator); a name given explicitly must be a column. ``info``: ``source``, ``n``, ``annotator_column``
    (None: one virtual annotator), ``names`` (the annotators, sorted) and ``ids`` (each row's index into
    ``names``). Errors name the file, row and column, before anything is written anywhere."""
    from datasets import Dataset

    if isinstance(source, (str, Path)):
        data, lines = load_preferences(source, split=split)
        name = str(source)
    else:  # already in memory: a datasets.Dataset, a dict of columns or a list of rows
        data, lines, name = source, None, "dataset"
    column = annotator_column or DEFAULT_ANNOTATOR_COLUMN
    try:
        validate_preferences(data, name=name, annotator_column=column)
        cols = data.column_names if isinstance(data, Dataset) else (list(data) if isinstance(data, dict) else None)
        if cols is None:
            cols = list(dict.fromkeys(k for row in data for k in row))
        ids, names = annotator_ids(data, column=column, name=name)
    except ValueError as e:
        raise ValueError(_with_line(str(e), lines, source)) from None
    ids, names = _compact(ids, names)
    if not isinstance(data, Dataset):
        data = Dataset.from_dict(data) if isinstance(data, dict) else Dataset.from_list(data)
    info = {
        "source": name,
        "n": len(ids),
        "annotator_column": column if column in cols else None,
        "names": names,
        "ids": ids,
    }
    return data, info


def _compact(ids: list[int], names: list[str]) -> tuple[list[int], list[str]]:
    """Drop annotators without a row (integer ids 0, 5 give K = 6 in the trainer's mapping; an audit reports
    only annotators that labelled something), keeping their order."""
    used = sorted(set(ids))
    if len(used) == len(names):
        return ids, names
    remap = {old: new for new, old in enumerate(used)}
    return [remap[i] for i in ids], [names[i] for i in used]


def _with_line(message: str, lines: list[int] | None, source) -> str:
    """A JSON Lines error: the validator's ``row N`` also as the file's line."""
    match = re.search(r"\brow (\d+)\b", message)
    if lines and match and int(match.group(1)) < len(lines):
        return f"{message} (line {lines[int(match.group(1))]} of {source})"
    return message
