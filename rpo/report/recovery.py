"""The share of the noise damage a method recovers (issue 12): ``(method - base) / (ceiling - base)``.

``base`` is the plain method on the noisy labels, ``ceiling`` the same method on the true labels, both
on the same seeds (the same pool of pairs), so every quantity is paired by seed. The point estimate is
the ratio of the mean paired differences, ``mean(m - b) / mean(c - b)`` (not the mean of per-seed ratios,
which explode when one seed's damage is near 0); its 95% interval is the percentile interval of the same
ratio over a paired bootstrap of seeds (fixed generator: the same inputs give the same interval). When the
damage itself is not resolved (the t-interval of ``c - b`` contains 0), the share is undefined and
reported as NaN with ``resolved=False``: a share of an unmeasured damage is not a result.
"""

from __future__ import annotations

import numpy as np

from rpo.core.stats import t_interval


def damage_recovered(method, base, ceiling, *, n_boot: int = 4000, seed: int = 0, confidence: float = 0.95) -> dict:
    """``{"share", "lo", "hi", "damage", "damage_half", "resolved", "n"}`` from per-seed values (equal
    lengths, the same seed at each position; pairs with a missing value dropped)."""
    m, b, c = (np.asarray(x, dtype=float) for x in (method, base, ceiling))
    if not (m.shape == b.shape == c.shape):
        raise ValueError(f"damage_recovered: shapes {m.shape}, {b.shape}, {c.shape} differ (pair by seed)")
    keep = ~(np.isnan(m) | np.isnan(b) | np.isnan(c))
    m, b, c = m[keep], b[keep], c[keep]
    n = int(len(m))
    damage, damage_half = t_interval(c - b, confidence) if n else (float("nan"), float("nan"))
    resolved = bool(n >= 2 and damage - damage_half > 0)
    out = {"damage": damage, "damage_half": damage_half, "resolved": resolved, "n": n}
    if not resolved:
        return {**out, "share": float("nan"), "lo": float("nan"), "hi": float("nan")}
    share = float(np.mean(m - b) / np.mean(c - b))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    num, den = (m - b)[idx].mean(axis=1), (c - b)[idx].mean(axis=1)
    ratios = num[den > 0] / den[den > 0]
    a = (1 - confidence) / 2
    lo, hi = (float(q) for q in np.quantile(ratios, [a, 1 - a]))
    return {**out, "share": share, "lo": lo, "hi": hi}
