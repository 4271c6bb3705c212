"""``audit()``: which labels of a preference data set look wrong, and how reliable each annotator is.

1. read and validate the data (errors name file, row, column) and check the model folders, before anything
   is loaded or written;
2. cross-fitting: the rows are dealt into ``folds`` folds (seeded, within each annotator); for each fold an
   R-X witness (RPO on the base loss) is trained from the base model on the other folds and scores the fold
   it never saw (eq. 2's log-odds ``d``). ``witness=DIR`` scores every row with an already trained policy
   instead, and ``folds=1`` trains one witness on every row: both are in-sample, so optimistic (a witness
   that fitted a wrong label finds it right), and say so;
3. eta by exact EM at the fixed witness, with eq. 3's temperature (:mod:`rpo.audit.estimate`), w by eq. 4,
   a bootstrap interval for each eta;
4. with ``out``: ``pairs.csv``, ``annotators.csv``, ``report.md``, ``report.html``, ``summary.json`` and the
   figures, each written atomically once everything is computed (:mod:`rpo.audit.report`).

Resuming: the work of an audit with ``out`` lives in ``out/.work/<key>``, ``key`` a hash of the data and of
every setting; a killed audit run again with the same arguments resumes from the last training checkpoint
of the fold it was training, or the last scored chunk. A fold's witness weights are deleted once its rows
are all scored (only the scores are needed again).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rpo.audit import estimate, witness
from rpo.audit.settings import resolve

logger = logging.getLogger(__name__)

VERSION = 1  # of the cache layout and the estimator: a change invalidates old .work folders
IN_SAMPLE = (
    "in-sample scores are optimistic: the witness was trained on the labels it scores, so a wrong label it "
    "fitted looks right (w too high, eta overstated); cross-fitting (the default, no --witness, folds >= 2) avoids this"
)


class AuditResult(NamedTuple):
    """``pairs``: DataFrame ``row, annotator, d, w`` sorted by w ascending (``row``: 0-based index in the
    data); ``annotators``: DataFrame ``annotator, n, eta, eta_low, eta_high`` sorted by eta ascending;
    ``summary``: what ``summary.json`` holds."""

    pairs: object
    annotators: object
    summary: dict


def data_hash(dataset, ids: list[int], names: list[str]) -> str:
    """sha256 of the rows' prompt / chosen / rejected / annotator, in order."""
    h = hashlib.sha256()
    for i, (p, c, r) in enumerate(zip(dataset["prompt"], dataset["chosen"], dataset["rejected"])):
        h.update(json.dumps([p, c, r, names[ids[i]]], sort_keys=True, ensure_ascii=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def assign_folds(ids: list[int], folds: int, seed: int) -> np.ndarray:
    """Each row's fold in [0, folds): within each annotator a seeded permutation dealt round-robin, so every
    fold holds each annotator's rows in proportion."""
    ids = np.asarray(ids)
    fold = np.zeros(len(ids), dtype=int)
    rng = np.random.default_rng(seed)
    for k in np.unique(ids):
        rows = np.flatnonzero(ids == k)
        fold[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return fold


def _internal(dataset, ids: list[int]):
    """What the witnesses read: prompt / chosen / rejected and the annotator as an integer id (so that every
    trainer maps it the same way, whatever rows it trained on)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {"prompt": dataset["prompt"], "chosen": dataset["chosen"], "rejected": dataset["rejected"], "annotator": ids}
    )


def audit(
    data,
    *,
    model: str = "toy",
    out=None,
    ref: str | None = None,
    witness_dir: str | None = None,
    loss: str = "dpo",
    annotator_column: str | None = None,
    folds: int = 2,
    beta: float | None = None,
    lr: float | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    seed: int = 0,
    robust: bool = True,
    calibrate: bool = True,
    bootstrap: int = 1000,
    split: str = "train",
    top: int = 20,
    progress: bool = True,
) -> AuditResult:
    """Audit ``data`` (a path: JSONL / JSON / CSV / parquet, a ``datasets`` folder or Hub id; or a Dataset /
    dict of columns / list of rows) with witnesses trained from ``model`` (module doc). ``robust=False``
    trains plain base-loss witnesses (a baseline); ``calibrate=False`` skips the temperature (eq. 4 on the
    raw log-odds). Returns an :class:`AuditResult`; with ``out`` also writes the files there."""
    from rpo.data.files import read_preferences
    from rpo.data.schema import identical_rows

    t0 = time.perf_counter()
    dataset, info = read_preferences(data, annotator_column=annotator_column, split=split)
    model_ref = witness.resolve_model(model, what="--model", seed=seed)
    ref_ref = witness.resolve_model(ref, what="--ref") if ref else None
    wit_ref = witness.resolve_model(witness_dir, what="--witness") if witness_dir else None
    settings = resolve(
        model_ref.toy,
        loss=loss,
        beta=beta,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        folds=1 if wit_ref else folds,
        robust=robust,
        calibrate=calibrate,
        bootstrap=bootstrap,
    )
    if ref_ref and loss in ("simpo", "cpo"):
        raise ValueError(f"--ref: loss {loss!r} is reference-free; drop --ref")
    ids, names = info["ids"], info["names"]
    k = len(names)
    digest = data_hash(dataset, ids, names)
    warns = [IN_SAMPLE] if settings.folds == 1 else []
    for w in warns:
        warnings.warn(w, stacklevel=2)
    key_material = {
        "version": VERSION,
        "data": digest,
        "settings": settings.to_dict(),
        "model": model_ref.identity,
        "ref": ref_ref.identity if ref_ref else None,
        "witness": wit_ref.identity if wit_ref else None,
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:16]
    scratch = None
    if out is None:
        scratch = tempfile.mkdtemp(prefix="rpo-audit-")
        work = Path(scratch)
    else:
        work = Path(out) / ".work" / key
    try:
        d, timing = _score(dataset, ids, k, settings, work, model_ref, ref_ref, wit_ref, key_material, progress)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    identical = identical_rows(dataset)  # no preference: d = 0, so w = eta whatever the witness
    result = _estimate(
        d, ids, names, settings, info, digest, model_ref, ref_ref, wit_ref, key, warns, timing, t0, identical
    )
    if out is not None:
        from rpo.audit.report import write_outputs

        write_outputs(Path(out), result, dataset, top=top)
    return result


def _score(dataset, ids, k, settings, work: Path, model_ref, ref_ref, wit_ref, key_material, progress):
    """Out-of-fold (or in-sample) log-odds of every row, fold by fold, cached in ``work``."""
    import datasets
    from tqdm.auto import tqdm

    from rpo.io import atomic_write_json

    data = _internal(dataset, ids)
    n = len(ids)
    fold = assign_folds(ids, settings.folds, settings.seed)
    d = np.zeros(n)
    loaded: dict = {}
    todo = [f for f in range(settings.folds) if not witness.all_cached(work / f"fold-{f}" / "scores", _rows(fold, f))]
    if todo:  # a model that cannot be loaded fails here, before anything is written
        loaded.update(_load_models(model_ref, ref_ref, wit_ref, settings))
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "key.json", key_material)
    timing = {"train_s": 0.0, "score_s": 0.0}
    from transformers.utils import logging as hf_logging

    bars, hf_bars = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # tokenising each chunk, writing each checkpoint: one audit bar instead
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its notes on checkpoint rotation are not the audit's business
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    bar = tqdm(total=n, desc="scoring pairs (eq. 2)", unit="pair", disable=not progress)
    try:
        for f in range(settings.folds):
            folder = work / f"fold-{f}"
            rows = _rows(fold, f)
            train_rows = rows if settings.folds == 1 else np.flatnonzero(fold != f).tolist()
            cache = folder / "scores"
            if f not in todo:
                d[rows] = witness.score_rows(None, data, rows, cache, bar=bar)  # all cached: no model needed
                continue
            tok = loaded["tok"]
            t = time.perf_counter()
            if wit_ref is not None:
                trainer = witness.scoring_trainer(
                    loaded["witness"], loaded["ref"], tok, settings, folder, data, num_annotators=k
                )
            elif (folder / "witness").is_dir():
                from rpo.models import load_saved

                policy, _ = load_saved(folder / "witness")
                trainer = witness.scoring_trainer(policy, loaded["ref"], tok, settings, folder, data, num_annotators=k)
            else:
                if progress:
                    bar.write(f"fold {f + 1}/{settings.folds}: training the witness on {len(train_rows)} pairs")
                trainer = witness.train_witness(
                    loaded["base"],
                    loaded["ref"],
                    tok,
                    settings,
                    folder,
                    data.select(train_rows),
                    num_annotators=k,
                    progress=progress,
                )
            timing["train_s"] += time.perf_counter() - t
            t = time.perf_counter()
            d[rows] = witness.score_rows(trainer, data, rows, cache, bar=bar)
            timing["score_s"] += time.perf_counter() - t
            shutil.rmtree(folder / "witness", ignore_errors=True)
            shutil.rmtree(folder / "scorer", ignore_errors=True)
    finally:
        bar.close()
        quiet.__exit__(None, None, None)
        if bars:
            datasets.enable_progress_bars()
        if hf_bars:
            hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)
    return d, timing


def _rows(fold: np.ndarray, f: int) -> list[int]:
    return np.flatnonzero(fold == f).tolist()


def _load_models(model_ref, ref_ref, wit_ref, settings) -> dict:
    base, tok = witness.load(model_ref, seed=settings.seed)
    if settings.loss in ("simpo", "cpo"):
        ref = None  # reference-free: no copy of the model held
    else:
        ref = witness.load(ref_ref)[0] if ref_ref else copy.deepcopy(base)
    out = {"base": base, "tok": tok, "ref": ref}
    if wit_ref is not None:
        out["witness"] = witness.load(wit_ref)[0]
    return out


def _estimate(d, ids, names, settings, info, digest, model_ref, ref_ref, wit_ref, key, warns, timing, t0, identical):
    import pandas as pd
    import torch

    t = time.perf_counter()
    k = len(names)
    ids_t = torch.tensor(ids, dtype=torch.long)
    fit = estimate.fit(torch.tensor(d), ids_t, k, eta0=settings.eta0, calibrate=settings.calibrate)
    counts = np.bincount(ids, minlength=k)
    if settings.bootstrap:
        low, high = estimate.bootstrap_eta(
            fit.temperature * torch.tensor(d), ids_t, k, fit.eta, reps=settings.bootstrap, seed=settings.seed
        )
    else:
        low = high = torch.full((k,), float("nan"), dtype=torch.float64)
    w = fit.w.numpy()
    pairs = pd.DataFrame({"row": np.arange(len(ids)), "annotator": [names[i] for i in ids], "d": d, "w": w})
    # ties in w (w rounds to 0 or 1 in float64 far from the boundary) broken by d: within one annotator the
    # order is then exactly d's
    pairs = pairs.sort_values(["w", "d", "row"], kind="stable").reset_index(drop=True)
    table = pd.DataFrame(
        {"annotator": names, "n": counts, "eta": fit.eta.numpy(), "eta_low": low.numpy(), "eta_high": high.numpy()}
    )
    table = table.sort_values(["eta", "annotator"], kind="stable").reset_index(drop=True)
    timing["estimate_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    summary = {
        "version": VERSION,
        "key": key,
        "data": {k_: info[k_] for k_ in ("source", "n", "annotator_column")} | {"sha256": digest},
        "model": model_ref.name,
        "ref": ref_ref.name if ref_ref else None,
        "witness": wit_ref.name if wit_ref else f"R-{settings.loss.upper()}" if settings.robust else settings.loss,
        "scoring": "in-sample" if settings.folds == 1 else f"cross-fitted, {settings.folds} folds",
        "settings": settings.to_dict(),
        "temperature": fit.temperature,
        "em_iterations": fit.iterations,
        "log_likelihood": fit.log_likelihood,
        "n_pairs": len(ids),
        "n_annotators": k,
        "n_below_half": int((w < 0.5).sum()),
        "expected_wrong": float((1 - w).sum()),
        "n_identical": len(identical),
        "annotators": table.to_dict(orient="records"),
        "warnings": list(warns),
        "timing": {k_: round(v, 3) for k_, v in timing.items()},
    }
    return AuditResult(pairs, table, summary)
