"""From a witness's log-odds to the audit's numbers: eta by exact EM at the fixed witness (eq. 4 with fixed
log-odds, eq. 6, to the fixed point: :func:`rpo.core.em.fixed_point_eta`), w by eq. 4, a bootstrap
interval for each eta.

Calibration (on by default, ``calibrate=False`` turns it off). Theorem 4.2 recovers eta only from a
*calibrated* model, and a witness's log-odds ``d`` have whatever scale its ``beta`` and training length
gave them: a witness that ranks pairs well but is under-confident (``|d|`` too small) makes EM explain its
doubt as label noise of the noisy annotators and push the clean annotator's eta toward 1. The audit
therefore fits one temperature ``s > 0`` with eta: the pair ``(s, eta)`` that maximises eq. 3's marginal
likelihood of the observed labels, ``sum_i log(sigmoid(s d_i) eta_k + sigmoid(-s d_i) (1 - eta_k))``
(eta by exact EM at each ``s``, ``s`` by a search on ``log s`` over [1/16, 64]). ``w = sigmoid(s d +
logit eta_k)`` is then eq. 4 at the calibrated witness. Within one annotator ``w`` is an increasing
function of ``d`` whatever ``s`` and eta are, so it ranks that annotator's pairs exactly as ``d`` does;
``s`` and eta change how pairs of different annotators compare, and what ``w`` means as a probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rpo.core.em import fixed_point_eta, prior_log_odds

LOG2_RANGE = (-4.0, 6.0)  # temperatures searched: 1/16 .. 64
GRID_STEP = 0.25  # in log2 s, before a golden-section refinement


@dataclass(frozen=True)
class Fit:
    """``temperature`` s; ``eta`` (K,) float64; ``w`` (N,) float64; EM ``iterations`` at the chosen s; eq. 3's
    ``log_likelihood`` there."""

    temperature: float
    eta: torch.Tensor
    w: torch.Tensor
    iterations: int
    log_likelihood: float


def marginal_log_likelihood(d: torch.Tensor, ids: torch.Tensor, eta: torch.Tensor) -> float:
    """Eq. 3 summed over pairs: ``sum_i log(sigmoid(d_i) eta_k + sigmoid(-d_i) (1 - eta_k))``, in log space."""
    d = d.to(torch.float64)
    e = eta.to(torch.float64)[ids]
    terms = torch.logaddexp(torch.log(e) + F.logsigmoid(d), torch.log1p(-e) + F.logsigmoid(-d))
    return float(terms.sum())


def _at(d, ids, k, eta0, s):
    eta, w, it = fixed_point_eta(s * d, ids, k, eta0)
    return marginal_log_likelihood(s * d, ids, eta), eta, w, it


def fit(d, ids, num_annotators: int, *, eta0: float = 0.9, calibrate: bool = True) -> Fit:
    """Eta by exact EM on the log-odds ``d`` (N,) of annotators ``ids`` (N,), w by eq. 4; with ``calibrate``
    also the temperature of eq. 3's maximum likelihood (module doc). A flat likelihood (an uninformative
    witness) keeps ``s = 1``."""
    d = torch.as_tensor(d, dtype=torch.float64).flatten()
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    best = (1.0, *_at(d, ids, num_annotators, eta0, 1.0))
    if calibrate and bool((d != 0).any()):
        cache = {0.0: best[1]}

        def score(log2s: float) -> float:
            if log2s not in cache:
                cache[log2s] = _at(d, ids, num_annotators, eta0, 2.0**log2s)[0]
            return cache[log2s]

        lo, hi = LOG2_RANGE
        grid = [lo + i * GRID_STEP for i in range(int(round((hi - lo) / GRID_STEP)) + 1)]
        top = max(grid, key=score)
        a, b = max(lo, top - GRID_STEP), min(hi, top + GRID_STEP)
        g = (math.sqrt(5) - 1) / 2
        for _ in range(30):  # golden section on [a, b] around the best grid point
            c, e = b - g * (b - a), a + g * (b - a)
            if score(c) >= score(e):
                b = e
            else:
                a = c
        cands = sorted(cache, key=lambda x: (-cache[x], abs(x)))
        # keep s = 1 unless another temperature is better by more than rounding
        if cache[cands[0]] > cache[0.0] + 1e-9 * max(1.0, abs(cache[0.0])):
            s = 2.0 ** cands[0]
            best = (s, *_at(d, ids, num_annotators, eta0, s))
    s, ll, eta, w, it = best
    return Fit(temperature=float(s), eta=eta, w=w, iterations=int(it), log_likelihood=float(ll))


def bootstrap_eta(
    d,
    ids,
    num_annotators: int,
    eta_start: torch.Tensor,
    *,
    reps: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    max_iter: int = 1000,
    tol: float = 1e-9,
    budget: int = 4_000_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Percentile interval of each eta over ``reps`` bootstrap resamples of the pairs, resampled within each
    annotator (its count fixed), the witness (its log-odds ``d``, already multiplied by the temperature)
    held fixed: the interval is the sampling error of the pairs, not that of the witness. Exact EM runs on
    all resamples at once, from ``eta_start``; ``budget`` bounds the resampled values held in memory.
    Returns ``(low, high)``, (K,) float64 each; an annotator without pairs gets NaN."""
    d = torch.as_tensor(d, dtype=torch.float64).flatten()
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    gen = torch.Generator().manual_seed(int(seed))
    alpha = (1.0 - level) / 2
    low = torch.full((num_annotators,), float("nan"), dtype=torch.float64)
    high = low.clone()
    for k in range(num_annotators):
        dk = d[ids == k]
        n = dk.numel()
        if n == 0:
            continue
        start = float(eta_start[k])
        start = min(max(start, 1e-12), 1 - 1e-12)
        chunk = max(1, budget // n)
        etas = []
        for first in range(0, reps, chunk):
            b = min(chunk, reps - first)
            sample = dk[torch.randint(n, (b, n), generator=gen)]
            eta = torch.full((b,), start, dtype=torch.float64)
            for _ in range(max_iter):
                new = torch.sigmoid(sample + prior_log_odds(eta)[:, None]).mean(dim=1).clamp(1e-12, 1 - 1e-12)
                done = (new - eta).abs().max().item() <= tol
                eta = new
                if done:
                    break
            etas.append(eta)
        etas = torch.cat(etas)
        low[k] = torch.quantile(etas, alpha)
        high[k] = torch.quantile(etas, 1 - alpha)
    return low, high
