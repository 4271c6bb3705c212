"""Loaders of the paper's datasets (SimPO's UltraFeedback releases) into the canonical schema, from the
Hub on a cluster or from a local copy in the Hub's own layout (what the tests use)."""

from __future__ import annotations

import json
from pathlib import Path

from rpo.data.schema import validate_preferences
from rpo.io import read_json

ULTRAFEEDBACK = {
    "mistral": "princeton-nlp/mistral-instruct-ultrafeedback",
    "llama3": "princeton-nlp/llama3-ultrafeedback-armorm",
    # section 5.4's "copies of UltraFeedback" (paper-qwen05): the GPT-4-rated binarized UltraFeedback, the
    # public set closest to the paper's GPT-4o-labelled copy; splits train_prefs / test_prefs, same columns
    "h4": "HuggingFaceH4/ultrafeedback_binarized",
}
UF_COLUMNS = ("prompt_id", "prompt", "all_generated_responses", "all_rm_scores", "chosen", "rejected")


def _read_local(path: Path, split: str) -> list[dict]:
    """Rows from a local copy: a ``.jsonl``/``.json``/``.parquet`` file, or a folder holding
    ``<split>.jsonl`` / ``<split>.parquet`` / ``data/<split>-*.parquet`` (the Hub's layout)."""
    if path.is_dir():
        cands = [path / f"{split}.jsonl", path / f"{split}.json", path / f"{split}.parquet"] + sorted(
            (path / "data").glob(f"{split}-*.parquet")
        )
        found = [p for p in cands if p.exists()]
        if not found:
            raise FileNotFoundError(f"{path}: no {split}.jsonl, {split}.parquet or data/{split}-*.parquet")
        return [r for p in found for r in _read_local(p, split)]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as e:  # a truncated or foreign file: name it, not pyarrow's frames
            raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    if path.suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return rows
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: invalid JSON ({e.msg})") from None
    return rows


def normalize_ultrafeedback(rows: list[dict], *, source: str = "ultrafeedback", as_text: bool = False) -> list[dict]:
    """SimPO-style UltraFeedback rows -> canonical rows.

    Input columns: ``prompt_id, prompt, all_generated_responses, all_rm_scores, chosen, rejected`` with
    chosen/rejected as ``[user message, assistant message]``. Output (TRL's conversational format):
    ``prompt`` = the conversation before the last turn, ``chosen``/``rejected`` = ``[last assistant
    message]``; ``as_text=True`` gives plain strings instead. ``prompt_id`` is kept.
    """
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"{source}, row {i}: expected an object with prompt / chosen / rejected, got {r!r:.80}")
        missing = [c for c in ("prompt", "chosen", "rejected") if c not in r]
        if missing:
            raise ValueError(f"{source}, row {i}: missing column(s) {missing}; found {sorted(r)}")
        for col in ("chosen", "rejected"):
            conv = r[col]
            if not isinstance(conv, list) or not conv or not isinstance(conv[-1], dict):
                raise ValueError(f"{source}, column {col!r}, row {i}: expected a list of chat messages")
            if conv[-1].get("role") != "assistant":
                raise ValueError(f"{source}, column {col!r}, row {i}: last message is not from the assistant")
            bad = [j for j, m in enumerate(conv) if not isinstance(m, dict) or not {"role", "content"} <= set(m)]
            if bad:
                raise ValueError(f"{source}, column {col!r}, row {i}, message {bad[0]}: needs 'role' and 'content'")
        prompt_msgs = [{"role": m["role"], "content": m["content"]} for m in r["chosen"][:-1]] or [
            {"role": "user", "content": r["prompt"]}
        ]
        chosen = {"role": "assistant", "content": r["chosen"][-1]["content"]}
        rejected = {"role": "assistant", "content": r["rejected"][-1]["content"]}
        row = {"prompt_id": r.get("prompt_id", str(i))}
        if as_text:
            row.update(prompt=r["prompt"], chosen=chosen["content"], rejected=rejected["content"])
        else:
            row.update(prompt=prompt_msgs, chosen=[chosen], rejected=[rejected])
        out.append(row)
    validate_preferences(out, name=source)
    return out


def load_ultrafeedback(
    name: str = "mistral",
    *,
    split: str = "train",
    path: str | Path | None = None,
    limit: int | None = None,
    as_text: bool = False,
):
    """Load ``princeton-nlp/mistral-instruct-ultrafeedback`` (``name="mistral"``) or
    ``princeton-nlp/llama3-ultrafeedback-armorm`` (``"llama3"``) in the canonical schema, as a
    ``datasets.Dataset``. ``path``: a local copy (file or folder, see :func:`_read_local`); without it the
    Hub is used (a cluster with access; offline here). ``limit`` keeps the first rows. No annotator column:
    the paper models one virtual annotator (K = 1, section 5.1)."""
    from datasets import Dataset

    if name not in ULTRAFEEDBACK:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(ULTRAFEEDBACK)}")
    if path is not None:
        rows = _read_local(Path(path), split)
    else:
        from datasets import load_dataset

        rows = load_dataset(ULTRAFEEDBACK[name], split=split).to_list()
    if limit is not None:
        rows = rows[:limit]
    source = f"{path if path is not None else ULTRAFEEDBACK[name]}[{split}]"  # errors name the file read
    return Dataset.from_list(normalize_ultrafeedback(rows, source=source, as_text=as_text))
