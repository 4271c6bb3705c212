"""The one writer of files: atomic text / JSON / JSON Lines writes and figures, shared by every layer that
saves something (run records, tables, evaluation files, checkpoints' RPO state, the toy world's cache).
A reader never sees a half-written file, and a killed run leaves the previous version intact."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file in the same folder, fsync, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_default(obj):
    """numpy / torch scalars and arrays, Paths, sets and tuples: what notebooks typically hand over."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


def atomic_write_json(path, obj, *, indent: int = 1, sort_keys: bool = True, ensure_ascii: bool = True) -> Path:
    """``obj`` as JSON (sorted keys by default: equal objects give equal bytes), atomically, newline-ended."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=json_default)
    return atomic_write_text(path, text + "\n")


def atomic_write_jsonl(path, records, *, sort_keys: bool = False, ensure_ascii: bool = False) -> Path:
    """One JSON object per line, atomically."""
    return atomic_write_text(
        path,
        "".join(
            json.dumps(r, sort_keys=sort_keys, ensure_ascii=ensure_ascii, default=json_default) + "\n" for r in records
        ),
    )


def loads(text: str, path, lineno: int | None = None):
    """``json.loads``; bad JSON is a ValueError naming the file and the line: ``lineno`` for one line of a
    JSON Lines file, else the decoder's line within ``text``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno or e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def read_json(path):
    """A JSON file; bad JSON is a ValueError naming the file and line."""
    return loads(Path(path).read_text(encoding="utf-8"), path)


def numbered_jsonl(path, required: tuple[str, ...] = ()):
    """``(line number, record)`` of a JSON Lines file (blank lines skipped), checked for JSON, objects and
    ``required`` keys; errors name the file and the line."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = loads(line, path, lineno)
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        missing = [k for k in required if k not in rec]
        if missing:
            raise ValueError(f"{path}:{lineno}: record lacks key(s) {missing}")
        yield lineno, rec


def read_jsonl(path, required: tuple[str, ...] = ()) -> list[dict]:
    """Records of a JSON Lines file (see :func:`numbered_jsonl`)."""
    return [rec for _, rec in numbered_jsonl(path, required)]


def save_figure(
    fig, folder, stem: str, dpi: int = 150, *, svg_salt: str | None = None, png_metadata: dict | None = None
) -> list[Path]:
    """Save a matplotlib figure as ``folder/stem.png`` and ``.svg`` (the formats results/ keeps), each
    atomically; an empty ``folder`` saves nothing (a notebook run interactively only shows it).
    ``svg_salt`` (default: the stem) fixes the SVG's element ids; ``png_metadata`` goes to the PNG."""
    if not folder:
        return []
    import matplotlib

    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = [Path(folder) / f"{stem}.{ext}" for ext in ("png", "svg")]
    # No date and fixed element ids in the SVG: the same figure gives the same bytes on every rerun.
    with matplotlib.rc_context({"svg.hashsalt": svg_salt or stem}):
        for p in paths:
            tmp = p.with_name(f".{p.name}.tmp")
            fig.savefig(
                tmp, format=p.suffix[1:], dpi=dpi, metadata={"Date": None} if p.suffix == ".svg" else png_metadata
            )
            os.replace(tmp, p)
    return paths
