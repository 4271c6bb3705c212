"""Label smoothing through RobustTrainer: DPO+LS is the label-smoothed DPO loss built from TRL's own DPO loss, the
default rate is 1 - eta0, and every X+LS trains (the reference-free ones without a reference)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from trl import DPOConfig, DPOTrainer  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import RobustConfig, RobustTrainer  # noqa: E402

torch.set_num_threads(1)
CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True, seed=0)


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def make(tok, ds, tmp_path, pref_loss="dpo", **cfg):
    ref = build_toy_model(1, tokenizer=tok) if pref_loss in ("dpo", "ipo") else None
    args = RobustConfig(
        output_dir=str(tmp_path),
        pref_loss=pref_loss,
        robust=False,
        baseline="ls",
        beta=0.5,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
        **CPU,
        **cfg,
    )
    return RobustTrainer(
        build_toy_model(0, tokenizer=tok), ref_model=ref, args=args, train_dataset=ds, processing_class=tok
    )


@torch.no_grad()
def batch_loss(trainer):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    return trainer.compute_loss(trainer.model, batch).item()


def test_dpo_ls_mixes_trl_dpo_on_the_labels_and_on_their_swap(tok, pairs, tmp_path):
    """(1 - eps) L(y_w > y_l) + eps L(y_l > y_w), the classic label-smoothed DPO (cDPO's form), from TRL's own
    sigmoid DPO loss on the batch and on the batch with chosen and rejected swapped (TRL 1.16's sigmoid loss
    no longer reads ``label_smoothing``)."""
    ds = pairs(8)
    swapped = ds.rename_columns({"chosen": "rejected", "rejected": "chosen"})

    def trl_loss(data):
        theirs = DPOTrainer(
            build_toy_model(0, tokenizer=tok),
            ref_model=build_toy_model(1, tokenizer=tok),
            args=DPOConfig(output_dir=str(tmp_path), beta=0.5, loss_type="sigmoid", **CPU),
            train_dataset=data,
            processing_class=tok,
        )
        return batch_loss(theirs)

    expected = 0.8 * trl_loss(ds) + 0.2 * trl_loss(swapped)
    assert batch_loss(make(tok, ds, tmp_path, ls_eps=0.2)) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert batch_loss(make(tok, ds, tmp_path, ls_eps=0.2, objective="weighted")) == pytest.approx(expected, rel=1e-6)
    # default rate 1 - eta0
    default = make(tok, ds, tmp_path, eta0=0.8)
    assert default.args.smoothing == pytest.approx(0.2) and default.method.label == "DPO+LS"
    assert batch_loss(default) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    with pytest.raises(ValueError, match="ls_eps"):
        RobustConfig(output_dir=str(tmp_path), robust=False, baseline="ls", ls_eps=0.5, **CPU)


@pytest.mark.parametrize("pref_loss", ["ipo", "simpo", "cpo"])
def test_every_ls_trains(tok, pairs, tmp_path, pref_loss):
    trainer = make(tok, pairs(16), tmp_path, pref_loss, max_steps=2)
    before = batch_loss(trainer)
    trainer.train()
    assert batch_loss(trainer) < before and trainer.method.key == f"{pref_loss}-ls"
