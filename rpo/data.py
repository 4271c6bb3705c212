"""The data layer: one canonical preference schema, its validation, annotators that inject noise with
known truth, and loaders for the paper's two datasets.

Canonical schema (what ``rpo.RobustTrainer`` reads): ``prompt``, ``chosen``, ``rejected``, each a
non-empty string or a non-empty list of chat messages ``{"role", "content"}``; optional ``annotator``
(str or int). Columns that start with ``true_`` or are named ``is_flipped`` hold the *hidden truth*: the
trainer never sees them (:func:`public_view` drops them); metrics and tables read them.

Noise (section 3, Assumption 1: annotator ``k`` labels correctly with probability ``eta_k``):

* :class:`Annotator` ``kind="symmetric"``: each label flipped with probability ``rate``.
* :class:`Annotator` ``kind="bt"``: Bradley-Terry on the oracle rewards, flip probability
  ``sigmoid(-margin / tau)``; small reward gaps flip often, large ones rarely (instance-dependent noise).
  ``tau`` is solved (bisection) so that the mean flip probability over the annotator's rows is ``rate``.

Layouts of section 5.4: :func:`single_annotator` (one annotator at a set rate), :func:`two_annotators`
(each holds a full copy of the data; annotator 1 clean, annotator 2 noisy), :func:`annotate` (any number,
each holding a copy or a disjoint share). Hidden columns added: ``true_chosen``, ``true_rejected`` (the
true preference), ``is_flipped``, ``true_flip_prob`` and ``true_eta`` (the annotator's *measured*
agreement with the oracle over its rows: the analogue of the paper's "eta GPT-4o").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED = ("prompt", "chosen", "rejected")
HIDDEN_PREFIX = "true_"
HIDDEN_COLUMNS = ("is_flipped",)


# ----------------------------------------------------------------------------- schema and validation

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
    raise ValueError(f"unsupported preference data type {type(data).__name__}; "
                     "expected datasets.Dataset, dict of lists or list of dicts")


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
                raise ValueError(f"column {column!r}, row {row}, message {j}: expected a dict with "
                                 f"'role' and 'content', got {m!r:.80}")
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise ValueError(f"column {column!r}, row {row}, message {j}: empty or non-string content")
        return "chat"
    raise ValueError(f"column {column!r}, row {row}: expected str or list of chat messages, "
                     f"got {type(value).__name__}")


def validate_preferences(data, *, name: str = "dataset") -> None:
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
            kinds.add(_check_value(v, c, i))
            if len(kinds) > 1:
                raise ValueError(f"{name}: column {c!r}, row {i}: mixes plain text and chat messages")
    if n == 0:
        raise ValueError(f"{name}: preference data is empty (0 rows)")
    if "annotator" in cols:
        for i, a in enumerate(get("annotator")):
            if isinstance(a, bool) or not isinstance(a, (str, int, np.integer)):
                raise ValueError(f"{name}: column 'annotator', row {i}: expected str or int, "
                                 f"got {type(a).__name__}")
            if isinstance(a, str) and not a.strip():
                raise ValueError(f"{name}: column 'annotator', row {i}: empty string")


def is_hidden(column: str) -> bool:
    """Whether a column holds hidden truth the trainer must not see."""
    return column.startswith(HIDDEN_PREFIX) or column in HIDDEN_COLUMNS


def public_view(dataset):
    """The dataset without its hidden-truth columns (what a trainer may read)."""
    return dataset.remove_columns([c for c in dataset.column_names if is_hidden(c)])


# ----------------------------------------------------------------------------- annotators and noise

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Annotator:
    """An annotator who relabels the true pairs. ``kind``: ``"symmetric"`` (flip with probability
    ``rate``) or ``"bt"`` (flip with ``sigmoid(-margin / tau)``, ``tau`` solved so the mean flip
    probability is ``rate``; or give ``tau`` directly). ``rate=0`` is a clean annotator."""
    name: str
    rate: float = 0.0
    kind: str = "symmetric"
    tau: float | None = None

    def __post_init__(self):
        if self.kind not in ("symmetric", "bt"):
            raise ValueError(f"annotator {self.name!r}: kind must be 'symmetric' or 'bt', got {self.kind!r}")
        if not 0.0 <= self.rate <= 0.5:
            raise ValueError(f"annotator {self.name!r}: rate must be in [0, 0.5], got {self.rate}")
        if self.tau is not None and self.tau <= 0:
            raise ValueError(f"annotator {self.name!r}: tau must be > 0, got {self.tau}")

    def flip_probs(self, margins) -> np.ndarray:
        """Per-row flip probability given the oracle reward gaps (``margins`` > 0), shape (N,)."""
        margins = np.asarray(margins, dtype=float)
        if self.kind == "symmetric" or (self.rate == 0.0 and self.tau is None):
            return np.full(margins.shape, self.rate)
        tau = self.tau if self.tau is not None else bt_tau_for_rate(margins, self.rate)
        return _sigmoid(-margins / tau) if tau > 0 else np.zeros(margins.shape)


def bt_tau_for_rate(margins, rate: float) -> float:
    """The temperature ``tau`` at which ``mean(sigmoid(-margin / tau)) == rate`` (bisection in log tau).

    ``rate`` must lie in [0, 0.5); 0 gives tau 0 (no flips)."""
    margins = np.asarray(margins, dtype=float)
    if rate == 0.0:
        return 0.0
    if not 0.0 < rate < 0.5:
        raise ValueError(f"Bradley-Terry rate must be in [0, 0.5), got {rate}")
    if np.any(margins <= 0):
        raise ValueError("Bradley-Terry noise needs positive oracle margins (true_margin > 0)")
    lo, hi = -12.0, 12.0  # log tau; mean flip prob rises monotonically with tau
    for _ in range(100):
        mid = (lo + hi) / 2
        if _sigmoid(-margins / math.exp(mid)).mean() < rate:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def _truth(rows: list[dict]) -> list[dict]:
    """Rows in true orientation (chosen truly better), reading ``true_*`` columns when present."""
    out = []
    for i, r in enumerate(rows):
        validate_row = {k: r[k] for k in REQUIRED if k in r}
        if len(validate_row) < 3:
            raise ValueError(f"row {i}: missing one of {REQUIRED}")
        out.append({**r, "chosen": r.get("true_chosen", r["chosen"]),
                    "rejected": r.get("true_rejected", r["rejected"])})
    return out


def annotate(pairs, annotators: list[Annotator], *, layout: str = "copy", seed: int = 0):
    """Relabel clean pairs by several annotators; returns a ``datasets.Dataset``.

    ``pairs``: clean pairs (chosen truly better; list of dicts or Dataset). ``layout="copy"``: each
    annotator labels its own full copy (N * K rows, section 5.4 b); ``"split"``: the rows are shuffled and
    dealt out in equal disjoint shares. BT annotators need a ``true_margin`` column. Row order: annotator
    by annotator; the trainer shuffles.
    """
    from datasets import Dataset

    if layout not in ("copy", "split"):
        raise ValueError(f"layout must be 'copy' or 'split', got {layout!r}")
    if not annotators:
        raise ValueError("annotators: need at least one")
    names = [a.name for a in annotators]
    if len(set(names)) != len(names):
        raise ValueError(f"annotators: duplicate names in {names}")
    rows = _truth(list(pairs))
    rng = np.random.default_rng(seed)
    if layout == "split":
        order = rng.permutation(len(rows))
        shares = np.array_split(order, len(annotators))
    else:
        shares = [np.arange(len(rows))] * len(annotators)
    out = []
    for ann, idx in zip(annotators, shares):
        sub = [rows[i] for i in idx]
        if ann.kind == "bt" and sub and "true_margin" not in sub[0]:
            raise ValueError(f"annotator {ann.name!r}: Bradley-Terry noise needs a 'true_margin' column")
        margins = [r.get("true_margin", 1.0) for r in sub]
        p = ann.flip_probs(margins)
        flips = rng.random(len(sub)) < p
        eta = 1.0 - float(flips.mean()) if len(sub) else float("nan")
        for r, f, pi in zip(sub, flips, p):
            c, j = (r["rejected"], r["chosen"]) if f else (r["chosen"], r["rejected"])
            out.append({**{k: v for k, v in r.items() if k not in ("chosen", "rejected", "annotator")},
                        "prompt": r["prompt"], "chosen": c, "rejected": j, "annotator": ann.name,
                        "true_chosen": r["chosen"], "true_rejected": r["rejected"],
                        "is_flipped": bool(f), "true_flip_prob": float(pi), "true_eta": eta})
    return Dataset.from_list(out)


def single_annotator(pairs, rate: float, *, kind: str = "symmetric", seed: int = 0, name: str = "a1"):
    """Section 5.4 (a): one annotator at noise ``rate``."""
    return annotate(pairs, [Annotator(name, rate, kind)], layout="copy", seed=seed)


def two_annotators(pairs, rate2: float, *, kind: str = "symmetric", seed: int = 0):
    """Section 5.4 (b): two copies of the data; annotator ``a1`` clean, ``a2`` at noise ``rate2``."""
    return annotate(pairs, [Annotator("a1", 0.0, kind), Annotator("a2", rate2, kind)], layout="copy", seed=seed)


def apply_layout(pairs, layout: str = "single", rate: float = 0.0, *, kind: str = "symmetric",
                 rates: list | None = None, seed: int = 0):
    """One entry point for notebooks whose parameters are literals.

    ``layout="single"``: :func:`single_annotator` at ``rate``; ``"two"``: :func:`two_annotators`
    (annotator 2 at ``rate``); ``"many"``: one annotator per entry of ``rates`` (``a1, a2, ...``), each
    holding a disjoint share of the pairs (``"many-copy"``: each a full copy)."""
    if layout == "single":
        return single_annotator(pairs, rate, kind=kind, seed=seed)
    if layout == "two":
        return two_annotators(pairs, rate, kind=kind, seed=seed)
    if layout in ("many", "many-copy"):
        if not rates:
            raise ValueError(f"layout {layout!r} needs rates=[...], one per annotator")
        anns = [Annotator(f"a{i + 1}", r, kind) for i, r in enumerate(rates)]
        return annotate(pairs, anns, layout="copy" if layout == "many-copy" else "split", seed=seed)
    raise ValueError(f"unknown layout {layout!r}; expected single, two, many or many-copy")


def true_reliability(dataset) -> dict:
    """``{annotator: measured agreement with the oracle}`` from the ``is_flipped`` column."""
    ann = np.asarray(dataset["annotator"])
    flipped = np.asarray(dataset["is_flipped"], dtype=bool)
    return {str(k): float(1.0 - flipped[ann == k].mean()) for k in dict.fromkeys(ann.tolist())}


# ----------------------------------------------------------------------------- the paper's datasets

ULTRAFEEDBACK = {
    "mistral": "princeton-nlp/mistral-instruct-ultrafeedback",
    "llama3": "princeton-nlp/llama3-ultrafeedback-armorm",
}
UF_COLUMNS = ("prompt_id", "prompt", "all_generated_responses", "all_rm_scores", "chosen", "rejected")


def _read_local(path: Path, split: str) -> list[dict]:
    """Rows from a local copy: a ``.jsonl``/``.json``/``.parquet`` file, or a folder holding
    ``<split>.jsonl`` / ``<split>.parquet`` / ``data/<split>-*.parquet`` (the Hub's layout)."""
    if path.is_dir():
        cands = ([path / f"{split}.jsonl", path / f"{split}.json", path / f"{split}.parquet"]
                 + sorted((path / "data").glob(f"{split}-*.parquet")))
        found = [p for p in cands if p.exists()]
        if not found:
            raise FileNotFoundError(f"{path}: no {split}.jsonl, {split}.parquet or data/{split}-*.parquet")
        return [r for p in found for r in _read_local(p, split)]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path) as f:
        if path.suffix == ".json":
            return json.load(f)
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
        missing = [c for c in ("prompt", "chosen", "rejected") if c not in r]
        if missing:
            raise ValueError(f"{source}, row {i}: missing column(s) {missing}; found {sorted(r)}")
        for col in ("chosen", "rejected"):
            conv = r[col]
            if not isinstance(conv, list) or not conv or not isinstance(conv[-1], dict):
                raise ValueError(f"{source}, column {col!r}, row {i}: expected a list of chat messages")
            if conv[-1].get("role") != "assistant":
                raise ValueError(f"{source}, column {col!r}, row {i}: last message is not from the assistant")
        prompt_msgs = [{"role": m["role"], "content": m["content"]} for m in r["chosen"][:-1]] or \
            [{"role": "user", "content": r["prompt"]}]
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


def load_ultrafeedback(name: str = "mistral", *, split: str = "train", path: str | Path | None = None,
                       limit: int | None = None, as_text: bool = False):
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
    return Dataset.from_list(normalize_ultrafeedback(rows, source=f"{ULTRAFEEDBACK[name]}[{split}]", as_text=as_text))
