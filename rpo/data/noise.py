"""Annotators that inject label noise with known truth (section 3, Assumption 1: annotator ``k`` labels
correctly with probability ``eta_k``), and the layouts of section 5.4.

* :class:`Annotator` ``kind="symmetric"``: each label flipped with probability ``rate``.
* :class:`Annotator` ``kind="bt"``: Bradley-Terry on the oracle rewards, flip probability
  ``sigmoid(-margin / tau)``; small reward gaps flip often, large ones rarely (instance-dependent noise).
  ``tau`` is solved (bisection) so that the mean flip probability over the annotator's rows is ``rate``.

Layouts: :func:`single_annotator` (one annotator at a set rate), :func:`two_annotators` (each holds a full
copy of the data; annotator 1 clean, annotator 2 noisy), :func:`annotate` (any number, each holding a copy
or a disjoint share), :func:`annotator_pool` (K annotators, up to 256, with reliabilities drawn from
:func:`pool_reliabilities`, each labelling a disjoint share: a MultiPref-size pool). Hidden columns
added: ``true_chosen``, ``true_rejected`` (the true preference),
``is_flipped``, ``true_flip_prob`` and ``true_eta`` (the annotator's *measured* agreement with the oracle
over its rows: the analogue of the paper's "eta GPT-4o").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rpo.data.schema import REQUIRED

#: the pool's reliability distribution (stated once): a reliable majority and a tail, as MultiPref's
#: annotators (the final paper's Figure 3: most eta_hat near the top, a low tail). Each annotator's eta_k is
#: drawn i.i.d.: with probability POOL_MAJORITY uniform on POOL_RELIABLE, otherwise uniform on POOL_TAIL.
POOL_MAJORITY = 0.75
POOL_RELIABLE = (0.85, 1.0)
POOL_TAIL = (0.55, 0.85)
MAX_POOL = 256


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Annotator:
    """An annotator who relabels the true pairs. ``kind``: ``"symmetric"`` (flip with probability
    ``rate``) or ``"bt"`` (flip with ``sigmoid(-margin / tau)``, ``tau`` solved so the mean flip
    probability is ``rate``; or give ``tau`` directly). ``rate=0`` is a clean annotator."""

    name: str
    rate: float = 0.0
    kind: str = "symmetric"
    tau: float | None = None

    def __post_init__(self):
        if self.kind not in ("symmetric", "bt"):
            raise ValueError(f"annotator {self.name!r}: kind must be 'symmetric' or 'bt', got {self.kind!r}")
        if not 0.0 <= self.rate <= 0.5:
            raise ValueError(f"annotator {self.name!r}: rate must be in [0, 0.5], got {self.rate}")
        if self.tau is not None and self.tau <= 0:
            raise ValueError(f"annotator {self.name!r}: tau must be > 0, got {self.tau}")

    def flip_probs(self, margins) -> np.ndarray:
        """Per-row flip probability given the oracle reward gaps (``margins`` > 0), shape (N,)."""
        margins = np.asarray(margins, dtype=float)
        if self.kind == "symmetric" or (self.rate == 0.0 and self.tau is None):
            return np.full(margins.shape, self.rate)
        tau = self.tau if self.tau is not None else bt_tau_for_rate(margins, self.rate)
        return _sigmoid(-margins / tau) if tau > 0 else np.zeros(margins.shape)


def bt_tau_for_rate(margins, rate: float) -> float:
    """The temperature ``tau`` at which ``mean(sigmoid(-margin / tau)) == rate`` (bisection in log tau).

    ``rate`` must lie in [0, 0.5); 0 gives tau 0 (no flips)."""
    margins = np.asarray(margins, dtype=float)
    if rate == 0.0:
        return 0.0
    if not 0.0 < rate < 0.5:
        raise ValueError(f"Bradley-Terry rate must be in [0, 0.5), got {rate}")
    if np.any(margins <= 0):
        raise ValueError("Bradley-Terry noise needs positive oracle margins (true_margin > 0)")
    lo, hi = -12.0, 12.0  # log tau; mean flip prob rises monotonically with tau
    for _ in range(100):
        mid = (lo + hi) / 2
        if _sigmoid(-margins / math.exp(mid)).mean() < rate:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def _truth(rows: list[dict]) -> list[dict]:
    """Rows in true orientation (chosen truly better), reading ``true_*`` columns when present."""
    out = []
    for i, r in enumerate(rows):
        validate_row = {k: r[k] for k in REQUIRED if k in r}
        if len(validate_row) < 3:
            raise ValueError(f"row {i}: missing one of {REQUIRED}")
        out.append(
            {**r, "chosen": r.get("true_chosen", r["chosen"]), "rejected": r.get("true_rejected", r["rejected"])}
        )
    return out


def annotate(pairs, annotators: list[Annotator], *, layout: str = "copy", seed: int = 0):
    """Relabel clean pairs by several annotators; returns a ``datasets.Dataset``.

    ``pairs``: clean pairs (chosen truly better; list of dicts or Dataset). ``layout="copy"``: each
    annotator labels its own full copy (N * K rows, section 5.4 b); ``"split"``: the rows are shuffled and
    dealt out in equal disjoint shares. BT annotators need a ``true_margin`` column. Row order: annotator
    by annotator; the trainer shuffles.
    """
    from datasets import Dataset

    if layout not in ("copy", "split"):
        raise ValueError(f"layout must be 'copy' or 'split', got {layout!r}")
    if not annotators:
        raise ValueError("annotators: need at least one")
    names = [a.name for a in annotators]
    if len(set(names)) != len(names):
        raise ValueError(f"annotators: duplicate names in {names}")
    rows = _truth(list(pairs))
    if layout == "split" and len(annotators) > len(rows):
        raise ValueError(
            f"{len(annotators)} annotators cannot each label a disjoint share of {len(rows)} pairs: "
            "the pool is larger than the data"
        )
    rng = np.random.default_rng(seed)
    if layout == "split":
        order = rng.permutation(len(rows))
        shares = np.array_split(order, len(annotators))
    else:
        shares = [np.arange(len(rows))] * len(annotators)
    out = []
    for ann, idx in zip(annotators, shares):
        sub = [rows[i] for i in idx]
        if ann.kind == "bt" and sub and "true_margin" not in sub[0]:
            raise ValueError(f"annotator {ann.name!r}: Bradley-Terry noise needs a 'true_margin' column")
        margins = [r.get("true_margin", 1.0) for r in sub]
        p = ann.flip_probs(margins)
        flips = rng.random(len(sub)) < p
        eta = 1.0 - float(flips.mean()) if len(sub) else float("nan")
        for r, f, pi in zip(sub, flips, p):
            c, j = (r["rejected"], r["chosen"]) if f else (r["chosen"], r["rejected"])
            out.append(
                {
                    **{k: v for k, v in r.items() if k not in ("chosen", "rejected", "annotator")},
                    "prompt": r["prompt"],
                    "chosen": c,
                    "rejected": j,
                    "annotator": ann.name,
                    "true_chosen": r["chosen"],
                    "true_rejected": r["rejected"],
                    "is_flipped": bool(f),
                    "true_flip_prob": float(pi),
                    "true_eta": eta,
                }
            )
    return Dataset.from_list(out)


def single_annotator(pairs, rate: float, *, kind: str = "symmetric", seed: int = 0, name: str = "a1"):
    """Section 5.4 (a): one annotator at noise ``rate``."""
    return annotate(pairs, [Annotator(name, rate, kind)], layout="copy", seed=seed)


def two_annotators(pairs, rate2: float, *, kind: str = "symmetric", seed: int = 0):
    """Section 5.4 (b): two copies of the data; annotator ``a1`` clean, ``a2`` at noise ``rate2``."""
    return annotate(pairs, [Annotator("a1", 0.0, kind), Annotator("a2", rate2, kind)], layout="copy", seed=seed)


def pool_reliabilities(num_annotators: int, seed: int = 0) -> np.ndarray:
    """(K,) reliabilities eta_k of a pool, drawn from the stated distribution (:data:`POOL_MAJORITY`,
    :data:`POOL_RELIABLE`, :data:`POOL_TAIL`) with ``numpy.random.default_rng(seed)``; K in [1, 256]."""
    if isinstance(num_annotators, bool) or not isinstance(num_annotators, (int, np.integer)):
        raise ValueError(f"pool: num_annotators must be an integer, got {num_annotators!r}")
    if not 1 <= num_annotators <= MAX_POOL:
        raise ValueError(f"pool: num_annotators must be in [1, {MAX_POOL}], got {num_annotators}")
    rng = np.random.default_rng(seed)
    reliable = rng.random(num_annotators) < POOL_MAJORITY
    lo = np.where(reliable, POOL_RELIABLE[0], POOL_TAIL[0])
    hi = np.where(reliable, POOL_RELIABLE[1], POOL_TAIL[1])
    return lo + (hi - lo) * rng.random(num_annotators)


def pool_names(num_annotators: int) -> list[str]:
    """``p000, p001, ...``: zero-padded, so the trainer's sorted name -> id mapping keeps the pool's order."""
    return [f"p{k:03d}" for k in range(num_annotators)]


def annotator_pool(pairs, num_annotators: int, *, pool_seed: int = 0, kind: str = "symmetric", seed: int = 0):
    """K annotators (:func:`pool_names`) with reliabilities from :func:`pool_reliabilities` (``pool_seed``),
    each labelling a disjoint share of ``pairs`` (flip rate ``1 - eta_k``; ``seed`` deals the shares and
    draws the flips). A pool larger than the data is an error: every annotator needs a label."""
    etas = pool_reliabilities(num_annotators, pool_seed)
    anns = [Annotator(n, float(1.0 - e), kind) for n, e in zip(pool_names(num_annotators), etas)]
    return annotate(pairs, anns, layout="split", seed=seed)


def apply_layout(
    pairs,
    layout: str = "single",
    rate: float = 0.0,
    *,
    kind: str = "symmetric",
    rates: list | None = None,
    seed: int = 0,
    num_annotators: int | None = None,
    pool_seed: int = 0,
):
    """One entry point for notebooks whose parameters are literals.

    ``layout="single"``: :func:`single_annotator` at ``rate``; ``"two"``: :func:`two_annotators`
    (annotator 2 at ``rate``); ``"many"``: one annotator per entry of ``rates`` (``a1, a2, ...``), each
    holding a disjoint share of the pairs (``"many-copy"``: each a full copy); ``"pool"``:
    :func:`annotator_pool` of ``num_annotators`` annotators drawn with ``pool_seed`` (their rates come from
    the pool's distribution, so ``rate`` must be 0)."""
    if layout == "pool":
        if num_annotators is None:
            raise ValueError("layout 'pool' needs num_annotators=K (1 to 256)")
        if rate:
            raise ValueError(f"layout 'pool' draws each annotator's rate; got rate={rate} (leave it at 0)")
        return annotator_pool(pairs, num_annotators, pool_seed=pool_seed, kind=kind, seed=seed)
    if layout == "single":
        return single_annotator(pairs, rate, kind=kind, seed=seed)
    if layout == "two":
        return two_annotators(pairs, rate, kind=kind, seed=seed)
    if layout in ("many", "many-copy"):
        if not rates:
            raise ValueError(f"layout {layout!r} needs rates=[...], one per annotator")
        anns = [Annotator(f"a{i + 1}", r, kind) for i, r in enumerate(rates)]
        return annotate(pairs, anns, layout="copy" if layout == "many-copy" else "split", seed=seed)
    raise ValueError(f"unknown layout {layout!r}; expected single, two, many, many-copy or pool")


def true_reliability(dataset) -> dict:
    """``{annotator: measured agreement with the oracle}`` from the ``is_flipped`` column."""
    ann = np.asarray(dataset["annotator"])
    flipped = np.asarray(dataset["is_flipped"], dtype=bool)
    return {str(k): float(1.0 - flipped[ann == k].mean()) for k in dict.fromkeys(ann.tolist())}
