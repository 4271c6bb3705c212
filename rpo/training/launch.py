"""Train one recipe: ``python -m rpo.training.launch recipe.yaml [--key value ...]``.

On a cluster, through accelerate (DeepSpeed ZeRO-3 for the paper's 7B/8B recipes)::

    accelerate launch --config_file recipes/accelerate/zero3.yaml -m rpo.training.launch \
        recipes/mistral-7b-instruct/r-dpo.yaml

The recipe is parsed by TRL's ``TrlParser`` into ``(ScriptArguments, RobustConfig, ModelConfig)``
(:mod:`rpo.training.recipes`); command-line ``--key value`` pairs override it. Then:

* model: a Hub id or local folder is passed to the trainer *by name*, with ``model_init_kwargs`` from
  ``ModelConfig`` (dtype, attention, revision), as TRL's own ``trl dpo`` script does: under ZeRO-3 TRL then
  builds the policy (and the DPO/IPO reference) already sharded. ``rpo:toy`` / ``rpo:small`` name the
  offline profiles of :func:`rpo.models.load_model` (the reference is a second, identical load).
* data: the paper's UltraFeedback sets go through :func:`rpo.data.loaders.load_ultrafeedback` (normalised
  to prompt / chosen / rejected; no annotator column, so K = 1 as in the paper), ``allenai/multipref``
  through :func:`rpo.data.multipref.load_multipref` (one row per annotation, its annotator named);
  ``dataset_loader: ultrafeedback | multipref`` reads a local copy in those datasets' own layout (what
  the tests use). Anything else (``dataset_loader: plain``, or ``auto`` for other names) is read with
  ``datasets.load_dataset`` (a Hub id, or a local ``.json``/``.jsonl``/``.parquet`` file) and must already
  hold prompt / chosen / rejected (and optionally the annotator column).
* noise: with ``noise_layout`` other than ``none`` (:mod:`rpo.training.noisy`) the training split is
  relabelled by annotators with known truth before training (the evaluation split stays clean); the
  trainer sees only the public columns, and the truth goes to ``output_dir/noise_truth.json`` and
  ``noise_truth.jsonl`` (and ``eta_true`` into ``train_summary.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

SUMMARY_FILE = "train_summary.json"
LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def load_split(script_args, split: str):
    """One split of ``script_args.dataset_name`` as a ``datasets.Dataset`` (see module docstring)."""
    name = script_args.dataset_name
    if not name:
        raise ValueError("the recipe has no dataset_name: set it in the recipe or pass --dataset_name")
    from rpo.data.loaders import ULTRAFEEDBACK, load_ultrafeedback
    from rpo.data.multipref import MULTIPREF, load_multipref

    by_id = {hub_id: key for key, hub_id in ULTRAFEEDBACK.items()}
    loader = getattr(script_args, "dataset_loader", "auto")
    if loader == "auto":
        loader = "ultrafeedback" if name in by_id else "multipref" if name == MULTIPREF else "plain"
    if loader == "ultrafeedback":  # a Hub id, or a local copy in the Hub's layout (file or folder)
        if name in by_id:
            return load_ultrafeedback(by_id[name], split=split)
        return load_ultrafeedback("mistral", split=split, path=name)  # the key only names the format
    if loader == "multipref":
        return load_multipref(split=split, path=None if name == MULTIPREF else name)
    from datasets import load_dataset

    suffix = Path(name).suffix
    if suffix in LOCAL_SUFFIXES:  # a local file holds one split: it serves whichever split is asked for
        if not Path(name).exists():
            raise FileNotFoundError(f"dataset_name {name!r}: no such file")
        return load_dataset(LOCAL_SUFFIXES[suffix], data_files=name, split="train")
    return load_dataset(name, name=script_args.dataset_config, split=split)


def build_model(model_args, training_args):
    """``(model, ref_model, tokenizer)``: a name for the trainer to load, or instances for ``rpo:`` profiles."""
    name = model_args.model_name_or_path
    if not name:
        raise ValueError("the recipe has no model_name_or_path")
    if name.startswith("rpo:"):
        import torch

        from rpo.models import load_model

        profile = name.removeprefix("rpo:")
        dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else torch.float32
        model, tok = load_model(profile, seed=training_args.seed, dtype=dtype)
        ref = None
        if training_args.method.needs_reference and not model_args.use_peft:
            ref = load_model(profile, seed=training_args.seed, dtype=dtype)[0]  # identical initial weights
        return model, ref, tok
    init = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        trust_remote_code=training_args.trust_remote_code,
    )
    training_args.model_init_kwargs = {**init, **(training_args.model_init_kwargs or {})}
    return name, None, None


def write_truth(output_dir, truth: dict, rows: list[dict]) -> Path:
    """The injected noise's truth beside the run (main process only): ``noise_truth.json`` and ``.jsonl``."""
    from rpo.io import atomic_write_json, atomic_write_jsonl
    from rpo.training.noisy import TRUTH_FILE, TRUTH_ROWS_FILE

    out = Path(output_dir)
    atomic_write_jsonl(out / TRUTH_ROWS_FILE, rows, sort_keys=True)
    return atomic_write_json(out / TRUTH_FILE, truth, sort_keys=False)


