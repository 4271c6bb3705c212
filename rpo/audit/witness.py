"""The witness: the model whose eq. 2 log-odds say which labels look wrong.

* :func:`resolve_model` checks a ``--model`` / ``--ref`` / ``--witness`` argument before anything is loaded
  or written: ``toy`` / ``small`` (:func:`rpo.models.load_model`), a saved folder (:func:`rpo.models.load_saved`;
  one without a tokenizer is refused unless it is a toy model, whose character tokenizer is rebuilt), or
  on a cluster a Hub id.
* :func:`train_witness` trains an R-X witness (RPO on the chosen base loss, :class:`rpo.training.RobustTrainer`)
  on some rows, checkpointing so a killed audit resumes inside the training.
* :func:`score_rows` streams rows through :meth:`RobustTrainer.log_odds` in chunks, each cached as it is done,
  so memory does not grow with the data set and a killed audit resumes at the chunk it stopped at.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from rpo.io import atomic_write_json, read_json

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
PROFILES = ("toy", "small")
CHUNK = 512  # rows tokenised and scored per cached chunk


@dataclass(frozen=True)
class ModelRef:
    """A model argument, resolved: ``kind`` profile | folder | hub, ``name`` as given, ``toy`` (a toy model),
    ``identity`` (what keys the cache: the profile and seed, or the folder's files with sizes and times)."""

    kind: str
    name: str
    toy: bool
    identity: dict


def _toy_vocab_size() -> int:
    from rpo.models import TOY_CHARS, TOY_SPECIALS

    return len(TOY_SPECIALS) + len(TOY_CHARS)


def resolve_model(arg: str, *, what: str = "--model", seed: int = 0) -> ModelRef:
    """Check a model argument without loading it; a ``ValueError`` / ``FileNotFoundError`` names the folder."""
    arg = str(arg)
    if arg in PROFILES:
        return ModelRef("profile", arg, arg == "toy", {"profile": arg, "seed": seed if arg == "toy" else None})
    path = Path(arg)
    if path.is_dir():
        config = path / "config.json"
        if not config.exists():
            raise FileNotFoundError(f"{what} {path}: holds no saved model (no config.json)")
        cfg = read_json(config)
        toy = cfg.get("model_type") == "llama" and cfg.get("vocab_size") == _toy_vocab_size()
        if not any((path / f).exists() for f in TOKENIZER_FILES) and not toy:
            raise ValueError(
                f"{what} {path}: the folder has no tokenizer (none of {list(TOKENIZER_FILES)}) and is not a toy "
                "model; save the tokenizer beside the model (tokenizer.save_pretrained(folder))"
            )
        files = sorted(p for p in path.iterdir() if p.is_file())
        identity = {
            "folder": str(path.resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files],
        }
        return ModelRef("folder", str(path), toy, identity)
    if path.exists() or arg.startswith((".", "/")) or arg.count("/") != 1:
        raise FileNotFoundError(f"{what} {arg}: not a model folder, nor one of {list(PROFILES)}, nor a Hub id")
    return ModelRef("hub", arg, False, {"hub": arg})


def load(ref: ModelRef, *, seed: int = 0):
    """``(model, tokenizer)`` of a resolved model argument."""
    from rpo.models import load_model, load_saved

    if ref.kind == "profile":
        return load_model(ref.name, seed=seed)
    if ref.kind == "folder":
        return load_saved(ref.name)
    try:
        return load_model("paper", name=ref.name)
    except OSError as e:
        raise ValueError(f"{ref.name}: cannot load this Hub model (offline? HF_HUB_OFFLINE is set): {e}") from None


def _device_args() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return dict(use_cpu=not cuda, bf16=bool(cuda and torch.cuda.is_bf16_supported()), gradient_checkpointing=False)


def trainer_config(settings, output_dir, *, num_annotators: int, progress: bool, steps_estimate: int = 0):
    """The witness's :class:`RobustConfig`: RPO on ``settings.loss`` with the paper's eta0 0.9 and alpha 0.1,
    a constant learning rate, checkpoints four times per training (kept: the last)."""
    from rpo.training import RobustConfig

    return RobustConfig(
        output_dir=str(output_dir),
        pref_loss=settings.loss,
        robust=settings.robust,
        eta0=settings.eta0,
        ema_alpha=0.1,
        beta=settings.beta,
        learning_rate=settings.lr,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        max_length=settings.max_length,
        lr_scheduler_type="constant",
        warmup_steps=0,
        seed=settings.seed,
        num_annotators=num_annotators,
        annotator_column="annotator",
        report_to=[],
        logging_strategy="no",
        save_strategy="steps",
        save_steps=max(1, math.ceil(steps_estimate / 4)),
        save_total_limit=1,
        disable_tqdm=not progress,
        **_device_args(),
    )


def make_trainer(policy, ref_model, tok, settings, output_dir, train_dataset, *, num_annotators, progress):
    from rpo.training import RobustTrainer

    steps = math.ceil(len(train_dataset) / settings.batch_size) * settings.epochs
    args = trainer_config(
        settings, output_dir, num_annotators=num_annotators, progress=progress, steps_estimate=int(math.ceil(steps))
    )
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer = RobustTrainer(
        policy,
        ref_model=ref_model if args.method.needs_reference else None,
        args=args,
        train_dataset=train_dataset,
        processing_class=tok,
    )
    trainer.remove_callback(PrinterCallback)  # no log dicts on stdout: the audit reports its own numbers
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_bar_only()())
    return trainer


