"""Reading and writing the two benchmarks' own file formats, with errors that name file and line.

AlpacaEval (``alpaca_eval`` 0.6.6): one JSON list ``[{"instruction", "output", "generator", ...}]``.

Arena-Hard v0.1 (``lmarena/arena-hard-auto``, ``data/arena-hard-v0.1/``), all JSON Lines:

* ``question.jsonl``: ``{"question_id", "category", "cluster", "turns": [{"content"}]}``
* ``model_answer/<model>.jsonl``: ``{"question_id", "answer_id", "model_id",
  "choices": [{"index": 0, "turns": [{"content", "token_len"}]}], "tstamp"}``
* ``model_judgment/<judge>/<model>.jsonl``: ``{"question_id", "model", "judge",
  "games": [{"user_prompt", "judgment", "score"}, {...}]}`` (game 1: A = baseline, B = model;
  game 2: positions swapped).

Writes are atomic (temporary file, then ``os.replace``), so an interrupted run never leaves a
half-written file behind and a resumed run can trust what it reads.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from rpo.io import atomic_write_json, atomic_write_jsonl, read_jsonl  # noqa: F401
from rpo.io import loads as _loads
from rpo.io import numbered_jsonl as _numbered

ALPACA_KEYS = ("instruction", "output")
QUESTION_KEYS = ("question_id", "turns")
ANSWER_KEYS = ("question_id", "model_id", "choices")
JUDGMENT_KEYS = ("question_id", "model", "games")


def write_json(path: Path | str, obj) -> None:
    atomic_write_json(path, obj, indent=2, sort_keys=False, ensure_ascii=False)


def write_jsonl(path: Path | str, records) -> None:
    atomic_write_jsonl(path, records)


def read_alpacaeval(path: Path | str) -> list[dict]:
    """An AlpacaEval outputs file (a JSON list of objects with ``instruction`` and ``output``).
    ValueError names the file, and the line of bad JSON or of the first record at fault."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = _loads(text, path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, rec in enumerate(data):
        bad = (
            not isinstance(rec, dict)
            or any(k not in rec for k in ALPACA_KEYS)
            or not all(isinstance(rec[k], str) for k in ALPACA_KEYS)
        )
        if bad:
            raise ValueError(
                f"{path}:{_line_of_record(text, i)}: record {i} must be an object with string "
                f"keys {list(ALPACA_KEYS)}, got {json.dumps(rec)[:120]}"
            )
    return data


def _line_of_record(text: str, index: int) -> int:
    """1-based line where the ``index``-th element of a top-level JSON list starts (best effort)."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    for i in range(index + 1):
        while text[pos] in " \t\r\n,":
            pos += 1
        if i == index:
            return text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)
    return 1


def read_questions(path: Path | str) -> list[dict]:
    """Arena-Hard ``question.jsonl``; each question must have exactly one user turn (v0.1)."""
    out = []
    for lineno, q in _numbered(path, QUESTION_KEYS):
        turns = q["turns"]
        if not (
            isinstance(turns, list)
            and len(turns) == 1
            and isinstance(turns[0], dict)
            and isinstance(turns[0].get("content"), str)
        ):
            raise ValueError(
                f"{path}:{lineno}: 'turns' must be [{{'content': str}}] with one turn (Arena-Hard v0.1 is single-turn)"
            )
        out.append(q)
    return out


def answer_text(rec: dict, path: Path | str = "<answers>") -> str:
    """The first choice's first turn of an Arena-Hard answer record."""
    try:
        return rec["choices"][0]["turns"][0]["content"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{path}: answer to {rec.get('question_id')!r} lacks choices[0].turns[0].content") from None


def read_answers(path: Path | str) -> dict[str, dict]:
    """One ``model_answer/<model>.jsonl`` as ``{question_id: record}``; a duplicate question_id or a
    malformed record raises ValueError naming file and line."""
    out: dict[str, dict] = {}
    for lineno, rec in _numbered(path, ANSWER_KEYS):
        try:
            rec["choices"][0]["turns"][0]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{path}:{lineno}: record lacks choices[0].turns[0].content") from None
        if rec["question_id"] in out:
            raise ValueError(f"{path}:{lineno}: duplicate question_id {rec['question_id']!r}")
        out[rec["question_id"]] = rec
    return out


def read_answer_dir(folder: Path | str) -> dict[str, dict[str, dict]]:
    """``model_answer/`` as ``{model: {question_id: record}}``; the model name is the file stem, as in
    arena-hard-auto."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"answer folder {folder} does not exist")
    return {p.stem: read_answers(p) for p in sorted(folder.glob("*.jsonl"))}


def read_judgments(path: Path | str) -> list[dict]:
    """``model_judgment/<judge>/<model>.jsonl``: each record must hold a list of games."""
    out = []
    for lineno, rec in _numbered(path, JUDGMENT_KEYS):
        if not isinstance(rec["games"], list) or not rec["games"]:
            raise ValueError(f"{path}:{lineno}: 'games' must be a non-empty list")
        out.append(rec)
    return out


def answer_record(question_id: str, model_id: str, text: str, token_len: int | None = None) -> dict:
    """One ``model_answer`` record in the v0.1 layout."""
    turn = {"content": text}
    if token_len is not None:
        turn["token_len"] = int(token_len)
    return {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex,
        "model_id": model_id,
        "choices": [{"index": 0, "turns": [turn]}],
        "tstamp": time.time(),
    }
