"""Noisy copies on the paper path (section 5.4): a recipe's dataset relabelled by annotators with known
truth before training, the truth kept aside for ``eta_true``.

:class:`RecipeArguments` is TRL's ``ScriptArguments`` plus the noise settings, so a recipe (or the command
line) states them next to the dataset they apply to:

* ``noise_layout``: ``none`` (train on the dataset's own labels, the default), ``single`` (one annotator,
  section 5.4 a), ``two`` (two full copies, annotator ``a1`` clean and ``a2`` at the rate, 5.4 b) or
  ``pool`` (``noise_annotators`` annotators with reliabilities from :func:`rpo.data.noise.pool_reliabilities`
  drawn with ``noise_pool_seed``, each labelling a disjoint share);
* ``noise_rate``: the flip rate of the (noisy) annotator, in [0, 0.5]; ``noise_kind``: ``symmetric`` or
  ``bt`` (needs the oracle's reward margins, a ``true_margin`` column); ``noise_seed``: the flips' seed.

:func:`inject_noise` applies them (:func:`rpo.data.noise.apply_layout`) to the training split only (an
evaluation split stays clean) and returns what the trainer may see (:func:`rpo.data.schema.public_view`)
and the truth; ``rpo.training.launch`` writes the truth to ``output_dir/noise_truth.json`` (layout, the
measured agreement of every annotator, ``eta_true``) and ``noise_truth.jsonl`` (per training row: its
annotator, whether it was flipped, its flip probability). The dataset's own labels are the truth: in
section 5.4 they are GPT-4o's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments

NOISE_LAYOUTS = ("none", "single", "two", "pool")
DATASET_LOADERS = ("auto", "ultrafeedback", "multipref", "plain")
NOISE_KINDS = ("symmetric", "bt")
TRUTH_FILE = "noise_truth.json"
TRUTH_ROWS_FILE = "noise_truth.jsonl"
NOISE_ANNOTATOR_COLUMN = "annotator"  # the column rpo.data.noise writes


@dataclass
class RecipeArguments(ScriptArguments):
    """``trl.ScriptArguments`` (the dataset) plus how it is read and the noise injected into its training
    split. ``dataset_loader``: ``auto`` (the known Hub ids through their loaders, anything else through
    ``datasets.load_dataset``), ``ultrafeedback`` / ``multipref`` (that dataset's loader, also for a local
    copy in its layout) or ``plain`` (``datasets.load_dataset``: prompt / chosen / rejected already)."""

    dataset_loader: str = field(default="auto", metadata={"help": "auto | ultrafeedback | multipref | plain."})

    noise_layout: str = field(default="none", metadata={"help": "none | single | two | pool (section 5.4)."})
    noise_rate: float = field(default=0.0, metadata={"help": "Flip rate of the noisy annotator, in [0, 0.5]."})
    noise_kind: str = field(default="symmetric", metadata={"help": "symmetric | bt (needs true_margin)."})
    noise_seed: int = field(default=0, metadata={"help": "Seed of the flips (and of the pool's shares)."})
    noise_annotators: int | None = field(default=None, metadata={"help": "K of the pool layout (1 to 256)."})
    noise_pool_seed: int = field(default=0, metadata={"help": "Seed of the pool's reliabilities."})

    def __post_init__(self):
        if hasattr(super(), "__post_init__"):
            super().__post_init__()
        if self.dataset_loader not in DATASET_LOADERS:
            raise ValueError(f"dataset_loader must be one of {DATASET_LOADERS}, got {self.dataset_loader!r}")
        check_noise_settings(self)


def check_noise_settings(args) -> None:
    """A noise setting a recipe cannot honour is refused before anything is loaded."""
    layout, rate, kind, k = args.noise_layout, args.noise_rate, args.noise_kind, args.noise_annotators
    if layout not in NOISE_LAYOUTS:
        raise ValueError(f"noise_layout must be one of {NOISE_LAYOUTS}, got {layout!r}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise_kind must be one of {NOISE_KINDS}, got {kind!r}")
    if not 0.0 <= rate <= 0.5:  # also refuses NaN
        raise ValueError(f"noise_rate must be in [0, 0.5], got {rate}")
    if kind == "bt" and rate >= 0.5:
        raise ValueError(f"noise_kind 'bt' needs noise_rate < 0.5, got {rate}")
    if layout == "none" and rate > 0:
        raise ValueError(f"noise_rate={rate} needs a noise_layout (single, two or pool); it is 'none'")
    if layout == "pool":
        if k is None:
            raise ValueError("noise_layout 'pool' needs noise_annotators (K, 1 to 256)")
        if rate:
            raise ValueError(f"noise_layout 'pool' draws each annotator's rate: leave noise_rate at 0, got {rate}")
    elif k is not None:
        raise ValueError(f"noise_annotators is for noise_layout 'pool', not {layout!r}")


def inject_noise(dataset, args, *, annotator_column: str = NOISE_ANNOTATOR_COLUMN, name: str = "train split"):
    """``(public dataset, truth, rows)`` for ``args`` (a :class:`RecipeArguments`); with ``noise_layout``
    ``none`` the dataset is returned as is and ``truth`` / ``rows`` are None. Refused: a dataset that already
    names its annotators (relabelling would hide them), a trainer reading another annotator column than the
    one written here, Bradley-Terry noise without reward margins, a pool larger than the data."""
    check_noise_settings(args)
    if args.noise_layout == "none":
        return dataset, None, None
    from rpo.data.noise import apply_layout, true_reliability
    from rpo.data.schema import public_view

    if annotator_column != NOISE_ANNOTATOR_COLUMN:
        raise ValueError(
            f"noise_layout {args.noise_layout!r} writes the annotators to column {NOISE_ANNOTATOR_COLUMN!r}, "
            f"but the trainer reads annotator_column={annotator_column!r}: set annotator_column: annotator"
        )
    if NOISE_ANNOTATOR_COLUMN in dataset.column_names:
        raise ValueError(
            f"{name} already has an {NOISE_ANNOTATOR_COLUMN!r} column: noise layouts relabel a dataset without "
            "annotators (set noise_layout: none to train on its own annotators)"
        )
    if args.noise_kind == "bt" and "true_margin" not in dataset.column_names:
        raise ValueError(
            f"noise_kind 'bt' needs the oracle's reward margins (a 'true_margin' column); {name} has none "
            f"(columns {dataset.column_names}): use noise_kind symmetric"
        )
    noisy = apply_layout(
        dataset,
        args.noise_layout,
        args.noise_rate,
        kind=args.noise_kind,
        seed=args.noise_seed,
        num_annotators=args.noise_annotators,
        pool_seed=args.noise_pool_seed,
    )
    eta_true = true_reliability(noisy)
    flipped = noisy["is_flipped"]
    truth = {
        "noise_layout": args.noise_layout,
        "noise_rate": args.noise_rate,
        "noise_kind": args.noise_kind,
        "noise_seed": args.noise_seed,
        "noise_annotators": args.noise_annotators,
        "noise_pool_seed": args.noise_pool_seed,
        "annotators": sorted(eta_true),
        "eta_true": {k: eta_true[k] for k in sorted(eta_true)},
        "n_rows": len(noisy),
        "n_flipped": int(sum(flipped)),
    }
    rows = [
        {"row": i, "annotator": a, "is_flipped": bool(f), "true_flip_prob": p}
        for i, (a, f, p) in enumerate(zip(noisy["annotator"], flipped, noisy["true_flip_prob"]))
    ]
    return public_view(noisy), truth, rows
