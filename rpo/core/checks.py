"""Input checks shared by the math core: clear ``ValueError``s instead of silent NaNs."""

from __future__ import annotations

import math
import numbers

import torch


def check_same_shape(tensors: dict[str, torch.Tensor], ndim: int | None = None) -> None:
    """All named tensors must share one shape (and have ``ndim`` dimensions when given)."""
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):  # a float or a list would fail later, naming no argument
            raise TypeError(f"{k} must be a torch.Tensor, got {type(v).__name__}")
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise ValueError(f"mismatched shapes: {shapes}")
    if ndim is not None and len(first) != ndim:
        raise ValueError(f"expected {ndim}-d tensors of shape (B,), got shapes {shapes}")


def check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """No NaN anywhere (infinities are allowed where the maths handles them)."""
    for k, v in tensors.items():
        if torch.isnan(v).any():
            raise ValueError(f"{k} contains NaN")


def check_eta0(eta0: float) -> None:
    """Algorithm 1 starts from a reliability in [0.5, 1): at least a coin flip, never certainty
    (eta = 1 would make every w exactly 1 and RPO would never move)."""
    if not 0.5 <= eta0 < 1.0:
        raise ValueError(f"eta0 must be in [0.5, 1), got {eta0}")


def check_alpha(alpha: float) -> None:
    """Eq. 7's EMA momentum lies in (0, 1]."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")


def check_annotator_ids(annotator_ids: torch.Tensor, num_annotators: int) -> None:
    if annotator_ids.dtype.is_floating_point or annotator_ids.dtype == torch.bool:
        raise ValueError(f"annotator ids must be integers, got dtype {annotator_ids.dtype}")
    if annotator_ids.numel() and (annotator_ids.min() < 0 or annotator_ids.max() >= num_annotators):
        raise ValueError(
            f"annotator ids must lie in [0, {num_annotators}), got range "
            f"[{int(annotator_ids.min())}, {int(annotator_ids.max())}]"
        )


def check_probabilities(tensors: dict[str, torch.Tensor]) -> None:
    """Posterior weights and probabilities: finite and in [0, 1] (a w of 2 or inf would move eta out of
    [0, 1] without any NaN to catch)."""
    check_finite(tensors)
    for k, v in tensors.items():
        if v.numel() and ((v < 0).any() or (v > 1).any()):
            raise ValueError(f"{k} must lie in [0, 1], got values in [{v.min().item():g}, {v.max().item():g}]")


def check_hyper(beta, **hyper) -> None:
    """A loss's scalars: ``beta`` a finite number > 0, the others (gamma, cpo_alpha, ...) finite numbers."""
    for k, v in {"beta": beta, **hyper}.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{k} must be a finite number, got {v!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
