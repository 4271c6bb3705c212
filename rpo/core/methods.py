"""The one registry of methods: every training method the library, the profiles, the recipes and the
tables know, with its base loss, whether it is RPO, its known-noise baseline, its display label, its
recipe file and whether it needs a reference model.

Names a reader cannot confuse:

* ``r-dpo`` ... ``r-cpo`` are RPO (Algorithm 1) on a base loss; labels ``R-DPO`` ...
* ``cdpo`` and ``rdpo-chowdhury`` are the known-noise baselines (conservative DPO, Chowdhury et al.'s
  unbiased rDPO); labels ``cDPO`` and ``rDPO``. Their ``baseline`` field in
  :class:`rpo.training.RobustConfig` is ``"cdpo"`` / ``"rdpo"``.
* ``dpo-ls`` ... ``cpo-ls`` are label smoothing of each base loss (the final paper's "w/ LS"), labels
  ``DPO+LS`` ...; ``baseline="ls"``, rate ``ls_eps`` (default 1 - eta0: RPO's objective at initialisation,
  so the comparison with R-X isolates what the E-step adds; see :mod:`rpo.core.objectives`).
* ``holder-dpo`` is Hölder-DPO (Fujisawa et al. 2025, Prob. (12)), label ``Holder-DPO``: a robust loss that
  needs no noise rate; ``baseline="holder"``, its gamma ``holder_gamma`` (default 2.0, the paper's).

A study config (:mod:`rpo.pipeline.profiles`) names a method by two keys kept for its hash, ``method``
(the base loss, or ``cdpo`` / ``rdpo``) and ``robust``: :func:`from_config` maps it here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rpo.core.losses import LOSSES, NEEDS_REFERENCE


@dataclass(frozen=True)
class Method:
    key: str  # registry key = recipe stem, e.g. "r-dpo", "rdpo-chowdhury"
    loss: str  # base preference loss of Table 1 (rpo.core.losses.LOSSES)
    robust: bool  # RPO (Algorithm 1) on top of `loss`
    baseline: str | None  # RobustConfig.baseline: None | "cdpo" | "rdpo" | "ls" | "holder"
    label: str  # display name in tables and figures
    config_method: str  # the `method` key of a study config (with `robust`)

    @property
    def needs_reference(self) -> bool:
        return self.loss in NEEDS_REFERENCE

    @property
    def objective(self) -> str:
        """Key of :data:`rpo.core.objectives.OBJECTIVES` family: "rpo", "plain" or the baseline."""
        return "rpo" if self.robust else (self.baseline or "plain")

    @property
    def recipe(self) -> str:
        return f"{self.key}.yaml"


_LABELS = {"dpo": "DPO", "ipo": "IPO", "simpo": "SimPO", "cpo": "CPO"}
BASE_LOSSES = tuple(LOSSES)  # dpo, ipo, simpo, cpo: Table 1's order
BASELINES = {"cdpo": "cDPO", "rdpo": "rDPO", "ls": "LS", "holder": "Holder"}  # RobustConfig.baseline -> label
KNOWN_NOISE = ("cdpo", "rdpo")  # the baselines told the noise rate (noise_eps)

METHODS: dict[str, Method] = {}
for _loss in BASE_LOSSES:
    METHODS[_loss] = Method(_loss, _loss, False, None, _LABELS[_loss], _loss)
    METHODS[f"r-{_loss}"] = Method(f"r-{_loss}", _loss, True, None, f"R-{_LABELS[_loss]}", _loss)
METHODS["cdpo"] = Method("cdpo", "dpo", False, "cdpo", "cDPO", "cdpo")
METHODS["rdpo-chowdhury"] = Method("rdpo-chowdhury", "dpo", False, "rdpo", "rDPO", "rdpo")
METHODS["holder-dpo"] = Method("holder-dpo", "dpo", False, "holder", "Holder-DPO", "holder-dpo")
for _loss in BASE_LOSSES:
    METHODS[f"{_loss}-ls"] = Method(f"{_loss}-ls", _loss, False, "ls", f"{_LABELS[_loss]}+LS", f"{_loss}-ls")


def get(key: str) -> Method:
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; known methods: {sorted(METHODS)}")
    return METHODS[key]


def from_config(cfg: dict) -> Method:
    """The method of a study config (``method`` = base loss, ``cdpo`` / ``rdpo``, ``holder-dpo`` or
    ``<loss>-ls``, plus ``robust``)."""
    name, robust = cfg["method"], bool(cfg.get("robust"))
    for m in METHODS.values():
        if m.config_method == name and m.robust == robust:
            return m
    raise ValueError(
        f"config method={name!r}, robust={robust} names no method; known config methods: "
        f"{sorted({m.config_method for m in METHODS.values()})}"
        + (" (the baselines have no RPO version)" if name in BASELINES and robust else "")
    )


def from_trainer_args(pref_loss: str, robust: bool, baseline: str | None) -> Method:
    """The method a :class:`rpo.training.RobustConfig` trains."""
    for m in METHODS.values():
        if m.loss == pref_loss and m.robust == robust and m.baseline == baseline:
            return m
    # a baseline on another base loss (cDPO's rule on SimPO, say) is allowed: label it after the loss
    if baseline is not None and not robust:
        return Method(
            f"{baseline}-{pref_loss}",
            pref_loss,
            False,
            baseline,
            f"{BASELINES[baseline]}({_LABELS[pref_loss]})",
            baseline,
        )
    raise ValueError(f"no method trains pref_loss={pref_loss!r}, robust={robust}, baseline={baseline!r}")


def label(cfg: dict) -> str:
    """Display name of a study config's method: DPO, R-DPO, cDPO, rDPO, ..."""
    return from_config(cfg).label


def trainer_kwargs(method: Method) -> dict:
    """The :class:`rpo.training.RobustConfig` fields that select ``method``."""
    return {"pref_loss": method.loss, "robust": method.robust, "baseline": method.baseline}