def build_trainer(script_args, training_args, model_args):
    """A :class:`rpo.RobustTrainer` for parsed recipe arguments (nothing is trained yet); with a noise
    layout, the training split is relabelled first and its truth written to ``output_dir``."""
    from accelerate import PartialState
    from trl import get_peft_config

    from rpo.training.noisy import inject_noise
    from rpo.training.trainer import RobustTrainer

    model, ref, tok = build_model(model_args, training_args)
    evaluate = training_args.eval_strategy != "no"  # IntervalStrategy is a str enum
    with PartialState().main_process_first():  # rank 0 downloads and caches; the others then read the cache
        train = load_split(script_args, script_args.dataset_train_split)
        eval_ds = load_split(script_args, script_args.dataset_test_split) if evaluate else None
    # every rank draws the same flips (fixed seed), so every rank trains on the same relabelled data
    train, truth, rows = inject_noise(
        train, script_args, annotator_column=training_args.annotator_column, name=script_args.dataset_name
    )
    if PartialState().is_main_process:
        if truth is not None:
            write_truth(training_args.output_dir, truth, rows)
        else:  # a clean run in a folder a noisy one used: its truth would be read as this run's
            from rpo.training.noisy import TRUTH_FILE, TRUTH_ROWS_FILE

            for stale in (TRUTH_FILE, TRUTH_ROWS_FILE):
                Path(training_args.output_dir, stale).unlink(missing_ok=True)
    return RobustTrainer(
        model=model,
        ref_model=ref,
        args=training_args,
        train_dataset=train,
        eval_dataset=eval_ds,
        processing_class=tok,
        peft_config=get_peft_config(model_args),
    )


def eta_on_every_rank(trainer):
    """eta as held by each process, shape (world, K); raises RuntimeError if any two ranks disagree.

    Every rank applies eq. 7 to the same gathered weights, so the rows must be identical: a difference
    means the ranks' E-steps diverged and the run is not the algorithm it claims to be."""
    import torch

    acc = trainer.accelerator
    etas = acc.gather(trainer.eta.to(acc.device, torch.float64).unsqueeze(0)).cpu()
    if not torch.equal(etas, etas[:1].expand_as(etas)):
        raise RuntimeError(f"eta differs across ranks: {etas.tolist()}")
    return etas


def write_summary(trainer, etas) -> Path:
    """``output_dir/train_summary.json`` (main process, atomic): final eta per annotator and per rank, the
    eta trajectory (one entry per logged step) and the full log history."""
    from rpo.io import atomic_write_json

    out = Path(trainer.args.output_dir) / SUMMARY_FILE
    history = trainer.state.log_history
    names = trainer.annotator_names or []
    trajectory = [[h[f"eta/{n}"] for n in names] for h in history if names and f"eta/{names[0]}" in h]
    summary = {
        "annotators": names,
        "eta": trainer.eta.tolist(),
        "eta_true": _eta_true(trainer.args.output_dir, names),
        "eta_per_rank": etas.tolist(),
        "world_size": trainer.accelerator.num_processes,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "eta_trajectory": trajectory,
        "log_history": history,
    }
    if trainer.accelerator.is_main_process:
        atomic_write_json(out, summary, sort_keys=False)
    return out


def _eta_true(output_dir, names: list[str]) -> list[float] | None:
    """Each annotator's measured agreement from ``noise_truth.json`` (None without injected noise)."""
    from rpo.io import read_json
    from rpo.training.noisy import TRUTH_FILE

    path = Path(output_dir) / TRUTH_FILE
    if not path.exists():
        return None
    eta_true = read_json(path)["eta_true"]
    return [eta_true.get(n) for n in names]


def main(argv=None) -> int:
    from rpo.training.recipes import load_recipe, normalise_argv

    argv = normalise_argv(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        print("usage: python -m rpo.training.launch recipe.yaml [--key value ...]", file=sys.stderr)
        return 2
    i = argv.index("--config")
    recipe, overrides = argv[i + 1], argv[:i] + argv[i + 2 :]
    script_args, training_args, model_args = load_recipe(recipe, overrides)
    trainer = build_trainer(script_args, training_args, model_args)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    etas = eta_on_every_rank(trainer)
    summary = write_summary(trainer, etas)
    trainer.accelerator.print(
        f"saved to {training_args.output_dir}; eta = {trainer.eta.tolist()} "
        f"(identical on {len(etas)} rank(s)); summary: {summary}"
    )
    # Tear the process group down before the interpreter exits: left to interpreter shutdown, gloo's
    # threads can abort a finished rank ("terminate called without an active exception"), seen once in CI.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
