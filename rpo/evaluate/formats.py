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
    """An AlpacaEval outputs file (a JSON list of objects with ``instruction`` and ``output``, one per
    instruction: a duplicate would be judged twice, or one answer would silently stand for both).
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
    first = {}
    for i, rec in enumerate(data):
        if rec["instruction"] in first:
            raise ValueError(
                f"{path}:{_line_of_record(text, i)}: record {i} repeats the instruction of record "
                f"{first[rec['instruction']]} ({rec['instruction'][:60]!r})"
            )
        first[rec["instruction"]] = i
    return data


def read_instructions(path: Path | str) -> list:
    """A JSON list of instructions to generate for: strings, or records with a string ``instruction``
    (other keys kept), each instruction once. ValueError names the file and line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = _loads(text, path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of instructions, got {type(data).__name__}")
    first = {}
    for i, x in enumerate(data):
        instr = x if isinstance(x, str) else x.get("instruction") if isinstance(x, dict) else None
        if not isinstance(instr, str) or not instr.strip():
            raise ValueError(f"{path}:{_line_of_record(text, i)}: item {i} is no instruction string or record")
        if instr in first:
            raise ValueError(
                f"{path}:{_line_of_record(text, i)}: item {i} repeats the instruction of item {first[instr]}"
            )
        first[instr] = i
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
    """Arena-Hard ``question.jsonl``; each question must have exactly one user turn (v0.1) and a
    question_id of its own (a duplicate would be judged and counted twice)."""
    out, seen = [], {}
    for lineno, q in _numbered(path, QUESTION_KEYS):
        if q["question_id"] in seen:
            raise ValueError(
                f"{path}:{lineno}: duplicate question_id {q['question_id']!r} (first at line {seen[q['question_id']]})"
            )
        seen[q["question_id"]] = lineno
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
    """``model_judgment/<judge>/<model>.jsonl``: each record must hold a list of games (see
    :func:`numbered_judgments`)."""
    return [rec for _, rec in numbered_judgments(path)]


def numbered_judgments(path: Path | str) -> list[tuple[int, dict]]:
    """``(line, record)`` of a judgment file. Each record: a non-empty list of games, each game null or an
    object whose ``judgment`` / ``score`` are strings or null; one record per question_id (a duplicate
    would count its games twice). Errors name the file and line."""
    out, seen = [], {}
    for lineno, rec in _numbered(path, JUDGMENT_KEYS):
        if not isinstance(rec["games"], list) or not rec["games"]:
            raise ValueError(f"{path}:{lineno}: 'games' must be a non-empty list")
        for g, game in enumerate(rec["games"]):
            if game is not None and (
                not isinstance(game, dict)
                or any(not isinstance(game.get(k), (str, type(None))) for k in ("judgment", "score"))
            ):
                raise ValueError(f"{path}:{lineno}: game {g} must be null or an object with string judgment / score")
        qid = rec["question_id"]
        if qid in seen:
            raise ValueError(f"{path}:{lineno}: duplicate judgment of question_id {qid!r} (first at line {seen[qid]})")
        seen[qid] = lineno
        out.append((lineno, rec))
    return out


def answer_record(
    question_id: str, model_id: str, text: str, token_len: int | None = None, question_hash: str | None = None
) -> dict:
    """One ``model_answer`` record in the v0.1 layout (``question_hash``: what the generator answered,
    :func:`rpo.evaluate.cache.content_hash` of the question; our addition, so a changed question is
    answered again)."""
    turn = {"content": text}
    if token_len is not None:
        turn["token_len"] = int(token_len)
    rec = {
        "question_id": question_id,
        "answer_id": uuid.uuid4().hex,
        "model_id": model_id,
        "choices": [{"index": 0, "turns": [turn]}],
        "tstamp": time.time(),
    }
    if question_hash is not None:
        rec["question_hash"] = question_hash
    return rec
