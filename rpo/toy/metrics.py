"""Toy-world metrics, used by every later table.

* :func:`preference_accuracy`: on clean test pairs, how often the policy's implicit reward ranks the
  truly better response first. DPO/IPO: ``beta * log(pi / pi_ref)`` (section 3; beta > 0 does not change
  the ranking, so it is not an argument); reference-free SimPO/CPO: the mean per-token log-prob.
* :func:`generation_quality`: on held-out prompts, the mean oracle reward of the policy's samples and the
  win rate against the reference policy's samples judged by the oracle (ties count half).
* :func:`reliability_error`: ``|eta_hat - eta_true|`` per annotator (Theorem 4.2, Figure 2).
* :func:`flag_auroc`: AUROC of ``1 - w`` against "was flipped" (beyond the paper).
* :func:`mean_ci`: mean and 95% t-interval half-width over seeds.

Sampling helpers (left padding) live in :mod:`rpo.toy.world` and are re-exported here.
"""

from __future__ import annotations

import numpy as np
import torch

from rpo.core.stats import t_interval
from rpo.toy.policy import encode_left_padded, sample_responses
from rpo.toy.tasks import score

__all__ = [
    "sequence_logps",
    "preference_accuracy",
    "win_rate",
    "generation_quality",
    "reliability_error",
    "flag_auroc",
    "mean_ci",
    "sample_responses",
    "encode_left_padded",
    "score",
]