def _bar_only():
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        """Trainer's progress bar without its printed log dicts."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return BarOnly


def train_witness(base, ref_model, tok, settings, folder: Path, train_dataset, *, num_annotators, progress):
    """A trained witness saved in ``folder/witness`` (atomically: a rename), from a copy of ``base``; resumes
    from ``folder/train``'s last checkpoint when a killed audit left one. Returns the trainer."""
    from transformers.trainer_utils import get_last_checkpoint

    train_dir = folder / "train"
    trainer = make_trainer(
        copy.deepcopy(base),
        ref_model,
        tok,
        settings,
        train_dir,
        train_dataset,
        num_annotators=num_annotators,
        progress=progress,
    )
    last = get_last_checkpoint(str(train_dir)) if train_dir.is_dir() else None
    if last:
        logger.info("resuming the witness of %s from %s", folder.name, last)
    trainer.train(resume_from_checkpoint=last)
    tmp = folder / "witness.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tmp.rename(folder / "witness")
    shutil.rmtree(train_dir, ignore_errors=True)  # checkpoints: the saved witness replaces them
    return trainer


def scoring_trainer(policy, ref_model, tok, settings, folder: Path, data, *, num_annotators):
    """A trainer that only scores (``log_odds``): TRL wants a training set, so it gets a few rows."""
    small = data.select(range(min(len(data), 8)))
    return make_trainer(
        policy, ref_model, tok, settings, folder / "scorer", small, num_annotators=num_annotators, progress=False
    )


def score_rows(trainer, data, rows: list[int], cache: Path, *, bar=None, chunk: int | None = None) -> list[float]:
    """Eq. 2's log-odds ``d`` of ``data``'s ``rows``, ``chunk`` rows at a time, each chunk's result cached as
    ``cache/chunk-XXXXX.json`` (atomically) and read back on a rerun. ``bar``: a tqdm to advance."""
    chunk = chunk or CHUNK
    cache.mkdir(parents=True, exist_ok=True)
    if trainer is not None:
        trainer.args.disable_tqdm = True  # one bar for the whole audit, not one per chunk
    out: list[float] = []
    for i, first in enumerate(range(0, len(rows), chunk)):
        part = rows[first : first + chunk]
        path = cache / f"chunk-{i:05d}.json"
        rec = _read_chunk(path, part)
        if rec is None:
            if trainer is None:
                raise RuntimeError(f"{path}: not scored yet and no witness given")
            d, _ = trainer.log_odds(data.select(part))
            rec = {"rows": part, "d": [float(x) for x in d.tolist()]}
            atomic_write_json(path, rec, indent=None, sort_keys=False)
        out.extend(rec["d"])
        if bar is not None:
            bar.update(len(part))
    return out


def all_cached(cache: Path, rows: list[int], chunk: int | None = None) -> bool:
    """Whether every chunk of ``rows`` is already scored in ``cache`` (then no model is needed)."""
    chunk = chunk or CHUNK
    return all(
        _read_chunk(cache / f"chunk-{i:05d}.json", rows[first : first + chunk]) is not None
        for i, first in enumerate(range(0, len(rows), chunk))
    )


def _read_chunk(path: Path, rows: list[int]):
    if not path.exists():
        return None
    try:
        rec = read_json(path)
    except ValueError:
        return None  # unreadable (cannot happen with atomic writes, but never trust a cache): score again
    if rec.get("rows") != rows or len(rec.get("d", ())) != len(rows):
        return None
    return rec
