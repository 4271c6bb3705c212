"""One cell of the study: annotate the toy world's pairs, train one method, measure it against the truth.

``train_and_measure(world, config, seed, settings)`` is what ``notebooks/02_train.py`` calls for every
``(config, seed)`` of a run. A config is :data:`rpo.pipeline.profiles.DEFAULTS`-shaped (method, robust,
layout, noise, eta0, alpha, eta_update, objective); :class:`rpo.toy.settings.TrainSettings` holds what is
shared by every run of a profile. Metrics (all on data the trainer never saw labels of, except
``auroc_w``/``eta_*``, which are *about* the training labels and use the hidden truth only to score
RPO's own estimates):

* ``clean_acc``: does the policy's implicit reward rank the truly better response first, on clean test pairs;
* ``win_rate`` / ``mean_reward`` / ``exact``: the policy's samples on held-out prompts against the reference
  policy's samples, judged by the oracle (ties count half);
* ``lc_win_rate``: AlpacaEval 2's length-controlled win rate of the same judgments (alpaca_eval's own GLM,
  offline variant: see :mod:`rpo.evaluate.alpacaeval`);
* robust methods: ``eta_hat_k`` against ``eta_true_k`` (measured agreement with the oracle), the eta
  trajectory, ``auroc_w`` (AUROC of 1 - w for flagging flipped labels) and ``mean_w``.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from rpo.core.methods import from_config, trainer_kwargs
from rpo.toy.settings import TrainSettings

_REFERENCE_SAMPLES: dict = {}


def load_policy(world, model: str = "toy"):
    """``(policy, tokenizer)`` as training starts, which is also the reference policy: the toy world's
    SFT policy, or SmolLM2-135M-Instruct (``small``) trained on the same world's pairs."""
    if model == "toy":
        return world.load_reference()
    if model == "small":
        from rpo.models import load_model

        return load_model("small")
    raise ValueError(f"unknown policy model {model!r}; expected toy or small")


def reference_samples(world, prompts: list[str], n: int, model: str = "toy") -> list[str]:
    """The reference policy's samples on ``prompts`` (flattened ``[prompt][sample]``): the fixed
    opponent of every win rate, drawn once per process with a fixed seed so all runs face the same one."""
    from rpo.toy.policy import sample_responses

    key = (str(world.path), tuple(prompts), n, model)
    if key not in _REFERENCE_SAMPLES:
        ref, tok = load_policy(world, model)
        ref.eval()
        _REFERENCE_SAMPLES[key] = [s for ss in sample_responses(ref, tok, prompts, n=n, seed=10_000) for s in ss]
    return _REFERENCE_SAMPLES[key]


def annotate_pool(world, config: dict, seed: int, settings: TrainSettings):
    """Draw the run's training pairs (each seen once) and label them by the config's annotators."""
    from rpo.data.noise import apply_layout

    n = settings.max_steps * settings.batch_size
    if config["layout"] == "two":
        n //= 2  # each of the two annotators labels its own copy (section 5.4)
    pool = random.Random(seed).sample(world.train, min(n, len(world.train)))
    data = apply_layout(pool, config["layout"], config["noise"], seed=seed, **_layout_kwargs(config, seed))
    return with_labels(data, config.get("labels", "noisy"))


def _layout_kwargs(config: dict, seed: int) -> dict:
    """``apply_layout``'s keywords beyond the rate: the noise model, and for layout "pool" the K annotators'
    reliabilities drawn with the run's seed (issue 13), so that every draw of a run faces the same pool."""
    k = dict(kind=config.get("noise_kind", "symmetric"))
    if config["layout"] == "pool":
        k.update(num_annotators=config["annotators"], pool_seed=seed)
    return k


#: the config key ``labels`` (issue 12's ceilings): which labels the trainer sees, and how a table names
#: its row ("DPO (clean labels)" is DPO on the true labels)
LABELS = {"noisy": "", "true": " (clean labels)", "filtered": " (flips removed)"}


def with_labels(data, labels: str = "noisy"):
    """The annotated pool as the trainer sees it: ``noisy`` (as annotated), ``true`` (every pair in its
    true orientation, the same pairs: the ceiling "DPO on the true labels") or ``filtered`` (the flipped
    pairs removed: an oracle filter; fewer pairs, so the same steps see some pairs twice)."""
    if labels == "noisy":
        return data
    if labels == "true":
        return data.map(lambda r: {"chosen": r["true_chosen"], "rejected": r["true_rejected"], "is_flipped": False})
    if labels == "filtered":
        return data.filter(lambda r: not r["is_flipped"])
    raise ValueError(f"unknown labels {labels!r}; expected one of {list(LABELS)}")


