"""MultiPref (allenai/multipref, the final paper's section 5.3 and Table 3) in the canonical schema, one
row per human annotation, the annotator column naming who gave it.

The dataset's own layout (its dataset card; config ``default``, split ``train``, about 10k comparisons):
one row per comparison with ``comparison_id``, ``prompt_id``, ``text`` (the prompt), ``completion_a`` /
``model_a``, ``completion_b`` / ``model_b``, ``source``, ``category``, ``subject_study``,
``highest_level_degree``, and two lists of annotation dicts, ``normal_worker_annotations`` (two
crowdworkers) and ``expert_worker_annotations`` (two domain experts). Each annotation holds ``evaluator``
(the annotator's id), ``overall_pref`` and the aspect preferences ``helpful_pref``, ``truthful_pref``,
``harmless_pref``, each one of ``A-is-clearly-better``, ``A-is-slightly-better``, ``Tie``,
``B-is-slightly-better``, ``B-is-clearly-better``, plus confidences, reasons and timings (kept out).

:func:`normalize_multipref` turns each non-tie annotation into a pair: ``prompt`` (the text, as a user
message), ``chosen`` / ``rejected`` (the preferred and the other completion, as assistant messages),
``annotator`` (its ``evaluator``), and ``comparison_id``, ``prompt_id``, ``worker`` (normal / expert),
``strength`` (clearly / slightly). A tie carries no preference and is skipped (counted). A comparison
annotated by four people gives up to four rows with the same texts: each annotator's label is its own
observation of the latent preference (Assumption 1), which is what RPO's per-annotator eta needs.
"""

from __future__ import annotations

from pathlib import Path

from rpo.data.loaders import _read_local
from rpo.data.schema import validate_preferences

MULTIPREF = "allenai/multipref"
WORKER_COLUMNS = {"normal": "normal_worker_annotations", "expert": "expert_worker_annotations"}
ASPECTS = ("overall", "helpful", "truthful", "harmless")
PREFERENCES = {
    "A-is-clearly-better": ("a", "clearly"),
    "A-is-slightly-better": ("a", "slightly"),
    "Tie": (None, "tie"),
    "B-is-slightly-better": ("b", "slightly"),
    "B-is-clearly-better": ("b", "clearly"),
}
MP_COLUMNS = ("comparison_id", "prompt_id", "text", "completion_a", "completion_b")


def normalize_multipref(
    rows: list[dict],
    *,
    source: str = MULTIPREF,
    workers: tuple[str, ...] = ("normal", "expert"),
    aspect: str = "overall",
    as_text: bool = False,
) -> tuple[list[dict], dict]:
    """MultiPref comparison rows -> ``(pairs, counts)``; see the module docstring. ``workers`` picks the
    annotation lists, ``aspect`` the preference read (``overall`` by default, as the paper). ``counts``:
    comparisons, annotations read, ties skipped, pairs, annotators. Errors name the source, row and field."""
    unknown = sorted(set(workers) - set(WORKER_COLUMNS))
    if unknown or not workers:
        raise ValueError(f"{source}: workers must be a non-empty subset of {sorted(WORKER_COLUMNS)}, got {workers}")
    if aspect not in ASPECTS:
        raise ValueError(f"{source}: aspect must be one of {ASPECTS}, got {aspect!r}")
    key = f"{aspect}_pref"
    out, ties, seen = [], 0, 0
    for i, r in enumerate(rows):
        missing = [c for c in (*MP_COLUMNS, *(WORKER_COLUMNS[w] for w in workers)) if c not in r]
        if missing:
            raise ValueError(f"{source}, row {i}: missing column(s) {missing}; found {sorted(r)}")
        for col in ("text", "completion_a", "completion_b"):
            if not isinstance(r[col], str) or not r[col].strip():
                raise ValueError(f"{source}, row {i}, column {col!r}: expected a non-empty string")
        for worker in workers:
            annotations = r[WORKER_COLUMNS[worker]]
            if annotations is None:
                continue
            if not isinstance(annotations, list):
                raise ValueError(
                    f"{source}, row {i}, column {WORKER_COLUMNS[worker]!r}: expected a list of annotation "
                    f"dicts, got {type(annotations).__name__}"
                )
            for j, ann in enumerate(annotations):
                where = f"{source}, row {i}, {WORKER_COLUMNS[worker]}[{j}]"
                if not isinstance(ann, dict):
                    raise ValueError(f"{where}: expected an annotation dict, got {type(ann).__name__}")
                evaluator = ann.get("evaluator")
                if not isinstance(evaluator, str) or not evaluator.strip():
                    raise ValueError(
                        f"{where}: 'evaluator' (the annotator id) must be a non-empty string, got {evaluator!r}"
                    )
                if ann.get(key) not in PREFERENCES:
                    raise ValueError(f"{where}: {key!r} is {ann.get(key)!r}; expected one of {list(PREFERENCES)}")
                seen += 1
                winner, strength = PREFERENCES[ann[key]]
                if winner is None:
                    ties += 1
                    continue
                a, b = r["completion_a"], r["completion_b"]
                chosen, rejected = (a, b) if winner == "a" else (b, a)
                row = {
                    "comparison_id": str(r["comparison_id"]),
                    "prompt_id": str(r["prompt_id"]),
                    "annotator": evaluator,
                    "worker": worker,
                    "strength": strength,
                }
                if as_text:
                    row.update(prompt=r["text"], chosen=chosen, rejected=rejected)
                else:
                    row.update(
                        prompt=[{"role": "user", "content": r["text"]}],
                        chosen=[{"role": "assistant", "content": chosen}],
                        rejected=[{"role": "assistant", "content": rejected}],
                    )
                out.append(row)
    if not out:
        raise ValueError(f"{source}: no annotation with a preference ({seen} read, {ties} ties) in {len(rows)} rows")
    validate_preferences(out, name=source)
    counts = {
        "comparisons": len(rows),
        "annotations": seen,
        "ties_skipped": ties,
        "pairs": len(out),
        "annotators": len({r["annotator"] for r in out}),
    }
    return out, counts


def load_multipref(
    *,
    split: str = "train",
    path: str | Path | None = None,
    workers: tuple[str, ...] = ("normal", "expert"),
    aspect: str = "overall",
    limit: int | None = None,
    as_text: bool = False,
):
    """``allenai/multipref`` (config ``default``) in the canonical schema as a ``datasets.Dataset``, one row
    per non-tie annotation, ``annotator`` = its evaluator. ``path``: a local copy in the Hub's layout (a
    ``.jsonl`` / ``.parquet`` file, or a folder with ``<split>.jsonl`` or ``data/<split>-*.parquet``);
    without it the Hub. ``limit`` keeps the first comparisons. The counts are logged (``logging``)."""
    import logging

    from datasets import Dataset

    if path is not None:
        rows = _read_local(Path(path), split)
    else:
        from datasets import load_dataset

        rows = load_dataset(MULTIPREF, "default", split=split).to_list()
    if limit is not None:
        rows = rows[:limit]
    source = f"{path if path is not None else MULTIPREF}[{split}]"
    pairs, counts = normalize_multipref(rows, source=source, workers=tuple(workers), aspect=aspect, as_text=as_text)
    logging.getLogger(__name__).info("%s: %s", source, counts)
    return Dataset.from_list(pairs)
