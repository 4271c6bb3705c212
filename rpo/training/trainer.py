"""RobustTrainer: R-DPO, R-IPO, R-SimPO, R-CPO (Algorithm 1) and their plain bases, through TRL's DPOTrainer.

One code path for every method of the registry (:mod:`rpo.core.methods`), so that a comparison measures
RPO and nothing else. The trainer only wires; each step is somebody else's job:

1. data: the one validator and the annotator-id mapping (:mod:`rpo.data.schema`);
2. forward: summed completion log-probs, policy and reference (:mod:`rpo.training.forward`);
3. objective: the per-example loss and, under RPO, the E-step weights w (:mod:`rpo.core.objectives`),
   reduced once with ``.mean()``;
4. eta: the reliability tracker (:class:`rpo.core.reliability.ReliabilityTracker`). ``eta_update="batch"``:
   every micro-batch's ``(w, annotator)`` rows of every process are added to the step's sums, and eq. 7
   runs once at the optimizer step's end, so the trajectory does not depend on how the global batch is
   split; each micro-batch's E-step uses eta as it was at the step's start. ``"count"``: the same sums,
   the count-aware rule instead of eq. 7. ``"epoch"``: after each epoch a full E-step over the training
   set sets eta by eq. 6. ``refit_eta``: :meth:`RobustTrainer.fit_reliability` (exact EM at the current
   model) after training or at every epoch end;
5. logging: DPOTrainer's reward / log-prob metrics, ``w/mean``, ``w/frac_below_0.5``, ``eta/<name>``.

Choices (also in the README): a pair whose chosen and rejected are identical carries no preference and is
skipped from training with a logged count (``num_identical_skipped``); SimPO and CPO are reference-free
(no reference model is built or loaded, :mod:`rpo.training.compat`); CPO's NLL is TRL's batch token-mean,
so CPO's w depends weakly on the micro-batch; under several processes the padding duplicates accelerate
adds to an uneven last batch are dropped from metrics and eq. 7 alike (``gather_for_metrics``).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from transformers import TrainerCallback
from trl import DPOTrainer

from rpo.core.objectives import OBJECTIVES, ObjectiveContext, objective_key
from rpo.core.reliability import ReliabilityTracker
from rpo.data.schema import annotator_ids, identical_rows, validate_preferences, validate_stream
from rpo.io import atomic_write_json, read_json
from rpo.training import checkpoints, compat
from rpo.training.collator import ANNOTATOR_ID, RobustCollator
from rpo.training.config import RobustConfig
from rpo.training.forward import forward, reference_pass, token_stats
from rpo.training.metrics import TOKEN_STATS, gather_columns, log_batch, log_token_stats
from rpo.training.scoring import score_pass

logger = logging.getLogger(__name__)

STATE_FILE = checkpoints.STATE_FILE  # "rpo_state.json"
ANNOTATORS_FILE = "annotators.json"


class _EtaCallback(TrainerCallback):
    """Eq. 7 at the optimizer step's end, eq. 6 (or a refit) at the epoch's end, a refit at the training's end."""

    def __init__(self, trainer: "RobustTrainer"):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._end_of_step()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.trainer._end_of_epoch()

    def on_train_end(self, args, state, control, **kwargs):
        if args.refit_eta == "end":
            self.trainer.fit_reliability()


