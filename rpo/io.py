"""Atomic file writes, shared by every layer that saves results (evaluation files, run records, tables):
a reader never sees a half-written file, and a killed run leaves the previous version intact."""

from __future__ import annotations

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


def save_figure(fig, folder, stem: str, dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as ``folder/stem.png`` and ``.svg`` (the formats results/ keeps);
    an empty ``folder`` saves nothing (a notebook run interactively only shows it)."""
    if not folder:
        return []
    import matplotlib

    Path(folder).mkdir(parents=True, exist_ok=True)
    paths = [Path(folder) / f"{stem}.{ext}" for ext in ("png", "svg")]
    # No date and fixed element ids in the SVG: the same figure gives the same bytes on every rerun.
    with matplotlib.rc_context({"svg.hashsalt": stem}):
        for p in paths:
            fig.savefig(p, dpi=dpi, metadata={"Date": None} if p.suffix == ".svg" else None)
    return paths
