"""The witness, measured (issue 12): how well plain DPO's own preference tells flipped training labels
from clean ones, scored out of sample.

RPO's E-step (eq. 4) can only down-weight a wrong label if the policy's log-odds for it (eq. 2) are
evidence against it. :func:`cross_fit_witness` measures that evidence without letting a policy grade the
labels it was trained on: the world's training pairs, labelled by one annotator, are split in two halves
(2-fold cross-fitting); plain DPO trained on one half (one epoch, at most the study's budget of
``max_steps * batch_size`` pairs) scores the other half's labels with eq. 2's log-odds ``d``
(:meth:`rpo.training.RobustTrainer.log_odds`), and the AUROC of ``-d`` against ``is_flipped`` over both
halves is the witness AUROC. Each fold's policy is also measured as the study measures a policy
(clean test preference accuracy, win rate against the reference).
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import replace

import numpy as np
import torch

from rpo.toy.settings import TrainSettings

#: the plain-DPO config the witness is measured with (rpo.pipeline.profiles.DEFAULTS' shape)
PLAIN_DPO = {
    "method": "dpo",
    "robust": False,
    "layout": "single",
    "eta0": 0.9,
    "alpha": 0.1,
    "eta_update": "batch",
    "objective": "gibbs",
}


def cross_fit_witness(
    world, noise: float, seed: int, settings: TrainSettings = TrainSettings(), *, kind: str = "symmetric"
) -> dict:
    """``{"witness_auroc", "clean_acc", "win_rate", "n_scored", "flip_rate", "folds": [...]}`` for plain
    DPO at flip rate ``noise`` (``kind``: symmetric or bt) on ``world``; see the module doc."""
    from rpo.data.noise import single_annotator
    from rpo.data.schema import public_view
    from rpo.toy.metrics import flag_auroc, preference_accuracy
    from rpo.toy.study import robust_config, win_rates
    from rpo.training.trainer import RobustTrainer

    data = single_annotator(world.train, noise, kind=kind, seed=seed)
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    halves = [sorted(order[0::2]), sorted(order[1::2])]
    budget = settings.max_steps * settings.batch_size
    d_all, flipped, folds = [], [], []
    for k in (0, 1):
        train_rows = halves[1 - k][:budget]
        fold_settings = replace(settings, max_steps=max(1, len(train_rows) // settings.batch_size))
        torch.manual_seed(seed)
        policy, tok = world.load_reference()
        reference = world.load_reference()[0].eval()
        config = {**PLAIN_DPO, "noise": noise}
        with tempfile.TemporaryDirectory(prefix="rpo-witness-") as out:
            trainer = RobustTrainer(
                policy,
                reference,
                args=robust_config(config, seed, fold_settings, out),
                train_dataset=public_view(data.select(train_rows)),
                processing_class=tok,
            )
            trainer.train()
            policy.eval()
            scored = data.select(halves[k])
            d, _ = trainer.log_odds(public_view(scored))
        d_all.append(d.numpy())
        flipped.extend(scored["is_flipped"])
        fold = {
            "steps": fold_settings.max_steps,
            "n_train": len(train_rows),
            "clean_acc": preference_accuracy(policy, tok, world.test[: settings.n_test_pairs], reference=reference),
            **win_rates(world, policy, tok, settings, seed + 100 * k),
        }
        # flag_auroc scores 1 - w: pass w = d so that it ranks by -d
        fold["witness_auroc"] = flag_auroc(d_all[-1], scored["is_flipped"])
        folds.append(fold)
    d = np.concatenate(d_all)
    return {
        "witness_auroc": flag_auroc(d, flipped),
        "clean_acc": float(np.mean([f["clean_acc"] for f in folds])),
        "win_rate": float(np.mean([f["win_rate"] for f in folds])),
        "n_scored": int(len(d)),
        "flip_rate": float(np.mean(flipped)),
        "folds": folds,
    }