@torch.no_grad()
def sequence_logps(
    model, tokenizer, prompts: list[str], completions: list[str], *, batch_size: int = 128, add_eos: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs and completion token counts, each shape (N,).

    ``prompt + completion (+ eos)`` tokenised without special tokens, as TRL's DPOTrainer does for plain
    text (it appends eos to chosen/rejected), right padded."""
    was_training = model.training
    model.eval()
    eos = [tokenizer.eos_token_id] if add_eos else []
    logps, lengths = [], []
    for s in range(0, len(prompts), batch_size):
        seqs, starts = [], []
        for p, c in zip(prompts[s : s + batch_size], completions[s : s + batch_size]):
            p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(c, add_special_tokens=False)["input_ids"] + eos
            seqs.append(p_ids + c_ids)
            starts.append(len(p_ids))
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        comp = torch.zeros((len(seqs), width), dtype=torch.bool)
        for r, (seq, st) in enumerate(zip(seqs, starts)):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
            comp[r, st : len(seq)] = True
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tok_lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        m = comp[:, 1:]
        logps.append((tok_lp * m).sum(-1))
        lengths.append(m.sum(-1))
    model.train(was_training)
    return torch.cat(logps), torch.cat(lengths)


def _true_orientation(pairs) -> tuple[list, list, list]:
    """(prompts, truly better, truly worse) from pair dicts or a Dataset, using ``true_*`` when present."""
    rows = pairs.to_list() if hasattr(pairs, "to_list") else list(pairs)
    return (
        [r["prompt"] for r in rows],
        [r.get("true_chosen", r["chosen"]) for r in rows],
        [r.get("true_rejected", r["rejected"]) for r in rows],
    )


def preference_accuracy(policy, tokenizer, pairs, *, reference=None, batch_size: int = 128) -> float:
    """Fraction of pairs whose implicit reward ranks the truly better response first (ties count half).

    With ``reference``: reward ``log pi(y|x) - log pi_ref(y|x)`` (DPO/IPO). Without (SimPO/CPO): the mean
    per-token log-prob ``log pi(y|x) / |y|``."""
    prompts, better, worse = _true_orientation(pairs)
    lp_b, len_b = sequence_logps(policy, tokenizer, prompts, better, batch_size=batch_size)
    lp_w, len_w = sequence_logps(policy, tokenizer, prompts, worse, batch_size=batch_size)
    if reference is not None:
        lp_b = lp_b - sequence_logps(reference, tokenizer, prompts, better, batch_size=batch_size)[0]
        lp_w = lp_w - sequence_logps(reference, tokenizer, prompts, worse, batch_size=batch_size)[0]
    else:
        lp_b, lp_w = lp_b / len_b.clamp(min=1), lp_w / len_w.clamp(min=1)
    return float(((lp_b > lp_w).float() + 0.5 * (lp_b == lp_w).float()).mean())


def win_rate(prompts: list, responses_a: list[str], responses_b: list[str], judge=score) -> float:
    """Fraction of prompts where ``judge`` scores A above B; ties count half."""
    if not (len(prompts) == len(responses_a) == len(responses_b)):
        raise ValueError(f"win_rate: {len(prompts)} prompts, {len(responses_a)} A and {len(responses_b)} B responses")
    if not prompts:
        raise ValueError("win_rate: no prompts")
    wins = 0.0
    for p, a, b in zip(prompts, responses_a, responses_b):
        sa, sb = judge(p, a), judge(p, b)
        wins += 1.0 if sa > sb else 0.5 if sa == sb else 0.0
    return wins / len(prompts)


def generation_quality(
    policy,
    tokenizer,
    prompts: list[str],
    *,
    reference_responses: list[str] | None = None,
    reference=None,
    temperature: float = 1.0,
    n: int = 1,
    max_new_tokens: int = 10,
    seed: int = 0,
    judge=score,
) -> dict:
    """``{"mean_reward", "win_rate", "exact"}`` of policy samples on ``prompts``, judged by ``judge``
    (``exact``: reward 1.0, the exact answer; in a dial world, the exact answer with the marker).

    The win rate is against ``reference_responses`` (one per prompt per sample, flattened as
    ``[prompt][sample]``), or against fresh samples of ``reference`` with a different seed. ``n`` samples per
    prompt lower the variance. ``win_rate`` is None when neither is given."""
    samples = sample_responses(
        policy, tokenizer, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed
    )
    flat_p = [p for p in prompts for _ in range(n)]
    flat_s = [s for ss in samples for s in ss]
    rewards = [judge(p, s) for p, s in zip(flat_p, flat_s)]
    if reference_responses is None and reference is not None:
        ref = sample_responses(
            reference, tokenizer, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + 7919
        )
        reference_responses = [s for ss in ref for s in ss]
    wr = win_rate(flat_p, flat_s, reference_responses, judge=judge) if reference_responses is not None else None
    return {
        "mean_reward": float(np.mean(rewards)),
        "win_rate": wr,
        "exact": float(np.mean([r == 1.0 for r in rewards])),
    }


def reliability_error(eta_hat, eta_true) -> dict:
    """``{annotator: |eta_hat - eta_true|}``; both dicts keyed by annotator (or equal-length sequences)."""
    if not isinstance(eta_hat, dict):
        eta_hat, eta_true = dict(enumerate(eta_hat)), dict(enumerate(eta_true))
    missing = set(eta_true) - set(eta_hat)
    if missing:
        raise ValueError(f"reliability_error: no estimate for annotator(s) {sorted(map(str, missing))}")
    return {k: abs(float(eta_hat[k]) - float(v)) for k, v in eta_true.items()}


def eta_agreement(eta_hat, eta_true) -> dict:
    """How well K estimates place and order K annotators (issue 13): ``spearman`` (rank correlation), ``mae``
    and ``worst`` (mean and largest absolute error); both (K,) in the same annotator order."""
    from scipy.stats import spearmanr

    h, t = np.asarray(eta_hat, dtype=float), np.asarray(eta_true, dtype=float)
    if h.shape != t.shape or h.ndim != 1:
        raise ValueError(f"eta_agreement: eta_hat has shape {h.shape}, eta_true {t.shape}; expected equal (K,)")
    err = np.abs(h - t)
    return {"spearman": float(spearmanr(h, t).statistic), "mae": float(err.mean()), "worst": float(err.max())}


def flag_auroc(w, is_flipped) -> float:
    """AUROC of ``1 - w`` as a detector of flipped labels (0.5 = chance, 1 = perfect); NaN when the
    labels hold a single class (AUROC undefined)."""
    from sklearn.metrics import roc_auc_score

    w = np.asarray(w, dtype=float)
    y = np.asarray(is_flipped, dtype=bool)
    if w.shape != y.shape:
        raise ValueError(f"flag_auroc: w has shape {w.shape}, is_flipped {y.shape}")
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, 1.0 - w))


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """``(mean, half-width)`` of the Student-t interval over independent runs (half-width NaN for n < 2)."""
    if len(values) == 0:
        raise ValueError("mean_ci: no values")
    return t_interval(values, confidence)
