"""``rpo audit``: which labels of a preference data set look wrong, and how reliable each annotator is.

RPO's E-step as a data audit (the paper's Appendix F, Theorem 4.2 at a fixed model): a witness trained by
cross-fitting scores every pair it never saw (eq. 2), exact EM at that fixed witness gives each annotator's
eta (eqs. 4, 6), and eq. 4 gives each pair's ``w``, the posterior that its label is correct.

    from rpo.audit import audit
    pairs, annotators, summary = audit("prefs.jsonl", model="toy", out="audit/")

Modules: :mod:`~rpo.audit.run` (``audit``), :mod:`~rpo.audit.witness` (models, training, streamed scoring),
:mod:`~rpo.audit.estimate` (EM, temperature, bootstrap), :mod:`~rpo.audit.report` (the files),
:mod:`~rpo.audit.settings`, :mod:`~rpo.audit.synthetic` (a learnable set with known flips),
:mod:`~rpo.audit.cli` (``rpo audit``). A layer beside :mod:`rpo.toy`: it imports core, data, training, io,
paths and models. Names are imported lazily (TRL loads on first use).
"""

from __future__ import annotations

_EXPORTS = {
    "audit": "rpo.audit.run",
    "AuditResult": "rpo.audit.run",
    "Settings": "rpo.audit.settings",
    "known_flips": "rpo.audit.synthetic",
    "learnable_pairs": "rpo.audit.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rpo.audit' has no attribute {name!r}")
