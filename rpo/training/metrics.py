"""What a training step logs: DPOTrainer's reward / log-prob metrics plus RPO's ``w/mean`` and
``w/frac_below_0.5``, from one gather and one host sync per micro-batch (a few dozen floats; each tiny
device op would cost more). Logging only logs: the gathered ``(w, annotator)`` columns are returned to
the trainer, which hands them to the reliability tracker."""

from __future__ import annotations

import torch

METRIC_NAMES = ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected")


def gather_columns(accelerator, beta: float, logps, w, ids, stats=None) -> list[tuple]:
    """The global batch's implicit rewards, log-probs and (when given) w and annotator ids, as host columns,
    followed by the (B, k) ``stats`` columns (:func:`rpo.training.forward.token_stats`) in the same gather.
    Every rank gets every process's rows; padding duplicates of an uneven last batch are dropped
    (``gather_for_metrics``)."""
    chosen_logps, rejected_logps, _, _, ref_chosen, ref_rejected = logps
    chosen_logps, rejected_logps = chosen_logps.detach().float(), rejected_logps.detach().float()
    cols = [
        beta * (chosen_logps - (0 if ref_chosen is None else ref_chosen)),
        beta * (rejected_logps - (0 if ref_rejected is None else ref_rejected)),
        chosen_logps,
        rejected_logps,
    ]
    if w is not None:
        cols.append(w.float())
    if ids is not None:
        cols.append(ids.float())  # exact: ids < 2**24
    table = torch.stack(cols, dim=1)
    if stats is not None:
        table = torch.cat([table, stats.to(table.dtype)], dim=1)
    rows = accelerator.gather_for_metrics(table).tolist()
    return list(zip(*rows))


def log_batch(metrics: dict, columns: list[tuple], with_w: bool) -> None:
    """Append one micro-batch's means to TRL's ``_metrics[mode]`` (``log()`` averages them)."""
    if not columns:
        return
    n = len(columns[0])
    for name, column in zip(METRIC_NAMES, columns):
        metrics[name].append(sum(column) / n)
    metrics["rewards/margins"].append(sum(c - r for c, r in zip(columns[0], columns[1])) / n)
    metrics["rewards/accuracies"].append(sum(c > r for c, r in zip(columns[0], columns[1])) / n)
    if with_w:
        metrics["w/mean"].append(sum(columns[4]) / n)
        metrics["w/frac_below_0.5"].append(sum(x < 0.5 for x in columns[4]) / n)


TOKEN_STATS = 8  # columns of rpo.training.forward.token_stats


def log_token_stats(metrics: dict, stats: list[tuple], total_tokens: int, train: bool, tp_size: int = 1) -> int:
    """DPOTrainer's token metrics from the gathered :func:`rpo.training.forward.token_stats` columns:
    ``entropy``, ``logits/chosen``, ``logits/rejected``, ``mean_token_accuracy`` (token-weighted over the
    global batch, 0 without tokens) and ``num_tokens`` (the running count of training tokens, as
    DPOTrainer's ``_total_train_tokens``). Returns the new running count."""
    if not stats:
        return total_tokens
    ent, tok, logit_c, tok_c, logit_r, tok_r, top1_c, attn = (sum(c) for c in stats)
    metrics["entropy"].append(ent / tok if tok > 0 else 0.0)
    metrics["logits/chosen"].append(logit_c / tok_c if tok_c > 0 else 0.0)
    metrics["logits/rejected"].append(logit_r / tok_r if tok_r > 0 else 0.0)
    metrics["mean_token_accuracy"].append(top1_c / tok_c if tok_c > 0 else 0.0)
    if train:
        total_tokens += int(attn) // tp_size
    metrics["num_tokens"] = [total_tokens]
    return total_tokens