class RobustTrainer(DPOTrainer):
    """TRL's DPOTrainer running RPO (Algorithm 1) or a plain / baseline preference loss.

    Args: as :class:`trl.DPOTrainer`; ``args`` must be a :class:`RobustConfig`. The datasets need
    ``prompt``, ``chosen``, ``rejected`` columns (explicit prompt) and optionally ``args.annotator_column``.
    For dpo / ipo give a ``ref_model``, PEFT, or ``precompute_ref_log_probs=True``; for simpo / cpo no
    reference is built (passing one is an error).

    Public state: ``eta`` ((K,) float64), ``annotator_names`` (K str), ``reliability`` (the tracker),
    ``method`` (the registry entry), ``num_identical_skipped`` (split -> count).
    """

    _tag_names = ["trl", "dpo", "rpo"]

    def __init__(
        self,
        model,
        ref_model=None,
        args: RobustConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        **kwargs,
    ):
        if not isinstance(args, RobustConfig):
            raise TypeError(f"RobustTrainer needs args=RobustConfig(...), got {type(args).__name__}")
        compat.check_trl_version()
        self.method = args.method
        self._reference_free = not self.method.needs_reference
        if self._reference_free and ref_model is not None:
            raise ValueError(f"pref_loss={args.pref_loss!r} is reference-free: do not pass a ref_model")
        self._cfg = args  # Trainer sets self.args only after DPOTrainer has prepared the datasets
        self.annotator_names: list[str] | None = None
        self.num_identical_skipped: dict[str, int] = {}
        # implicit prompts extracted as TRL does, image data (which DPOTrainer does not prepare) validated here
        train_dataset, eval_dataset = compat.raw_splits(train_dataset, eval_dataset, self._validate)
        # the data's mistakes are named here, before TRL peeks at the first row (an empty set would end in
        # a bare StopIteration inside DPOTrainer.__init__)
        for split, data in (("train", train_dataset), ("eval", eval_dataset)):
            for key, ds in (data.items() if isinstance(data, dict) else [(None, data)]) if data is not None else []:
                self._check_dataset(ds, split if key is None else f"{split}[{key!r}]", need_preference=True)
        with compat.no_reference_built(args, self._reference_free):
            super().__init__(
                model, ref_model, args, data_collator, train_dataset, eval_dataset, processing_class, **kwargs
            )
        if self._reference_free:
            self.precompute_ref_logps = False
        self.data_collator = RobustCollator(self.data_collator, 0 if len(self.annotator_names) == 1 else None)
        self.fused_head = compat.use_fused_head(args.lm_head, self.model, self.accelerator)
        if not self.fused_head:  # the fused path keeps DPOTrainer's head: its extra outputs feed the metrics
            compat.logps_only_head(self.model)
        self._objective = OBJECTIVES[objective_key(self.method.objective, args.objective)]
        self.reliability = ReliabilityTracker(
            self.annotator_names,
            args.eta0,
            args.ema_alpha,
            device=self.accelerator.device,
            update="count" if args.eta_update == "count" else "ema",
            prior_strength=args.eta_prior_strength,
        )
        self.add_callback(_EtaCallback(self))
        if self.args.should_save:
            atomic_write_json(os.path.join(args.output_dir, ANNOTATORS_FILE), self._annotator_record())

    @property
    def eta(self) -> torch.Tensor:
        """(K,) float64 on the CPU: each annotator's reliability (assigning it refreshes the E-step's prior)."""
        return self.reliability.eta

    @eta.setter
    def eta(self, value) -> None:
        self.reliability.eta = value

    # ---- data: the one validator, annotator ids, identical pairs
    def _annotator_record(self) -> dict:
        return {
            "annotator_column": self.args.annotator_column,
            "names": self.annotator_names,
            "ids": {name: i for i, name in enumerate(self.annotator_names)},
        }

    def _check_dataset(self, dataset, name: str, need_preference: bool) -> None:
        """The one validator (:func:`rpo.data.schema.validate_preferences`) on a map-style Dataset."""
        from datasets import Dataset, IterableDataset

        if isinstance(dataset, IterableDataset):
            return  # validated row by row as it streams (_validate)
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"RobustTrainer needs a datasets.Dataset or IterableDataset for {name}, got {type(dataset).__name__}"
            )
        validate_preferences(
            dataset,
            name=f"{name} dataset",
            annotator_column=self._cfg.annotator_column,
            need_preference=need_preference,
        )

    def _validate(self, dataset, name: str, drop_identical: bool):
        dataset = compat.with_explicit_prompt(dataset)
        ids_of = compat.annotator_mapping(self, name)
        if compat.is_streamed(dataset):  # validated and mapped row by row as it streams
            dataset, self.annotator_names = validate_stream(dataset, ANNOTATOR_ID, drop_identical, **ids_of)
            return dataset
        self._check_dataset(dataset, name, need_preference=drop_identical)
        ids, self.annotator_names = annotator_ids(dataset, allow_gaps=False, **ids_of)
        if ANNOTATOR_ID in dataset.column_names:
            dataset = dataset.remove_columns(ANNOTATOR_ID)
        dataset = dataset.add_column(ANNOTATOR_ID, ids)
        if drop_identical:
            identical = identical_rows(dataset)
            if identical:
                logger.warning(
                    "%s dataset: skipped %d pair(s) whose chosen and rejected are identical (rows %s...)",
                    name,
                    len(identical),
                    identical[:10],
                )
                drop = set(identical)
                dataset = dataset.select([i for i in range(len(dataset)) if i not in drop])
            self.num_identical_skipped[name] = len(identical)
        return dataset

    def compute_ref_log_probs(self, model, inputs):
        """The reference pass, by the policy's head (:func:`rpo.training.forward.reference_pass`); no annotator ids."""
        return reference_pass(self, super().compute_ref_log_probs, model, inputs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = self._validate(dataset, dataset_name, drop_identical=True)
        dataset = compat.prepared(self, dataset, dataset_name, processing_class, args)  # text: in batches
        # TRL's truncation / filtering left nothing (a sampler error would follow)
        if not compat.is_streamed(dataset) and len(dataset) == 0:
            raise ValueError(
                f"{dataset_name} dataset: no pair is left after tokenisation (max_length={args.max_length}, "
                f"max_prompt_length={getattr(args, 'max_prompt_length', None)}); raise them or shorten the data"
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, ANNOTATOR_ID]))

    def _get_dataloader(self, dataset, description, *a, **kw):  # evaluate / predict: a raw image set gets its ids
        return super()._get_dataloader(compat.with_annotator_ids(self, dataset, description), description, *a, **kw)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if compat.skip_precompute(self._reference_free):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    # ---- loss: forward -> objective -> tracker -> log
    def _loss_options(self) -> dict:
        a = self.args  # validate=False: hot path, log-probs come from the model and lengths are >= 1
        return dict(beta=a.beta, gamma=a.gamma, cpo_alpha=a.cpo_alpha, validate=False)

    def _forward(self, model, inputs):
        return forward(self, model, inputs, fused=self.fused_head, reference_free=self._reference_free)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        logps, model_kwargs, outputs = self._forward(model, inputs)
        ids = inputs[ANNOTATOR_ID]
        robust = self.method.robust  # eta (hence the prior) as at the optimizer step's start
        ctx = ObjectiveContext(
            self.args.pref_loss,
            self._loss_options(),
            noise_eps=self.args.noise_eps,
            smoothing=self.args.smoothing,
            holder_gamma=self.args.holder_gamma,
            prior=self.reliability.prior(ids) if robust and self.args.objective == "gibbs" else None,
            eta=self.reliability.eta_of(ids) if robust and self.args.objective == "weighted" else None,
        )
        per_example, w = self._objective(logps, ctx)
        loss = per_example.mean()
        if self.aux_loss_enabled:  # MoE: added and logged as DPOTrainer does
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather_for_metrics(outputs.aux_loss).mean().item())
        feed_eq7 = w is not None and mode == "train" and self.args.eta_update in ("batch", "count")
        stats = token_stats(outputs, inputs, fused=self.fused_head)  # in the same gather: no extra host sync
        columns = gather_columns(self.accelerator, self.beta, logps, w, ids if feed_eq7 else None, stats)
        columns, stats = columns[:-TOKEN_STATS], columns[-TOKEN_STATS:]
        log_batch(self._metrics[mode], columns, with_w=w is not None)
        tokens = log_token_stats(self._metrics[mode], stats, self._total_train_tokens, mode == "train", self._tp_size)
        self._total_train_tokens = tokens
        if feed_eq7 and columns:
            self.reliability.add(columns[4], columns[5])
        if return_outputs:  # TRL's eval path asks for logits; the fused head built none (as DPOTrainer does)
            if self.fused_head:
                with torch.no_grad():
                    outputs = model(**model_kwargs)
            return loss, outputs
        return loss

    # ---- eta: eq. 7 (or the count rule) per optimizer step, eq. 6 per epoch, exact EM on request
    def _end_of_step(self) -> None:
        if self.method.robust and self.args.eta_update in ("batch", "count"):
            self.reliability.step()
        self._log_eta()

    def _end_of_epoch(self) -> None:
        if self.method.robust and self.args.eta_update == "epoch":
            w, ids = self._score_pass(None, None, self._e_step, "E-step (eq. 4)")  # ids from the pass: streams too
            self.reliability.full_update(w, ids.long())
            self._log_eta()
        if self.args.refit_eta == "epoch":
            self.fit_reliability()

    @torch.no_grad()
    def fit_reliability(
        self, dataset=None, *, max_iter: int | None = None, tol: float | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """Exact EM for eta at the current model (Theorem 4.2's operator on the data): eq. 2's log-odds of
        every row (:meth:`log_odds`, sharded over processes and gathered, so every rank computes the same
        eta), then eq. 4 with them held fixed and eq. 6, from the current eta to the fixed point
        (:func:`rpo.core.em.fixed_point_eta`). Sets eta (the E-step's prior follows), logs ``eta/<name>``
        and ``eta_refit/iterations`` as one log entry and a logger line, and returns eta (K,) float64.

        ``dataset=None``: the prepared training set; rows as :meth:`label_confidences`. An annotator with
        no row keeps its value. ``max_iter`` / ``tol`` default to the config's ``refit_max_iter`` /
        ``refit_tol``. Under ``eta_update="count"`` the label counts are kept: the count rule carries the
        refitted value on with the weight of every label seen so far."""
        from transformers import Trainer

        from rpo.core.em import fixed_point_eta

        d, ids = self.log_odds(dataset, batch_size)
        eta, _, iters = fixed_point_eta(
            d,
            ids,
            self.reliability.num_annotators,
            self.eta,
            max_iter=max_iter or self.args.refit_max_iter,
            tol=tol or self.args.refit_tol,
        )
        self.eta = eta
        values = dict(zip(self.annotator_names, eta.tolist()))
        logger.info(
            "fit_reliability: exact EM over %d labels, %d iteration(s): eta = %s",
            len(d),
            iters,
            {k: round(v, 4) for k, v in list(values.items())[:20]},
        )
        Trainer.log(self, {**{f"eta/{k}": v for k, v in values.items()}, "eta_refit/iterations": float(iters)})
        return eta

    def _log_eta(self) -> None:
        if self.method.robust:
            for name, value in zip(self.annotator_names, self.eta.tolist()):
                self._metrics["train"][f"eta/{name}"] = [value]

    def _e_step(self, loss_wl, loss_lw, ids):
        from rpo.core.em import e_step

        ids = ids.to(loss_wl.device)
        return e_step(loss_wl, loss_lw, self.reliability.eta_of(ids)), ids

    @torch.no_grad()
    def label_confidences(self, dataset=None, batch_size: int | None = None) -> torch.Tensor:
        """Full E-step (eq. 4): ``w`` (N,) float, the posterior that each row's label is correct.

        ``dataset=None`` uses the prepared training set (identical pairs already skipped); a raw dataset
        (prompt/chosen/rejected[/annotator]) is validated and tokenised first, and every row is kept (an
        identical pair gets ``w = eta``). Runs in eval mode, sharded over processes, gathered in order.
        """
        return self._score_pass(dataset, batch_size, self._e_step, "E-step (eq. 4)")[0]

    @torch.no_grad()
    def log_odds(self, dataset=None, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2's log-odds at the current model, ``d = L(y_l > y_w) - L(y_w > y_l)`` (N,) float, and each
        row's annotator id (N,) long: the model's evidence for every label, without the prior (what an exact
        EM at a fixed model, :func:`rpo.core.em.fixed_point_eta`, needs). Rows as :meth:`label_confidences`."""
        from rpo.core.em import gap

        def score(loss_wl, loss_lw, ids):
            return gap(loss_wl, loss_lw), ids.to(loss_wl.device)

        d, ids = self._score_pass(dataset, batch_size, score, "eq. 2 log-odds")
        return d, ids.long()

    def _score_pass(self, dataset, batch_size, score, desc: str) -> list[torch.Tensor]:
        if dataset is not None:  # a raw dataset: validated, every row kept, tokenised as TRL does (not images)
            dataset = self._validate(dataset, "label_confidences", drop_identical=False)
            dataset = compat.prepared(self, dataset, "label_confidences", scoring=True)
        return score_pass(self, self.train_dataset if dataset is None else dataset, batch_size, score, desc)

    # ---- eta is trainer state: checkpoint and resume
    def _save_checkpoint(self, model, trial):
        # RPO's state first: transformers' _save_checkpoint ends by deleting older checkpoints
        # (save_total_limit), and a kill between that and a later write would leave none to resume from
        # (:mod:`rpo.training.checkpoints`). eta is final for this step: the step-end callback ran already.
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            atomic_write_json(
                os.path.join(folder, STATE_FILE),
                {"global_step": self.state.global_step, **self._annotator_record(), **self.reliability.state_dict()},
            )
        super()._save_checkpoint(model, trial)

    def _load_rpo_state(self, checkpoint: str) -> None:
        missing = checkpoints.missing_parts(checkpoint)
        if STATE_FILE in missing:
            raise ValueError(f"{checkpoint} has no {STATE_FILE}: it was not written by RobustTrainer")
        if missing:
            raise ValueError(f"{checkpoint} is incomplete (lacks {', '.join(missing)}): its save was interrupted")
        path = os.path.join(checkpoint, STATE_FILE)
        try:
            self.reliability.load_state_dict(read_json(path), source=path)
        except (KeyError, TypeError, ValueError) as e:  # a state file of another shape or bad values: name it
            if isinstance(e, ValueError) and path in str(e):
                raise
            raise ValueError(f"{path}: not a usable RPO state ({type(e).__name__}: {e})") from None

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """As :meth:`transformers.Trainer.train`; on resume also restores eta from the checkpoint.
        ``resume_from_checkpoint=True`` takes the newest *complete* checkpoint of ``output_dir``
        (:func:`rpo.training.checkpoints.newest_complete`), warning about newer ones whose save was cut."""
        if resume_from_checkpoint is True:
            folder, skipped = checkpoints.newest_complete(self.args.output_dir)
            for bad, missing in skipped:
                warnings.warn(
                    f"{bad} is incomplete (lacks {', '.join(missing)}; its save was interrupted): "
                    f"resuming from {folder.name if folder else 'nothing'} instead",
                    stacklevel=2,
                )
            if folder is None:
                raise ValueError(f"no complete checkpoint in output_dir {self.args.output_dir}")
            resume_from_checkpoint = str(folder)
        if resume_from_checkpoint:
            self._load_rpo_state(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
