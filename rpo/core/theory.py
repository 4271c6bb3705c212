"""Section 4 by simulation (pure torch): the generative model of section 3.2 with a perfectly
calibrated model, and full-batch EM on eta (Lemma 4.1, Theorem 4.2, Remark E.1)."""

from __future__ import annotations

import torch

from rpo.core.em import em_operator


def simulate_calibrated_labels(
    n: int, eta_true: float, seed: int = 0, informative: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` labels from the model of section 3.2 for one annotator of reliability ``eta_true``.

    Each pair has a latent preference ``a >* b`` with probability ``q_i`` (uniform on [0, 1], or 1/2
    for every pair when ``informative=False``, the case of Remark E.1); the annotator reports it
    when ``z_i = 1`` (probability ``eta_true``) and the reverse otherwise.

    Returns ``(p_star, z)``: ``p_star[i]`` is the probability that the *observed* label agrees with
    the latent preference, i.e. what a perfectly calibrated model predicts (Lemma 4.1), and ``z``
    whether each label is correct (so ``z.mean()`` is the realised reliability). Both (n,).
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(n, generator=g, dtype=torch.float64) if informative else torch.full((n,), 0.5, dtype=torch.float64)
    a_better = torch.rand(n, generator=g, dtype=torch.float64) < q
    z = torch.rand(n, generator=g, dtype=torch.float64) < eta_true
    says_a = torch.where(z, a_better, ~a_better)
    return torch.where(says_a, q, 1 - q), z


def em_trajectory(p_star: torch.Tensor, eta0: float, steps: int = 200, tol: float = 0.0) -> torch.Tensor:
    """Full-batch EM ``eta <- T_k(eta)`` (Theorem 4.2) from ``eta0``; returns the iterates (<= steps+1,),
    stopping early once a step moves less than ``tol``."""
    etas = [torch.tensor(float(eta0), dtype=torch.float64)]
    for _ in range(steps):
        etas.append(em_operator(p_star, etas[-1]))
        if abs(etas[-1] - etas[-2]) < tol:
            break
    return torch.stack(etas)
