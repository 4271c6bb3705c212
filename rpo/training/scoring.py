"""Scoring passes: the trainer's model in eval mode over a whole prepared dataset, sharded over processes and
gathered in order; what a full E-step (eq. 4), the log-odds of eq. 2 and exact EM at a fixed model read."""

from __future__ import annotations

import torch

from rpo.training.collator import ANNOTATOR_ID
from rpo.training.compat import collator_columns


def score_pass(trainer, dataset, batch_size, score, desc: str) -> list[torch.Tensor]:
    """One eval-mode pass over a prepared (tokenised) dataset, or a list of its rows: ``score(loss_wl, loss_lw,
    ids)`` per batch (a tensor or a tuple of (B,) tensors), gathered over processes in order and concatenated."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from rpo.core.losses import pair_losses

    keep = list(dict.fromkeys([*collator_columns(trainer), ANNOTATOR_ID]))  # image data: its raw columns
    if isinstance(dataset, list):  # python rows (a small set tokenised for scoring, compat.prepared)
        dataset = [{k: row[k] for k in keep if k in row} for row in dataset]
    elif dataset.column_names is not None:  # a mapped IterableDataset may not know its columns
        dataset = dataset.select_columns([c for c in keep if c in dataset.column_names])
    loader = DataLoader(
        dataset,
        batch_size=batch_size or trainer.args.per_device_eval_batch_size,
        collate_fn=trainer.data_collator,
        shuffle=False,
    )
    loader = trainer.accelerator.prepare_data_loader(loader)
    model, was_training = trainer.model_wrapped, trainer.model.training
    trainer.model.eval()
    out = []
    try:
        quiet = trainer.args.disable_tqdm or not trainer.accelerator.is_local_main_process
        for batch in tqdm(loader, desc=desc, disable=quiet):
            logps, _, _ = trainer._forward(model, batch)
            loss_wl, loss_lw = pair_losses(trainer.args.pref_loss, *logps, **trainer._loss_options())
            parts = score(loss_wl, loss_lw, batch[ANNOTATOR_ID])
            parts = parts if isinstance(parts, tuple) else (parts,)
            out.append([trainer.accelerator.gather_for_metrics(p).cpu() for p in parts])
    finally:
        trainer.model.train(was_training)
    if not out:
        return [torch.zeros(0)] * 2
    return [torch.cat(cols) for cols in zip(*out)]
