"""RobustTrainer's eta for many annotators: the exact refit (``fit_reliability``, ``refit_eta``) and the
count-aware update (``eta_update="count"``), on the toy Llama (CPU, one thread). A second or two each."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

from rpo.core.em import fixed_point_eta  # noqa: E402
from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import RobustConfig, RobustTrainer  # noqa: E402
from rpo.training.trainer import STATE_FILE  # noqa: E402

torch.set_num_threads(1)
CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True, seed=0)


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def make(tok, dataset, tmp_path, **cfg):
    kwargs = dict(
        CPU,
        output_dir=str(tmp_path),
        pref_loss="dpo",
        beta=0.5,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
    )
    kwargs.update(cfg)
    return RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        ref_model=build_toy_model(1, tokenizer=tok),
        args=RobustConfig(**kwargs),
        train_dataset=dataset,
        processing_class=tok,
    )


@pytest.mark.parametrize(
    "bad, word", [(dict(refit_eta="always"), "refit_eta"), (dict(eta_update="beta"), "eta_update")]
)
def test_config_rejects_bad_values(tmp_path, bad, word):
    with pytest.raises(ValueError, match=word):
        RobustConfig(output_dir=str(tmp_path), **CPU, **bad)
    with pytest.raises(ValueError, match="eta_prior_strength"):
        RobustConfig(output_dir=str(tmp_path), **CPU, eta_update="count", eta_prior_strength=0.0)
    with pytest.raises(ValueError, match="refit_max_iter"):
        RobustConfig(output_dir=str(tmp_path), **CPU, refit_max_iter=0)


def test_fit_reliability_is_exact_em_on_the_log_odds(tok, pairs, tmp_path):
    ds = pairs(32, flip_frac=0.25, seed=2, annotators=["a", "b", "c"])
    trainer = make(tok, ds, tmp_path, max_steps=4)
    trainer.train()
    before = trainer.eta.clone()
    d, ids = trainer.log_odds()
    expected, _, _ = fixed_point_eta(d, ids, 3, before, max_iter=1000, tol=1e-8)
    eta = trainer.fit_reliability()
    assert eta.shape == (3,) and torch.allclose(eta, expected, atol=1e-12, rtol=0)
    assert torch.equal(trainer.eta, eta) and not torch.allclose(eta, before)
    # the E-step's prior was refreshed: label_confidences now uses the refitted eta
    w = trainer.label_confidences()
    assert torch.allclose(w.double(), torch.sigmoid(d.double() + torch.logit(eta)[ids]), atol=1e-6)
    last = trainer.state.log_history[-1]
    assert [last[f"eta/{k}"] for k in "abc"] == eta.tolist() and last["eta_refit/iterations"] >= 1
    # at its own fixed point a second refit does not move
    again = trainer.fit_reliability(max_iter=5)
    assert torch.allclose(again, eta, atol=1e-7)


def test_refit_at_the_end_and_at_epoch_ends(tok, pairs, tmp_path):
    ds = pairs(16, flip_frac=0.25, seed=3, annotators=["a", "b"])
    end = make(tok, ds, tmp_path / "end", max_steps=2, refit_eta="end")
    end.train()
    refits = [h for h in end.state.log_history if "eta_refit/iterations" in h]
    assert len(refits) == 1 and refits[0] is end.state.log_history[-1]
    assert [refits[0]["eta/a"], refits[0]["eta/b"]] == end.eta.tolist()
    d, ids = end.log_odds()
    fixed, _, _ = fixed_point_eta(d, ids, 2, end.eta, max_iter=3)
    assert torch.allclose(fixed, end.eta, atol=1e-7)  # what it holds is the fixed point at the final model

    epochs = make(tok, ds, tmp_path / "epoch", num_train_epochs=2, refit_eta="epoch", eta_update="count")
    epochs.train()
    assert len([h for h in epochs.state.log_history if "eta_refit/iterations" in h]) == 2


def test_refit_on_a_plain_method_audits_without_training_eta(tok, pairs, tmp_path):
    ds = pairs(16, flip_frac=0.25, seed=3, annotators=["a", "b"])
    trainer = make(tok, ds, tmp_path, max_steps=2, robust=False, refit_eta="end")
    trainer.train()
    assert (trainer.eta != 0.9).all()  # eta never moved in training; the refit estimated it at the end


def test_count_update_in_the_trainer_is_the_running_mean(tok, pairs, tmp_path):
    """lr 0, sequential batches of 4, one annotator: eta after two steps is (9 eta0 + sum w) / (9 + 8), the
    w of each step computed at the eta the step started with."""
    ds = pairs(8, flip_frac=0.25, seed=4)
    trainer = make(
        tok,
        ds,
        tmp_path,
        eta_update="count",
        per_device_train_batch_size=4,
        max_steps=2,
        train_sampling_strategy="sequential",
        learning_rate=0.0,
    )
    d, _ = trainer.log_odds()  # lr 0: the model never moves, so these are every step's log-odds
    d = d.double()
    eta1 = (9 * 0.9 + torch.sigmoid(d[:4] + torch.logit(torch.tensor(0.9, dtype=torch.float64))).sum()) / 13
    eta2 = (eta1 * 13 + torch.sigmoid(d[4:] + torch.logit(eta1)).sum()) / 17
    trainer.train()
    assert trainer.eta.item() == pytest.approx(eta2.item(), abs=1e-6)
    assert trainer.reliability.seen == [8]


def test_count_update_resumes_bit_exactly(tok, pairs, tmp_path):
    ds = pairs(32, flip_frac=0.3, annotators=["a", "b", "c"])
    opts = dict(max_steps=6, save_strategy="steps", save_steps=3, per_device_train_batch_size=4, eta_update="count")
    full = make(tok, ds, tmp_path / "full", **opts)
    full.train()
    saved = json.loads((tmp_path / "full" / "checkpoint-3" / STATE_FILE).read_text())
    assert saved["update"] == "count" and sum(saved["seen"]) == 12
    resumed = make(tok, ds, tmp_path / "resumed", **opts)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert torch.allclose(resumed.eta, full.eta, atol=1e-12, rtol=0), (resumed.eta, full.eta)
    assert resumed.reliability.seen == full.reliability.seen and sum(full.reliability.seen) == 24


def test_trainer_refuses_integer_ids_with_gaps(tok, pairs, tmp_path):
    ds = pairs(8).add_column("annotator", [0, 3] * 4)
    with pytest.raises(ValueError, match=r"integer ids have gaps.*\[1, 2\].*num_annotators"):
        make(tok, ds, tmp_path)
    assert make(tok, ds, tmp_path, num_annotators=4).annotator_names == ["0", "1", "2", "3"]
