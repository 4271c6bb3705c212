"""What a cached evaluation file rests on, so that a stale one is redone or refused, never reused.

A judgment is reused only when everything that produced it is unchanged. Each judgment record the
harness writes carries ``cache_key``: hashes of the question, the model's answer, the baseline's answer and
the judge's prompt template (plus the judge's system prompt where it has one), and the judge's name.
Records from elsewhere (arena-hard-auto's own files) have no key; their games' ``user_prompt`` holds the
question and both answers as the judge saw them, which is checked instead. Generated answers carry the
hash of the question they answer (``question_hash``) for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from rpo.evaluate import formats
from rpo.evaluate.judges import ARENA_HARD_PROMPT_TEMPLATE, format_judge_prompt

logger = logging.getLogger(__name__)

KEY_FIELDS = ("question", "answer", "baseline", "template", "judge")


def content_hash(text: str) -> str:
    """sha256 of the text (16 hex digits): what a cache entry remembers of a question or answer."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def template_hash(system_prompt: str | None = None) -> str:
    """The judge's prompt: v0.1's user-prompt template, and its system prompt when the judge has one."""
    return content_hash(ARENA_HARD_PROMPT_TEMPLATE + "\x00" + (system_prompt or ""))


def judgment_key(question: str, answer: str, baseline_answer: str, judge_name: str, system_prompt=None) -> dict:
    """The ``cache_key`` of one judgment record."""
    return {
        "question": content_hash(question),
        "answer": content_hash(answer),
        "baseline": content_hash(baseline_answer),
        "template": template_hash(system_prompt),
        "judge": judge_name,
    }


def stale_reason(record: dict, expected: dict, question: str, answer: str, baseline_answer: str) -> str | None:
    """Why ``record`` (a judgment) does not belong to ``expected`` (:func:`judgment_key`), or None when it does.

    A keyed record is compared field by field; the template is compared only when ``expected`` knows the
    judge's system prompt (``template`` not None). An unkeyed record is checked through its games' user
    prompts (game 1 shows the baseline first, game 2 the model) and its ``judge`` field."""
    key = record.get("cache_key")
    if isinstance(key, dict):
        changed = [f for f in KEY_FIELDS if expected.get(f) is not None and key.get(f) != expected[f]]
        return f"{', '.join(changed)} changed since it was judged" if changed else None
    if record.get("judge") not in (None, expected["judge"]):
        return f"judged by {record['judge']!r}, not {expected['judge']!r}"
    games = record.get("games") or []
    prompts = [
        format_judge_prompt(question, baseline_answer, answer),
        format_judge_prompt(question, answer, baseline_answer),
    ]
    seen = [g.get("user_prompt") for g in games[:2] if isinstance(g, dict)]
    if not seen or any(p is None for p in seen):
        return "it holds neither a cache key nor the prompts the judge saw, so what it judged is unknown"
    if any(s != p for s, p in zip(seen, prompts)):
        return "the question or an answer differs from what the judge saw (its user_prompt)"
    return None


def expected_key(question: dict, answers: dict, baseline_answers: dict, judge_name: str, judge=None):
    """``(key, question text, answer, baseline answer)`` a judgment of ``question`` must rest on now."""
    q, qid = question["turns"][0]["content"], question["question_id"]
    a, b = formats.answer_text(answers[qid]), formats.answer_text(baseline_answers[qid])
    key = judgment_key(q, a, b, judge_name, getattr(judge, "system_prompt", None))
    if judge is None:  # scoring only: the judge's system prompt is unknown, the template is not compared
        key["template"] = None
    return key, q, a, b


def verify_judgments(path, model: str, questions: list[dict], answer_dir, baseline: str, judge_name: str) -> list[dict]:
    """The records of one judgment file, each checked to judge ``model`` on a question of the benchmark
    and, where the answer files are there, to rest on today's question and answers (:func:`stale_reason`).
    ValueError names the file and line of the first record at fault."""
    path, answer_dir = Path(path), Path(answer_dir)
    by_id = {q["question_id"]: q for q in questions}
    files = [answer_dir / f"{model}.jsonl", answer_dir / f"{baseline}.jsonl"]
    answers = [formats.read_answers(f) for f in files] if all(f.exists() for f in files) else None
    if answers is None:
        logger.warning("%s: answer files %s absent, judgments not checked against them", path, files)
    out = []
    for lineno, rec in formats.numbered_judgments(path):
        qid = rec["question_id"]
        if rec["model"] != model:
            raise ValueError(f"{path}:{lineno}: a judgment of model {rec['model']!r} in the file of {model!r}")
        if qid not in by_id:
            raise ValueError(f"{path}:{lineno}: question_id {qid!r} is not a question of the benchmark")
        if answers is not None:
            lacking = [f.name for f, ans in zip(files, answers) if qid not in ans]
            why = (
                f"{' and '.join(lacking)} no longer answer(s) it"
                if lacking
                else stale_reason(rec, *expected_key(by_id[qid], *answers, judge_name))
            )
            if why is not None:
                raise ValueError(
                    f"{path}:{lineno}: stale judgment of question {qid!r}: {why}; re-judge (pass a judge) or remove it"
                )
        out.append(rec)
    return out
