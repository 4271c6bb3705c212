"""Intervals over seeds: the one t-interval every table, benchmark and notebook uses."""

from __future__ import annotations

import math

import numpy as np


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t interval (NaN and None values dropped); half-width NaN for
    fewer than 2 values, mean NaN for none."""
    from scipy import stats

    if not 0 < confidence < 1:  # scipy would return a NaN half-width without a word
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)
