"""RobustTrainer: R-DPO, R-IPO, R-SimPO, R-CPO (Algorithm 1) and their plain bases, through TRL's DPOTrainer.

One code path for all eight methods (and the cDPO / rDPO baselines), so that a comparison measures RPO
and nothing else:

1. The policy forward gives summed completion log-probs, (2B,) split into chosen and rejected: DPOTrainer's
   fused LM head where TRL runs it as a Triton kernel (CUDA), elsewhere the full logits as CPOTrainer
   computes them (``lm_head``). TRL's reference log-probs come from precomputed columns or
   ``compute_ref_log_probs``.
2. The math core turns them into eq. 2's log-odds ``d = L(y_l > y_w) - L(y_w > y_l)`` in closed form
   (:func:`rpo.losses.gibbs_log_odds`), and ``d`` plus the annotator's prior ``logit(eta_k)`` into the
   E-step weights ``w`` (eq. 4) and the M-step objective (eq. 5), :func:`rpo.em.gibbs_e_step_and_loss`;
   reduced once with ``.mean()``. The "weighted" objective and the baselines use the pair of Table 1
   losses (:func:`rpo.losses.pair_losses`).
3. eta (one reliability per annotator, float64) is trainer state. ``eta_update="batch"``: each micro-batch
   adds its per-annotator sums of ``w`` and counts to a (2, K) table on the device; at the optimizer step's
   end the tables of every process are summed and eta is updated once (eq. 7), so the trajectory does not
   depend on how the global batch is split (up to float64 summation order); each micro-batch's E-step
   uses eta as it was at the start of the step. ``eta_update="epoch"``: after each epoch a full E-step
   over the training set sets eta by eq. 6 (the paper's implementation note, section 5).

Departures and choices (also in the README):

* Identical chosen and rejected: such a pair carries no preference (``L_wl = L_lw``, so ``w = eta``
  whatever the model); it is *skipped* from training with a logged count
  (``trainer.num_identical_skipped``). ``label_confidences`` on a raw dataset keeps it (w = eta).
* SimPO and CPO are reference-free: no reference model is built or loaded. DPOTrainer builds one unless
  ``precompute_ref_log_probs`` is set, so the trainer sets it during ``DPOTrainer.__init__`` and makes
  the precompute a no-op (under FSDP TRL still loads the reference once, then frees it).
* CPO's NLL is TRL's batch token-mean (``cpo_nll="batch_token_mean"``): per example it depends on the
  micro-batch's mean chosen length, so CPO's ``w`` depends (weakly) on the batch composition.
* The last global batch of an epoch, under several processes with an uneven split, contains
  accelerate's padding duplicates; they enter eq. 7's sums (the logged metrics drop them).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from accelerate.utils import is_peft_model
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer
from trl.kernels.chunked_logprob import _use_triton
from trl.trainer.utils import add_fused_lm_head, selective_log_softmax

from rpo.checks import check_alpha, check_eta0
from rpo.em import (OBJECTIVES, e_step, e_step_and_loss, ema_step, full_update, gibbs_e_step_and_loss, init_eta,
                    prior_log_odds, rpo_loss)
from rpo.losses import LOSSES, NEEDS_REFERENCE, gibbs_log_odds, pair_losses

logger = logging.getLogger(__name__)

#: the TRL release whose internals ``_logps`` mirrors (tests/test_trainer.py checks them)
TESTED_TRL_VERSION = "1.16.0"
PREF_LOSSES = ("dpo", "ipo", "simpo", "cpo")
ETA_UPDATES = ("batch", "epoch")
BASELINES = ("cdpo", "rdpo")
LM_HEADS = ("auto", "fused", "logits")
#: internal column carrying the integer annotator id through tokenisation and collation
ANNOTATOR_ID = "rpo_annotator_id"
STATE_FILE = "rpo_state.json"
ANNOTATORS_FILE = "annotators.json"
VIRTUAL_ANNOTATOR = "all"
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", ANNOTATOR_ID}


@dataclass
class RobustConfig(DPOConfig):
    """:class:`trl.DPOConfig` plus RPO's hyperparameters (flat, so TrlParser reads them from YAML).

    Fields (names are a public contract: recipes are written against them):

    * ``pref_loss``: base preference loss, one of dpo, ipo, simpo, cpo (Table 1). Replaces TRL's
      ``loss_type``, which must stay at its default.
    * ``robust``: True runs RPO (Algorithm 1); False the plain base method through the same code.
    * ``eta0``: initial reliability of every annotator, in [0.5, 1) (Algorithm 1's input; paper: 0.9).
    * ``ema_alpha``: EMA momentum of eq. 7, in (0, 1] (paper: 0.1). Not TRL's ``rpo_alpha``, which is
      Reasoning Preference Optimization, another method.
    * ``eta_update``: "batch" (eq. 7 once per optimizer step, Algorithm 1) or "epoch" (eq. 6 after a full
      E-step over the training set at each epoch end, the paper's implementation note).
    * ``objective``: M-step objective, "gibbs" (eq. 5 as written) or "weighted" (w L_wl + (1-w) L_lw).
    * ``annotator_column``: dataset column of annotator ids (ints in [0, K)) or names (strings, mapped to
      ids in sorted order and saved to ``output_dir/annotators.json``). Absent: one virtual annotator.
    * ``num_annotators``: K when ids are integers; None infers K = max id + 1 from the training set.
    * ``gamma``: SimPO's absolute margin (TRL's ``simpo_gamma``). ``cpo_alpha``: weight of CPO's NLL.
    * ``baseline``: None, "cdpo" (fixed weights w = 1 - noise_eps in the weighted objective) or "rdpo"
      (Chowdhury et al.'s unbiased loss, TRL's ``robust``); both need a known ``noise_eps`` in
      (0, 0.5) and apply to any ``pref_loss`` (with dpo they are the originals). Not with ``robust``.
    * ``lm_head``: "fused" computes the policy's log-probs as DPOTrainer does, through TRL's fused LM head;
      "logits" through the full logits, as CPOTrainer does; "auto" (default) picks fused exactly where TRL
      runs that head as its Triton kernel (CUDA, XPU). Same values (tested to 1e-5). On CPU TRL's fallback
      was slower and no smaller (SmolLM2-135M, 16 x 133 tokens: 20.7 s vs 14.1 s per step, 8.2 vs 7.5 GB
      peak RSS; toy model: ~3% of a step). The reference model (dpo / ipo) always goes through TRL's
      ``compute_ref_log_probs``.
    """

    pref_loss: str = field(default="dpo", metadata={"help": "Base loss: dpo, ipo, simpo or cpo (Table 1)."})
    robust: bool = field(default=True, metadata={"help": "RPO (Algorithm 1) if True, the plain base loss if False."})
    eta0: float = field(default=0.9, metadata={"help": "Initial annotator reliability, in [0.5, 1)."})
    ema_alpha: float = field(default=0.1, metadata={"help": "EMA momentum of eq. 7, in (0, 1]."})
    eta_update: str = field(default="batch", metadata={"help": "'batch' (eq. 7 per step) or 'epoch' (eq. 6)."})
    objective: str = field(default="gibbs", metadata={"help": "M-step objective: 'gibbs' (eq. 5) or 'weighted'."})
    annotator_column: str = field(default="annotator", metadata={"help": "Column of annotator ids or names."})
    num_annotators: int | None = field(default=None, metadata={"help": "K for integer ids (default: max id + 1)."})
    gamma: float = field(default=0.0, metadata={"help": "SimPO's absolute margin gamma."})
    cpo_alpha: float = field(default=1.0, metadata={"help": "Weight of CPO's NLL term."})
    baseline: str | None = field(default=None, metadata={"help": "None, 'cdpo' or 'rdpo' (known noise rate)."})
    noise_eps: float = field(default=0.1, metadata={"help": "Known label-noise rate of cdpo / rdpo, in (0, 0.5)."})
    lm_head: str = field(default="auto", metadata={
        "help": "How the policy's log-probs are computed: 'fused' (TRL's fused LM head, DPOTrainer's forward: no "
                "(B, T, V) logits), 'logits' (the model's full logits and TRL's selective_log_softmax, as "
                "CPOTrainer does) or 'auto' (fused where TRL runs it as a Triton kernel, i.e. CUDA / XPU; logits "
                "elsewhere, where TRL's fallback is slower and, measured on CPU, no smaller)."})

    def __post_init__(self):
        super().__post_init__()
        choices = {"pref_loss": PREF_LOSSES, "eta_update": ETA_UPDATES, "objective": OBJECTIVES,
                   "baseline": (None, *BASELINES), "lm_head": LM_HEADS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"RobustConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        try:
            check_eta0(self.eta0)
            check_alpha(self.ema_alpha)
        except ValueError as e:
            raise ValueError(f"RobustConfig: {e} (fields eta0 / ema_alpha)") from None
        if self.baseline is not None:
            if self.robust:
                raise ValueError(f"RobustConfig.baseline={self.baseline!r} needs robust=False")
            if not 0.0 < self.noise_eps < 0.5:
                raise ValueError(f"RobustConfig.noise_eps must be in (0, 0.5), got {self.noise_eps}")
        if self.num_annotators is not None and self.num_annotators < 1:
            raise ValueError(f"RobustConfig.num_annotators must be >= 1, got {self.num_annotators}")
        if self.cpo_alpha < 0:
            raise ValueError(f"RobustConfig.cpo_alpha must be >= 0, got {self.cpo_alpha}")
        # TRL options that _compute_loss would silently ignore are refused instead.
        unsupported = {"loss_type": (self.loss_type, ["sigmoid"]), "ld_alpha": (self.ld_alpha, None),
                       "f_divergence_type": (self.f_divergence_type, "reverse_kl"),
                       "use_weighting": (self.use_weighting, False), "label_smoothing": (self.label_smoothing, 0.0)}
        for name, (value, default) in unsupported.items():
            if value != default:
                raise ValueError(f"RobustConfig does not support {name}={value!r} (keep {default!r}); "
                                 "choose the loss with pref_loss / baseline / noise_eps")
        if self.pref_loss not in NEEDS_REFERENCE and self.sync_ref_model:
            raise ValueError(f"pref_loss={self.pref_loss!r} is reference-free: sync_ref_model must be False")


def _rdpo(loss_wl, loss_lw, w, args):
    eps = args.noise_eps  # Chowdhury et al. 2024: unbiased under a known flip rate eps
    return ((1.0 - eps) * loss_wl - eps * loss_lw) / (1.0 - 2.0 * eps)


#: method -> per-example loss (loss_wl, loss_lw, w, args) -> (B,); reduced once by the caller. RPO itself
#: is not here: it goes through rpo.em.e_step_and_loss (eqs. 4 and 5 in one pass) in _compute_loss.
OBJECTIVE_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "plain": lambda loss_wl, loss_lw, w, args: loss_wl,
    "cdpo": lambda loss_wl, loss_lw, w, args: rpo_loss(
        loss_wl, loss_lw, torch.full_like(loss_wl, 1.0 - args.noise_eps), "weighted"),
    "rdpo": _rdpo,
}


@dataclass
class RobustCollator:
    """Wraps TRL's preference collator and carries the annotator ids through: adds
    ``rpo_annotator_id`` (B,) long to its batch (TRL's collator drops unknown keys)."""

    base: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base(examples)
        batch[ANNOTATOR_ID] = torch.tensor([int(ex[ANNOTATOR_ID]) for ex in examples], dtype=torch.long)
        return batch


class _EtaCallback(TrainerCallback):
    """Calls the trainer at the optimizer step's end (eq. 7) and at the epoch's end (eq. 6)."""

    def __init__(self, trainer: "RobustTrainer"):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._end_of_step()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._end_of_epoch()


def _is_empty(response) -> bool:
    if isinstance(response, str):
        return not response.strip()
    if isinstance(response, list):  # conversational: a list of {"role", "content"} messages
        return all(not str(m.get("content", "")).strip() for m in response)
    return response is None


def _atomic_write_json(path: str, obj) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


class RobustTrainer(DPOTrainer):
    """TRL's DPOTrainer running RPO (Algorithm 1) or a plain / baseline preference loss.

    Args: as :class:`trl.DPOTrainer`; ``args`` must be a :class:`RobustConfig`. The datasets need
    ``prompt``, ``chosen``, ``rejected`` columns (explicit prompt) and optionally
    ``args.annotator_column``. For dpo / ipo give a ``ref_model``, PEFT, or
    ``precompute_ref_log_probs=True``; for simpo / cpo no reference is built (passing one is an error).

    Public state: ``eta`` ((K,) float64 tensor), ``annotator_names`` (list of K str),
    ``num_identical_skipped`` (dict split -> count). Metrics per step: ``w/mean``,
    ``w/frac_below_0.5``, ``eta/<name>``.
    """

    _tag_names = ["trl", "dpo", "rpo"]

    def __init__(self, model, ref_model=None, args: RobustConfig | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, **kwargs):
        if not isinstance(args, RobustConfig):
            raise TypeError(f"RobustTrainer needs args=RobustConfig(...), got {type(args).__name__}")
        import trl

        if trl.__version__ != TESTED_TRL_VERSION:
            logger.warning("RobustTrainer mirrors TRL %s internals; found TRL %s", TESTED_TRL_VERSION, trl.__version__)
        self._reference_free = args.pref_loss not in NEEDS_REFERENCE
        if self._reference_free and ref_model is not None:
            raise ValueError(f"pref_loss={args.pref_loss!r} is reference-free: do not pass a ref_model")
        self.method = "rpo" if args.robust else (args.baseline or "plain")
        self._cfg = args  # Trainer sets self.args only after DPOTrainer has prepared the datasets
        self.annotator_names: list[str] | None = None
        self.num_identical_skipped: dict[str, int] = {}
        user_precompute = args.precompute_ref_log_probs
        if self._reference_free:
            args.precompute_ref_log_probs = True  # DPOTrainer then builds no reference; see _precompute_ref_logps
        try:
            super().__init__(model, ref_model, args, data_collator, train_dataset, eval_dataset,
                             processing_class, **kwargs)
        finally:
            args.precompute_ref_log_probs = user_precompute
        if self._reference_free:
            self.precompute_ref_logps = False
        self.data_collator = RobustCollator(self.data_collator)
        # DPOTrainer's fused head also computes entropy, mean logits and top-1 hits for its metrics; this
        # trainer logs none of them, so the head is re-patched to compute the log-probs only.
        add_fused_lm_head(self.model.get_base_model() if is_peft_model(self.model) else self.model)
        self._fused_head = args.lm_head == "fused" or (args.lm_head == "auto"
                                                       and _use_triton(self.accelerator.device))
        self.eta = init_eta(len(self.annotator_names), args.eta0)
        # eq. 7's statistics of the current optimizer step, per annotator: sum of w and count (Python floats)
        self._step_sums = [0.0] * len(self.annotator_names)
        self._step_counts = [0] * len(self.annotator_names)
        self.add_callback(_EtaCallback(self))
        if self.args.should_save:
            _atomic_write_json(os.path.join(args.output_dir, ANNOTATORS_FILE), self._annotator_record())

    # ---- data: validation, annotator ids, identical pairs -------------------------------------------------
    def _annotator_record(self) -> dict:
        return {"annotator_column": self.args.annotator_column, "names": self.annotator_names,
                "ids": {name: i for i, name in enumerate(self.annotator_names)}}

    def _annotator_ids(self, dataset, name: str) -> list[int]:
        """Integer ids in [0, K) for every row; fixes the name -> id mapping on the training set."""
        col = self._cfg.annotator_column
        if col not in dataset.column_names:
            if self.annotator_names is None:
                self.annotator_names = [VIRTUAL_ANNOTATOR]
            elif self.annotator_names != [VIRTUAL_ANNOTATOR]:
                raise ValueError(f"{name} dataset has no {col!r} column, but the training set has annotators")
            return [0] * len(dataset)
        values = dataset[col]
        kinds = {type(v) for v in values}
        if kinds <= {str}:
            if self.annotator_names is None:
                self.annotator_names = sorted(set(values))
            index = {n: i for i, n in enumerate(self.annotator_names)}
            unknown = sorted(set(values) - set(index))
            if unknown:
                raise ValueError(f"{name} dataset column {col!r}: annotators {unknown[:5]} not in the training set")
            return [index[v] for v in values]
        bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise ValueError(f"{name} dataset column {col!r} must hold integer ids or string names; row {bad[0]} "
                             f"holds {values[bad[0]]!r} ({type(values[bad[0]]).__name__})")
        if self.annotator_names is None:
            k = self._cfg.num_annotators or (max(values) + 1 if values else 1)
            self.annotator_names = [str(i) for i in range(k)]
        k = len(self.annotator_names)
        bad = [i for i, v in enumerate(values) if not 0 <= v < k]
        if bad:
            raise ValueError(f"{name} dataset column {col!r}: id {values[bad[0]]} at row {bad[0]} is out of "
                             f"range [0, {k})")
        return values

    def _validate(self, dataset, name: str, drop_identical: bool):
        from datasets import Dataset

        if not isinstance(dataset, Dataset):
            raise TypeError(f"RobustTrainer needs a map-style datasets.Dataset for {name}, got {type(dataset).__name__}")
        missing = [c for c in ("prompt", "chosen", "rejected") if c not in dataset.column_names]
        if missing:
            raise ValueError(f"{name} dataset is missing column(s) {missing}; has {dataset.column_names}")
        chosen, rejected = dataset["chosen"], dataset["rejected"]
        for column, values in (("chosen", chosen), ("rejected", rejected)):
            empty = [i for i, v in enumerate(values) if _is_empty(v)]
            if empty:
                raise ValueError(f"{name} dataset: empty {column!r} response at row(s) {empty[:10]}")
        ids = self._annotator_ids(dataset, name)
        if ANNOTATOR_ID in dataset.column_names:
            dataset = dataset.remove_columns(ANNOTATOR_ID)
        dataset = dataset.add_column(ANNOTATOR_ID, ids)
        identical = [i for i, (c, r) in enumerate(zip(chosen, rejected)) if c == r]
        if drop_identical and identical:
            logger.warning("%s dataset: skipped %d pair(s) whose chosen and rejected are identical (rows %s...)",
                           name, len(identical), identical[:10])
            drop = set(identical)
            dataset = dataset.select([i for i in range(len(dataset)) if i not in drop])
        if drop_identical:
            self.num_identical_skipped[name] = len(identical)
        return dataset

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = self._validate(dataset, dataset_name, drop_identical=True)
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if ANNOTATOR_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, ANNOTATOR_ID]

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self._reference_free:  # see __init__: the flag only stops DPOTrainer from building a reference
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    # ---- loss ---------------------------------------------------------------------------------------------
    def _logps(self, model, inputs):
        """TRL's forward (as in ``DPOTrainer._compute_loss``): the positional arguments of the math core's
        losses, ``(chosen_logps, rejected_logps, chosen_lengths, rejected_lengths, ref_chosen, ref_rejected)``,
        each (B,) (the references None when reference-free), plus the model kwargs and outputs."""
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:  # MoE: as DPOTrainer, ask for router logits to get outputs.aux_loss
            model_kwargs["output_router_logits"] = True
        if self._fused_head:
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
            per_token = outputs.log_probs[:, -seq_len:]
        else:  # the model's own head; position t predicts token t + 1
            outputs = model(**model_kwargs)
            per_token = selective_log_softmax(outputs.logits[:, :-1], inputs["input_ids"][:, 1:])
            per_token = per_token.masked_fill(completion_mask[:, 1:] == 0, 0.0)
        chosen_logps, rejected_logps = per_token.sum(dim=1).chunk(2, dim=0)
        chosen_len, rejected_len = completion_mask.sum(dim=1).chunk(2, dim=0)  # TRL's ipo convention
        ref = (None, None)
        if not self._reference_free:
            if "ref_chosen_logps" in inputs:
                ref = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                if self.ref_model is None and not is_peft_model(self.model):
                    raise ValueError("reference log-probs are unavailable: pass ref_model, use PEFT, or a dataset "
                                     "with ref_chosen_logps / ref_rejected_logps columns")
                trl_inputs = {k: v for k, v in inputs.items() if k != ANNOTATOR_ID}
                ref = self.compute_ref_log_probs(self.ref_model if self.ref_model is not None else self.model,
                                                 trl_inputs)
        return (chosen_logps, rejected_logps, chosen_len, rejected_len, *ref), model_kwargs, outputs

    def _loss_options(self) -> dict:
        a = self.args  # validate=False: hot path, log-probs come from the model and lengths are >= 1
        return dict(beta=a.beta, gamma=a.gamma, cpo_alpha=a.cpo_alpha, validate=False)

    def _pair_losses(self, model, inputs):
        """Table 1 pair losses ``(loss_wl, loss_lw)``, each (B,), from TRL's forward."""
        logps, _, _ = self._logps(model, inputs)
        return pair_losses(self.args.pref_loss, *logps, **self._loss_options())

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        logps, model_kwargs, outputs = self._logps(model, inputs)
        w = None
        if self.method == "rpo":  # eqs. 4 and 5 in one pass; eta (hence the prior) as at the step's start
            ids = inputs[ANNOTATOR_ID]
            if self.args.objective == "gibbs":  # needs only eq. 2's log-odds, in closed form
                d = gibbs_log_odds(self.args.pref_loss, *logps, **self._loss_options())
                if d.dtype not in (torch.float32, torch.float64):
                    d = d.float()  # eqs. 4 and 5 in at least float32, as rpo.em does
                prior = self._prior if self._prior.numel() == 1 else self._prior[ids]  # K = 1: broadcast
                per_example, w = gibbs_e_step_and_loss(d, prior)
            else:
                loss_wl, loss_lw = pair_losses(self.args.pref_loss, *logps, **self._loss_options())
                per_example, w = e_step_and_loss(loss_wl, loss_lw, self.eta.to(loss_wl.device)[ids],
                                                 "weighted", validate=False)
        else:
            loss_wl, loss_lw = pair_losses(self.args.pref_loss, *logps, **self._loss_options())
            per_example = OBJECTIVE_FNS[self.method](loss_wl, loss_lw, w, self.args)
        loss = per_example.mean()
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
        feed_eq7 = w is not None and mode == "train" and self.args.eta_update == "batch"
        self._log_batch_metrics(mode, logps, w, inputs[ANNOTATOR_ID] if feed_eq7 else None)
        if return_outputs:  # TRL's eval path asks for logits; the fused head built none (as DPOTrainer does)
            if self._fused_head:
                with torch.no_grad():
                    outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    def _log_batch_metrics(self, mode: str, logps, w, ids) -> None:
        """DPOTrainer's reward / log-prob metrics, plus ``w/mean`` and ``w/frac_below_0.5`` under RPO: one
        gather, one host sync, the means taken on the host (a few dozen floats; each tiny device op would
        cost more). Given ``ids``, the same sync brings every process's ``(w, annotator)`` of this
        micro-batch to every rank, where they are added to eq. 7's per-step sums; so all ranks hold the
        same sums, and eta, without a collective of their own (padding duplicates of an uneven last batch
        are dropped by ``gather_for_metrics``)."""
        chosen_logps, rejected_logps, _, _, ref_chosen, ref_rejected = logps
        chosen_logps, rejected_logps = chosen_logps.detach().float(), rejected_logps.detach().float()
        cols = [self.beta * (chosen_logps - (0 if ref_chosen is None else ref_chosen)),
                self.beta * (rejected_logps - (0 if ref_rejected is None else ref_rejected)),
                chosen_logps, rejected_logps]
        if w is not None:
            cols.append(w.float())
        if ids is not None:
            cols.append(ids.float())  # exact: ids < 2**24
        rows = self.accelerator.gather_for_metrics(torch.stack(cols, dim=1)).tolist()  # global B rows
        if not rows:
            return
        n = len(rows)
        columns = list(zip(*rows))
        metrics = self._metrics[mode]
        for name, column in zip(("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"), columns):
            metrics[name].append(sum(column) / n)
        metrics["rewards/margins"].append(sum(c - r for c, r in zip(columns[0], columns[1])) / n)
        metrics["rewards/accuracies"].append(sum(c > r for c, r in zip(columns[0], columns[1])) / n)
        if w is not None:
            metrics["w/mean"].append(sum(columns[4]) / n)
            metrics["w/frac_below_0.5"].append(sum(x < 0.5 for x in columns[4]) / n)
        if ids is not None:
            for w_i, k in zip(columns[4], columns[5]):
                self._step_sums[int(k)] += w_i
                self._step_counts[int(k)] += 1

    # ---- eta: eq. 7 per optimizer step, eq. 6 per epoch ---------------------------------------------------
    @property
    def eta(self) -> torch.Tensor:
        """(K,) float64 on the CPU: each annotator's reliability. Assigning it also refreshes the (K,)
        prior log-odds table the E-step indexes on the device (an in-place edit would not)."""
        return self._eta

    @eta.setter
    def eta(self, value: torch.Tensor) -> None:
        self._set_eta(value.detach().to("cpu", torch.float64).tolist())

    def _set_eta(self, values: list[float]) -> None:
        self._eta = torch.tensor(values, dtype=torch.float64)
        self._prior = torch.tensor([prior_log_odds(v) for v in values], dtype=torch.float32,
                                   device=self.accelerator.device)

    def _end_of_step(self) -> None:
        if self.method == "rpo" and self.args.eta_update == "batch":
            alpha = self.args.ema_alpha  # eq. 7 on K floats: cheaper than a dozen tiny tensor ops
            self._set_eta([ema_step(e, s, c, alpha)
                           for e, s, c in zip(self._eta.tolist(), self._step_sums, self._step_counts)])
            self._step_sums = [0.0] * len(self.annotator_names)
            self._step_counts = [0] * len(self.annotator_names)
        self._log_eta()

    def _end_of_epoch(self) -> None:
        if self.method == "rpo" and self.args.eta_update == "epoch":
            w = self.label_confidences()
            ids = torch.tensor(self.train_dataset[ANNOTATOR_ID], dtype=torch.long)
            self.eta = full_update(w, ids, len(self.annotator_names), self.eta)
            self._log_eta()

    def _log_eta(self) -> None:
        if self.method == "rpo":
            for name, value in zip(self.annotator_names, self._eta.tolist()):
                self._metrics["train"][f"eta/{name}"] = [value]

    @torch.no_grad()
    def label_confidences(self, dataset=None, batch_size: int | None = None) -> torch.Tensor:
        """Full E-step (eq. 4): ``w`` (N,) float, the posterior that each row's label is correct.

        ``dataset=None`` uses the prepared training set (identical pairs already skipped); a raw dataset
        (prompt/chosen/rejected[/annotator]) is validated and tokenised first, and every row is kept (an
        identical pair gets ``w = eta``). Runs in eval mode, sharded over processes, gathered in order.
        """
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        if dataset is None:
            dataset = self.train_dataset
        else:
            dataset = self._validate(dataset, "label_confidences", drop_identical=False)
            dataset = DPOTrainer._prepare_dataset(self, dataset, self.processing_class, self.args, "label_confidences")
        keep = ["prompt_ids", "chosen_ids", "rejected_ids", ANNOTATOR_ID, "ref_chosen_logps", "ref_rejected_logps"]
        dataset = dataset.select_columns([c for c in keep if c in dataset.column_names])
        loader = DataLoader(dataset, batch_size=batch_size or self.args.per_device_eval_batch_size,
                            collate_fn=self.data_collator, shuffle=False)
        loader = self.accelerator.prepare_data_loader(loader)
        model, was_training = self.model_wrapped, self.model.training
        self.model.eval()
        out = []
        try:
            for batch in tqdm(loader, desc="E-step (eq. 4)", disable=not self.accelerator.is_local_main_process):
                loss_wl, loss_lw, *_ = self._pair_losses(model, batch)
                w = e_step(loss_wl, loss_lw, self.eta.to(loss_wl.device)[batch[ANNOTATOR_ID]])
                out.append(self.accelerator.gather_for_metrics(w).cpu())
        finally:
            self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    # ---- eta is trainer state: checkpoint and resume ------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            _atomic_write_json(os.path.join(folder, STATE_FILE),
                               {"eta": self.eta.tolist(), "global_step": self.state.global_step,
                                **self._annotator_record()})

    def _load_rpo_state(self, checkpoint: str) -> None:
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.exists(path):
            raise ValueError(f"{checkpoint} has no {STATE_FILE}: it was not written by RobustTrainer")
        with open(path) as f:
            state = json.load(f)
        if state["names"] != self.annotator_names:
            raise ValueError(f"{path}: annotators {state['names']} differ from this run's {self.annotator_names}")
        self.eta = torch.tensor(state["eta"], dtype=torch.float64)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """As :meth:`transformers.Trainer.train`; on resume also restores eta from the checkpoint."""
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint found in output_dir {self.args.output_dir}")
        if resume_from_checkpoint:
            self._load_rpo_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)


__all__ = ["RobustConfig", "RobustTrainer", "RobustCollator", "OBJECTIVE_FNS", "LOSSES", "TESTED_TRL_VERSION"]
