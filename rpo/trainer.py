"""RobustTrainer: R-DPO, R-IPO, R-SimPO, R-CPO (Algorithm 1) and their plain bases, through TRL's DPOTrainer.

One code path for all eight methods (and the cDPO / rDPO baselines), so that a comparison measures RPO
and nothing else:

1. TRL's policy forward (fused LM head) gives summed completion log-probs, (2B,) split into chosen and
   rejected; TRL's reference log-probs come from precomputed columns or ``compute_ref_log_probs``.
2. The math core turns them into the pair ``(L(y_w > y_l), L(y_l > y_w))`` of Table 1
   (:func:`rpo.losses.pair_losses`), the E-step weights ``w`` (eq. 4, :func:`rpo.em.e_step`) and the
   M-step objective (eq. 5, :func:`rpo.em.rpo_loss`), reduced once with ``.mean()``.
3. eta (one reliability per annotator, float64) is trainer state. ``eta_update="batch"``: the ``w`` of
   every micro-batch of an optimizer step, gathered over every process, update eta once at the step's
   end (eq. 7), so the trajectory does not depend on how the global batch is split; each micro-batch's
   E-step uses eta as it was at the start of the step. ``eta_update="epoch"``: after each epoch a full
   E-step over the training set sets eta by eq. 6 (the paper's implementation note, section 5).

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
  accelerate's padding duplicates; they enter eq. 7 like TRL's own metrics do.
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
from trl.trainer.utils import add_fused_lm_head

from rpo.checks import check_alpha, check_eta0
from rpo.em import OBJECTIVES, e_step, e_step_and_loss, ema_update, full_update, init_eta, rpo_loss
from rpo.losses import LOSSES, NEEDS_REFERENCE, pair_losses

logger = logging.getLogger(__name__)

#: the TRL release whose internals ``_pair_losses`` mirrors (tests/test_trainer.py checks them)
TESTED_TRL_VERSION = "1.16.0"
PREF_LOSSES = ("dpo", "ipo", "simpo", "cpo")
ETA_UPDATES = ("batch", "epoch")
BASELINES = ("cdpo", "rdpo")
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

    def __post_init__(self):
        super().__post_init__()
        choices = {"pref_loss": PREF_LOSSES, "eta_update": ETA_UPDATES, "objective": OBJECTIVES,
                   "baseline": (None, *BASELINES)}
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
        self._w_buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
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
        self.eta = init_eta(len(self.annotator_names), args.eta0)
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
    def _pair_losses(self, model, inputs):
        """TRL's forward (as in ``DPOTrainer._compute_loss``) -> Table 1 pair losses, each (B,)."""
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:  # MoE: as DPOTrainer, ask for router logits to get outputs.aux_loss
            model_kwargs["output_router_logits"] = True
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        chosen_logps, rejected_logps = outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
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
        args = self.args
        loss_wl, loss_lw = pair_losses(args.pref_loss, chosen_logps, rejected_logps, chosen_len, rejected_len,
                                       *ref, beta=args.beta, gamma=args.gamma, cpo_alpha=args.cpo_alpha,
                                       validate=False)  # hot path: log-probs from the model, lengths >= 1
        return loss_wl, loss_lw, chosen_logps, rejected_logps, ref, model_kwargs, outputs

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        loss_wl, loss_lw, chosen_logps, rejected_logps, ref, model_kwargs, outputs = self._pair_losses(model, inputs)
        w = None
        if self.method == "rpo":  # eqs. 4 and 5 in one pass; eta as at the step's start
            ids = inputs[ANNOTATOR_ID].to(loss_wl.device)
            per_example, w = e_step_and_loss(loss_wl, loss_lw, self.eta.to(loss_wl.device)[ids],
                                             self.args.objective, validate=False)
            if mode == "train":
                self._w_buffer.append((w.cpu(), ids.cpu()))
        else:
            per_example = OBJECTIVE_FNS[self.method](loss_wl, loss_lw, w, self.args)
        loss = per_example.mean()
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        if w is not None:
            all_w = gather(w)
            mean_w, frac_low = torch.stack([all_w.mean(), (all_w < 0.5).float().mean()]).tolist()  # one sync
            metrics["w/mean"].append(mean_w)
            metrics["w/frac_below_0.5"].append(frac_low)
        chosen_rewards = self.beta * (chosen_logps.detach() - (0 if ref[0] is None else ref[0]))
        rejected_rewards = self.beta * (rejected_logps.detach() - (0 if ref[1] is None else ref[1]))
        margins = gather(chosen_rewards - rejected_rewards)
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/margins"].append(margins.mean().item())
        metrics["rewards/accuracies"].append((margins > 0).float().mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        if return_outputs:  # TRL's eval path asks for logits; the fused head built none (as DPOTrainer does)
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    # ---- eta: eq. 7 per optimizer step, eq. 6 per epoch ---------------------------------------------------
    def _gather_all(self, w: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every process's (w, ids), concatenated in rank order; ranks may hold different counts."""
        if self.accelerator.num_processes == 1:
            return w, ids
        device = self.accelerator.device
        ids = self.accelerator.pad_across_processes(ids.to(device), dim=0, pad_index=-1)
        w = self.accelerator.pad_across_processes(w.to(device), dim=0, pad_index=0)
        ids, w = self.accelerator.gather(ids).cpu(), self.accelerator.gather(w).cpu()
        keep = ids >= 0
        return w[keep], ids[keep]

    def _end_of_step(self) -> None:
        if self.method == "rpo" and self.args.eta_update == "batch":
            if self._w_buffer:
                w = torch.cat([b[0] for b in self._w_buffer])
                ids = torch.cat([b[1] for b in self._w_buffer])
            else:  # a rank without data must still join the collective
                w, ids = torch.zeros(0), torch.zeros(0, dtype=torch.long)
            w, ids = self._gather_all(w, ids)
            if ids.numel():
                self.eta = ema_update(self.eta, w, ids, self.args.ema_alpha, validate=False)  # ids checked on load
        self._w_buffer.clear()
        self._log_eta()

    def _end_of_epoch(self) -> None:
        if self.method == "rpo" and self.args.eta_update == "epoch":
            w = self.label_confidences()
            ids = torch.tensor(self.train_dataset[ANNOTATOR_ID], dtype=torch.long)
            self.eta = full_update(w, ids, len(self.annotator_names), self.eta)
            self._log_eta()

    def _log_eta(self) -> None:
        if self.method == "rpo":
            for name, value in zip(self.annotator_names, self.eta.tolist()):
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