def config_settings(config: dict, settings: TrainSettings) -> TrainSettings:
    """The profile's settings, with the config's own ``beta`` where it sets one (the dial studies train at
    :data:`rpo.toy.settings.DIAL_SETTINGS`' beta inside a profile whose other studies keep the study's)."""
    beta = config.get("beta")
    return settings if beta is None else replace(settings, beta=float(beta))


def robust_config(config: dict, seed: int, settings: TrainSettings, output_dir: str):
    from rpo.training.config import RobustConfig

    return RobustConfig(
        output_dir=output_dir,
        **trainer_kwargs(from_config(config)),
        # cDPO / rDPO are told the true noise rate (their advantage); at rate 0 they degenerate to DPO
        noise_eps=min(max(config["noise"], 1e-3), 0.499),
        eta0=config["eta0"],
        ema_alpha=config["alpha"],
        eta_update=config["eta_update"],
        objective=config["objective"],
        beta=settings.beta,
        learning_rate=settings.lr,
        lr_scheduler_type=settings.lr_scheduler_type,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=128,
        seed=seed,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
    )


def toy_trainer(policy, reference, tok, data, config: dict, seed: int, settings: TrainSettings, output_dir: str):
    """The RobustTrainer of one ``(config, seed)`` on annotated ``data`` (its hidden columns dropped), not yet
    trained: what :func:`train_and_measure` and benchmarks/many_annotators.py train."""
    from transformers.trainer_callback import PrinterCallback

    from rpo.data.schema import public_view
    from rpo.training.trainer import RobustTrainer

    trainer = RobustTrainer(
        policy,
        reference,
        args=robust_config(config, seed, settings, output_dir),
        train_dataset=public_view(data),
        processing_class=tok,
    )
    # the per-step log dicts stay in state.log_history (the eta trajectory); printed, they bury a run's one
    # summary line per training under ~150 lines each in 02_train's output and its reading copy
    trainer.remove_callback(PrinterCallback)
    return trainer


def win_rates(world, policy, tok, settings: TrainSettings, seed: int) -> dict:
    """Raw and length-controlled win rate of the policy's samples against the reference's, oracle-judged."""
    import pandas as pd

    from rpo.evaluate.alpacaeval import length_controlled
    from rpo.evaluate.judges import ScoreJudge
    from rpo.toy.policy import sample_responses

    score = world.config.oracle()  # the world's judge (the dial world's mixes in its marker)
    prompts = world.heldout[: settings.n_heldout]
    ours = [s for ss in sample_responses(policy, tok, prompts, n=settings.samples, seed=seed + 1) for s in ss]
    theirs = reference_samples(world, prompts, settings.samples, settings.model)
    flat = [p for p in prompts for _ in range(settings.samples)]
    rewards = [score(p, s) for p, s in zip(flat, ours)]
    judge = ScoreJudge(score, name="oracle")
    # AlpacaEval's convention: output_1 is the reference, preference 2 means the model won, 1.5 a tie.
    annotations = pd.DataFrame(
        {
            "instruction": flat,
            "output_1": theirs,
            "output_2": ours,
            "generator_1": "reference",
            "generator_2": "policy",
            "preference": [judge.preference(p, a, b) for p, a, b in zip(flat, theirs, ours)],
        }
    )
    lc = length_controlled(annotations)
    return {
        "win_rate": float((annotations["preference"] - 1).mean()),
        "lc_win_rate": float(lc["length_controlled_winrate"]) / 100.0,
        "mean_reward": sum(rewards) / len(rewards),
        "exact": sum(r == 1.0 for r in rewards) / len(rewards),
    }


