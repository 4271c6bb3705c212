"""RobustConfig: :class:`trl.DPOConfig` plus RPO's hyperparameters, flat so that TRL's ``TrlParser`` reads
them from a recipe's YAML (recipes/)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import DPOConfig

from rpo.core.checks import check_alpha, check_eta0
from rpo.core.em import OBJECTIVES as M_STEP_OBJECTIVES
from rpo.core.losses import LOSSES, NEEDS_REFERENCE
from rpo.core.methods import BASELINES, KNOWN_NOISE, Method, from_trainer_args

ETA_UPDATES = ("batch", "epoch", "count")
REFIT_ETA = ("none", "end", "epoch")
LM_HEADS = ("auto", "fused", "logits")


@dataclass
class RobustConfig(DPOConfig):
    """:class:`trl.DPOConfig` plus RPO's hyperparameters (flat, so TrlParser reads them from YAML).

    Fields (names are a public contract: recipes are written against them):

    * ``pref_loss``: base preference loss, one of dpo, ipo, simpo, cpo (Table 1). Replaces TRL's
      ``loss_type``, which must stay at its default.
    * ``robust``: True runs RPO (Algorithm 1); False the plain base method through the same code.
    * ``eta0``: initial reliability of every annotator, in (0.5, 1) (Algorithm 1's input; paper: 0.9). The
      paper allows 0.5, but there the prior is uninformative and the M-step's gradient is exactly zero
      (w = sigmoid(d)), so RobustConfig refuses it.
    * ``ema_alpha``: EMA momentum of eq. 7, in (0, 1] (paper: 0.1). Not TRL's ``rpo_alpha``, which is
      Reasoning Preference Optimization, another method.
    * ``eta_update``: "batch" (eq. 7 once per optimizer step, Algorithm 1) or "epoch" (eq. 6 after a full
      E-step over the training set at each epoch end, the paper's implementation note) or "count" (once per
      optimizer step, the count-aware running Beta-posterior mean of :func:`rpo.core.em.count_step`: each
      label moves eta_k by 1 / (n0 + N_k), so with many annotators an estimate rests on all their labels).
    * ``eta_prior_strength``: n0 of the "count" update, in pseudo-labels at eta0; None (default) gives
      (1 - ema_alpha) / ema_alpha (9 at alpha 0.1), where the first one-label step equals eq. 7's.
    * ``refit_eta``: "none", "end" or "epoch": exact EM for eta at the current model
      (:meth:`RobustTrainer.fit_reliability`: eq. 4 with the model's log-odds held fixed, eq. 6, to the
      fixed point) after training, or at every epoch end (before that epoch's checkpoint). Up to
      ``refit_max_iter`` iterations, until no eta moves by more than ``refit_tol``.
    * ``objective``: M-step objective, "gibbs" (eq. 5 as written) or "weighted" (w L_wl + (1-w) L_lw).
    * ``annotator_column``: dataset column of annotator ids (ints in [0, K)) or names (strings, mapped to
      ids in sorted order and saved to ``output_dir/annotators.json``). Absent: one virtual annotator.
    * ``num_annotators``: K when ids are integers; None infers K = max id + 1 from the training set.
    * ``annotator_names``: the annotators' string names in eta's order (instead of the sorted names); a
      name in the data outside it is an error naming the row. A streamed training set with string names
      needs it (its names cannot be sorted before it ends).
    * ``gamma``: SimPO's absolute margin (TRL's ``simpo_gamma``). ``cpo_alpha``: weight of CPO's NLL.
    * ``baseline``: None, "cdpo" (fixed weights w = 1 - noise_eps in the weighted objective) or "rdpo"
      (Chowdhury et al.'s unbiased loss, TRL's ``robust``); both need a known ``noise_eps`` in
      (0, 0.5) and apply to any ``pref_loss`` (with dpo they are the originals); or "ls", label smoothing
      of ``pref_loss`` at rate ``ls_eps`` (None: 1 - eta0), eq. 5 with w fixed at 1 - eps under the same
      ``objective`` as RPO (:mod:`rpo.core.objectives`); or "holder", Hölder-DPO (Fujisawa et al. 2025,
      Prob. (12): a redescending loss that needs no noise rate) with its ``holder_gamma`` > 0 (default 2.0,
      the paper's). Not with ``robust``.
    * ``lm_head``: "fused" computes the policy's log-probs as DPOTrainer does, through TRL's fused LM head;
      "logits" through the full logits, as CPOTrainer does; "auto" (default) picks fused exactly where TRL
      runs that head as its Triton kernel (CUDA, XPU). Same values (tested to 1e-5). On CPU TRL's fallback
      was slower and no smaller (SmolLM2-135M, 16 x 133 tokens: 20.7 s vs 14.1 s per step, 8.2 vs 7.5 GB
      peak RSS; toy model: ~3% of a step). The reference model (dpo / ipo) always goes through TRL's
      ``compute_ref_log_probs``.
    """

    pref_loss: str = field(default="dpo", metadata={"help": "Base loss: dpo, ipo, simpo or cpo (Table 1)."})
    robust: bool = field(default=True, metadata={"help": "RPO (Algorithm 1) if True, the plain base loss if False."})
    eta0: float = field(default=0.9, metadata={"help": "Initial annotator reliability, in (0.5, 1)."})
    ema_alpha: float = field(default=0.1, metadata={"help": "EMA momentum of eq. 7, in (0, 1]."})
    eta_update: str = field(
        default="batch", metadata={"help": "'batch' (eq. 7 per step), 'epoch' (eq. 6) or 'count' (count-aware)."}
    )
    eta_prior_strength: float | None = field(
        default=None, metadata={"help": "n0 of eta_update='count' (default (1 - ema_alpha) / ema_alpha)."}
    )
    refit_eta: str = field(
        default="none", metadata={"help": "Exact EM for eta at the current model: 'none', 'end' or 'epoch'."}
    )
    refit_max_iter: int = field(default=1000, metadata={"help": "Most EM iterations of a refit."})
    refit_tol: float = field(default=1e-8, metadata={"help": "A refit stops when no eta moves by more than this."})
    objective: str = field(default="gibbs", metadata={"help": "M-step objective: 'gibbs' (eq. 5) or 'weighted'."})
    annotator_column: str = field(default="annotator", metadata={"help": "Column of annotator ids or names."})
    num_annotators: int | None = field(default=None, metadata={"help": "K for integer ids (default: max id + 1)."})
    annotator_names: list[str] | None = field(
        default=None,
        metadata={"help": "String annotator names in eta's order (default: sorted); a streamed set needs them."},
    )
    gamma: float = field(default=0.0, metadata={"help": "SimPO's absolute margin gamma."})
    cpo_alpha: float = field(default=1.0, metadata={"help": "Weight of CPO's NLL term."})
    baseline: str | None = field(
        default=None,
        metadata={"help": "None, 'cdpo' / 'rdpo' (known noise rate), 'ls' (label smoothing) or 'holder' (Hölder-DPO)."},
    )
    ls_eps: float | None = field(
        default=None, metadata={"help": "Label-smoothing rate of baseline 'ls', in (0, 0.5); None: 1 - eta0."}
    )
    noise_eps: float = field(default=0.1, metadata={"help": "Known label-noise rate of cdpo / rdpo, in (0, 0.5)."})
    holder_gamma: float = field(
        default=2.0, metadata={"help": "Hölder-DPO's gamma (baseline 'holder'), > 0; Fujisawa et al. 2025: 2.0."}
    )
    lm_head: str = field(
        default="auto",
        metadata={
            "help": "How the policy's log-probs are computed: 'fused' (TRL's fused LM head, DPOTrainer's forward: no "
            "(B, T, V) logits), 'logits' (the model's full logits and TRL's selective_log_softmax, as "
            "CPOTrainer does) or 'auto' (fused where TRL runs it as a Triton kernel, i.e. CUDA / XPU; logits "
            "elsewhere, where TRL's fallback is slower and, measured on CPU, no smaller)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        choices = {
            "pref_loss": tuple(LOSSES),
            "eta_update": ETA_UPDATES,
            "refit_eta": REFIT_ETA,
            "objective": M_STEP_OBJECTIVES,
            "baseline": (None, *BASELINES),
            "lm_head": LM_HEADS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"RobustConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        self._check_numbers()
        try:
            check_eta0(self.eta0)
            check_alpha(self.ema_alpha)
        except ValueError as e:
            raise ValueError(f"RobustConfig: {e} (fields eta0 / ema_alpha)") from None
        if self.eta0 == 0.5 and (self.robust or (self.baseline == "ls" and self.ls_eps is None)):
            # at eta = 0.5 the prior log-odds are 0: w = sigmoid(d) is the model's own belief, the Gibbs
            # M-step's gradient sigmoid(d) - w is 0 for every pair, and eta then drifts with the untrained
            # model (below 0.5, where the M-step would learn the labels backwards)
            raise ValueError(
                "RobustConfig.eta0 = 0.5 gives a zero M-step gradient (w = sigmoid(d) exactly, the prior "
                "carries no information): use eta0 in (0.5, 1), e.g. 0.55 for a pessimistic start"
            )
        if self.gamma != 0 and self.pref_loss != "simpo":
            raise ValueError(
                f"RobustConfig.gamma={self.gamma} is SimPO's margin; pref_loss={self.pref_loss!r} ignores it"
            )
        if self.baseline is not None:
            if self.robust:
                raise ValueError(f"RobustConfig.baseline={self.baseline!r} needs robust=False")
            if self.baseline in KNOWN_NOISE and not 0.0 < self.noise_eps < 0.5:
                raise ValueError(f"RobustConfig.noise_eps must be in (0, 0.5), got {self.noise_eps}")
        if not self.holder_gamma > 0:  # Theorem 4 needs gamma > 0; at 0 the loss is the constant -1
            raise ValueError(f"RobustConfig.holder_gamma must be > 0, got {self.holder_gamma}")
        if self.ls_eps is not None and not 0.0 < self.ls_eps < 0.5:
            raise ValueError(f"RobustConfig.ls_eps must be in (0, 0.5), got {self.ls_eps}")
        if self.eta_prior_strength is not None and not self.eta_prior_strength > 0:
            raise ValueError(f"RobustConfig.eta_prior_strength must be > 0, got {self.eta_prior_strength}")
        if self.refit_max_iter < 1 or not self.refit_tol > 0:
            raise ValueError(
                "RobustConfig: refit_max_iter must be >= 1 and refit_tol > 0, "
                f"got {self.refit_max_iter}, {self.refit_tol}"
            )
        if self.num_annotators is not None and self.num_annotators < 1:
            raise ValueError(f"RobustConfig.num_annotators must be >= 1, got {self.num_annotators}")
        self._check_annotator_names()
        if self.cpo_alpha < 0:
            raise ValueError(f"RobustConfig.cpo_alpha must be >= 0, got {self.cpo_alpha}")
        # TRL options that _compute_loss would silently ignore are refused instead.
        unsupported = {
            "loss_type": (self.loss_type, ["sigmoid"]),
            "ld_alpha": (self.ld_alpha, None),
            "f_divergence_type": (self.f_divergence_type, "reverse_kl"),
            "use_weighting": (self.use_weighting, False),
            "label_smoothing": (self.label_smoothing, 0.0),
        }
        for name, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(
                    f"RobustConfig does not support {name}={value!r} (keep {default!r}); "
                    "choose the loss with pref_loss / baseline / noise_eps"
                )
        if self.pref_loss not in NEEDS_REFERENCE and self.sync_ref_model:
            raise ValueError(f"pref_loss={self.pref_loss!r} is reference-free: sync_ref_model must be False")

    def _check_numbers(self) -> None:
        """Every RPO number finite and of a number type, beta positive: a NaN passes no comparison, so it
        would slip through the range checks below and surface as a NaN step (or 'eta must lie in [0, 1],
        got nan') during training; a string from a hand-built config would fail deep inside a comparison."""
        optional = {"ls_eps", "eta_prior_strength", "num_annotators"}
        checked = ("beta", "eta0", "ema_alpha", "gamma", "cpo_alpha", "noise_eps", "holder_gamma", "refit_tol")
        for name in (*checked, *sorted(optional)):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RobustConfig.{name} must be a finite number, got {value!r}")
        if self.num_annotators is not None and not float(self.num_annotators).is_integer():
            raise ValueError(f"RobustConfig.num_annotators must be an integer, got {self.num_annotators!r}")
        if not self.beta > 0:
            raise ValueError(f"RobustConfig.beta must be > 0, got {self.beta}")
        # transformers' own numbers that would otherwise fail inside torch (a sampler, the optimizer)
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)):
            raise ValueError(f"RobustConfig.learning_rate must be a finite number, got {self.learning_rate!r}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"RobustConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}")

    def _check_annotator_names(self) -> None:
        names = self.annotator_names
        if names is None:
            return
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"RobustConfig.annotator_names must be a non-empty list of strings, got {names!r:.80}")
        bad = [n for n in names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"RobustConfig.annotator_names must hold non-empty strings, got {bad[0]!r}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"RobustConfig.annotator_names must be unique; repeated: {repeated[:5]}")
        # one entry of eta per name: a different K is a contradiction, not a choice between the two
        if self.num_annotators is not None and self.num_annotators != len(names):
            raise ValueError(
                f"RobustConfig.num_annotators={self.num_annotators} but annotator_names names {len(names)} "
                f"annotator(s); give one of them, or make them agree"
            )
        self.annotator_names = list(names)

    @property
    def smoothing(self) -> float:
        """The label-smoothing rate of baseline "ls": ``ls_eps``, or ``1 - eta0`` (RPO's objective at
        initialisation, where every w = eta0)."""
        return self.ls_eps if self.ls_eps is not None else 1.0 - self.eta0

    @property
    def method(self) -> Method:
        """The entry of the method registry (:mod:`rpo.core.methods`) this config trains."""
        return from_trainer_args(self.pref_loss, self.robust, self.baseline)