def train_and_measure(
    world,
    config: dict,
    seed: int,
    settings: TrainSettings = TrainSettings(),
    save_policy: str | Path | None = None,
    measure_witness: bool = False,
) -> dict:
    """Annotate, train from the reference policy, and measure one ``(config, seed)``; see the module doc.
    ``measure_witness``: also ``witness_auroc``, the AUROC of the trained policy's eq. 2 log-odds (-d) for
    the flipped labels among training pairs *outside* its pool (annotated alike, never trained on):
    out of sample, as :mod:`rpo.toy.witness`, at the cost of one scoring pass."""
    from rpo.data.noise import true_reliability
    from rpo.data.schema import public_view
    from rpo.toy.metrics import flag_auroc, preference_accuracy
    from rpo.toy.world import world_config

    if "dial" in config and world.config != world_config(config["dial"]):
        raise ValueError(f"config dial={config['dial']!r} names another world than {world.path.name}")
    settings = config_settings(config, settings)
    torch.manual_seed(seed)
    data = annotate_pool(world, config, seed, settings)
    policy, tok = load_policy(world, settings.model)
    reference = load_policy(world, settings.model)[0].eval() if from_config(config).needs_reference else None
    with tempfile.TemporaryDirectory(prefix="rpo-train-") as out:
        trainer = toy_trainer(policy, reference, tok, data, config, seed, settings, out)
        trainer.train()
    policy.eval()
    # Reference-free methods rank by mean log-prob (SimPO's own reward); the others by the log-ratio.
    m = {"clean_acc": preference_accuracy(policy, tok, world.test[: settings.n_test_pairs], reference=reference)}
    m.update(win_rates(world, policy, tok, settings, seed))
    truth = true_reliability(data)
    pooled = config["layout"] == "pool"  # K up to 256: no trajectories (K x steps numbers), the pool's scores
    for k, name in enumerate(trainer.annotator_names, start=1):
        m[f"eta_true_{k}"] = truth[name]
        if config["robust"]:
            m[f"eta_hat_{k}"] = float(trainer.eta[k - 1])
            if not pooled:
                m[f"eta_trajectory_{k}"] = [h[f"eta/{name}"] for h in trainer.state.log_history if f"eta/{name}" in h]
    if config["robust"]:
        scored = data.shuffle(seed=seed).select(range(min(settings.n_confidence, len(data))))
        w = trainer.label_confidences(public_view(scored)).numpy()
        m["auroc_w"] = flag_auroc(w, scored["is_flipped"])
        m["mean_w"] = float(w.mean())
    if config["robust"] and pooled:
        m.update(_pool_scores(trainer, [truth[n] for n in trainer.annotator_names]))
    if measure_witness:
        m["witness_auroc"] = _witness(world, config, seed, settings, trainer)
    if save_policy is not None:
        policy.save_pretrained(save_policy)
        if settings.model != "toy":  # the toy tokenizer is rebuilt by rpo.models.load_saved
            tok.save_pretrained(save_policy)
    return m


def _pool_scores(trainer, truth: list[float]) -> dict:
    """A pool's eta against the truth (issue 13): the online estimate (eq. 7 or the count update) and, after
    it, ``fit_reliability()`` (exact EM at the trained model, one scoring pass over the training set):
    ``eta_*`` / ``refit_*`` Spearman, mean and worst absolute error, and the means that answer Figure 3's
    "data or prior?" (``eta_hat_mean``, ``refit_mean``, ``eta_true_mean``). Runs last: the refit sets eta."""
    import numpy as np

    from rpo.toy.metrics import eta_agreement

    online = trainer.eta.tolist()
    refit = trainer.fit_reliability().tolist()
    m = {f"eta_{k}": v for k, v in eta_agreement(online, truth).items()}
    m.update({f"refit_{k}": v for k, v in eta_agreement(refit, truth).items()})
    m.update({f"refit_eta_{k}": v for k, v in enumerate(refit, start=1)})  # as eta_hat_k: the histograms
    m.update(eta_hat_mean=float(np.mean(online)), refit_mean=float(np.mean(refit)), eta_true_mean=float(np.mean(truth)))
    return m


def _witness(world, config: dict, seed: int, settings: TrainSettings, trainer) -> float:
    """AUROC of -d (eq. 2 at the trained policy) for flipped labels among the pairs outside the run's pool
    (the same draw as :func:`annotate_pool`: ``random.sample`` of indices picks the same rows)."""
    from rpo.data.noise import apply_layout
    from rpo.data.schema import public_view
    from rpo.toy.metrics import flag_auroc

    n = settings.max_steps * settings.batch_size // (2 if config["layout"] == "two" else 1)
    taken = set(random.Random(seed).sample(range(len(world.train)), min(n, len(world.train))))
    rest = [r for i, r in enumerate(world.train) if i not in taken][: settings.n_confidence]
    if not rest or (config["noise"] == 0 and config["layout"] != "pool"):  # a pool's rates are its own
        return float("nan")
    data = apply_layout(rest, config["layout"], config["noise"], seed=seed + 1, **_layout_kwargs(config, seed))
    d, _ = trainer.log_odds(public_view(data))
    return flag_auroc(d.numpy(), data["is_flipped"])


def summary(m: dict, annotators: int = 2) -> dict:
    """A training's float metrics rounded, as ``02_train`` prints them: per-annotator values (``..._k``) of
    the first ``annotators`` only, since a pool's K would fill the line."""
    per_annotator = lambda key: key.rpartition("_")[2].isdigit()  # noqa: E731
    keep = {k: v for k, v in m.items() if isinstance(v, float)}
    return {k: round(v, 3) for k, v in keep.items() if not per_annotator(k) or int(k.rpartition("_")[2]) <= annotators}


def settings_dict(settings: TrainSettings) -> dict:
    return settings.to_dict()
