"""RobustTrainer on the toy Llama (CPU, one thread): the eight methods, equality with TRL's own trainers,
the E-step / eta machinery, checkpoint-resume, bad input. Each test takes about a second."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("trl")

from trl import DPOConfig, DPOTrainer  # noqa: E402

from rpo.core.em import full_update  # noqa: E402
from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import ANNOTATOR_ID, RobustConfig, RobustTrainer  # noqa: E402
from rpo.training.forward import policy_logps  # noqa: E402
from rpo.training.trainer import STATE_FILE  # noqa: E402

torch.set_num_threads(1)
CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True, seed=0)
BETA = {"dpo": 0.5, "ipo": 0.5, "simpo": 2.0, "cpo": 0.5}


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def make(tok, dataset, tmp_path, pref_loss="dpo", *, ref_seed=1, model=None, **cfg):
    """A RobustTrainer on a fresh toy model (seed 0); dpo / ipo get a reference of seed ``ref_seed``."""
    kwargs = dict(
        CPU,
        output_dir=str(tmp_path),
        pref_loss=pref_loss,
        beta=BETA[pref_loss],
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        save_strategy="no",
        logging_steps=1,
    )
    kwargs.update(cfg)
    ref = build_toy_model(ref_seed, tokenizer=tok) if pref_loss in ("dpo", "ipo") else None
    return RobustTrainer(
        model or build_toy_model(0, tokenizer=tok),
        ref_model=ref,
        args=RobustConfig(**kwargs),
        train_dataset=dataset,
        processing_class=tok,
    )


def first_batch(trainer, n=8):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@torch.no_grad()
def batch_loss(trainer, n=8):
    return trainer.compute_loss(trainer.model, first_batch(trainer, n)).item()


# ---- config ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, word",
    [
        (dict(eta0=1.0), "eta0"),
        (dict(eta0=0.4), "eta0"),
        (dict(ema_alpha=0.0), "alpha"),
        (dict(ema_alpha=1.5), "alpha"),
        (dict(pref_loss="kto"), "pref_loss"),
        (dict(eta_update="step"), "eta_update"),
        (dict(objective="x"), "objective"),
        (dict(baseline="cdpo"), "robust=False"),
        (dict(baseline="rdpo", robust=False, noise_eps=0.5), "noise_eps"),
        (dict(loss_type="ipo"), "loss_type"),
        (dict(label_smoothing=0.1), "label_smoothing"),
        (dict(lm_head="chunked"), "lm_head"),
        (dict(annotator_names=[]), "annotator_names must be a non-empty list"),
        (dict(annotator_names="ann"), "annotator_names must be a non-empty list"),
        (dict(annotator_names=["ann", " "]), "annotator_names must hold non-empty strings"),
        (dict(annotator_names=["ann", 3]), "annotator_names must hold non-empty strings"),
        (dict(annotator_names=["ann", "bob", "ann"]), r"annotator_names must be unique; repeated: \['ann'\]"),
        (dict(annotator_names=["ann", "bob"], num_annotators=3), "num_annotators=3 but annotator_names names 2"),
    ],
)
def test_config_rejects_bad_values(tmp_path, bad, word):
    with pytest.raises(ValueError, match=word):
        RobustConfig(output_dir=str(tmp_path), **CPU, **bad)


def test_config_parses_from_flat_yaml(tmp_path):
    from trl import TrlParser

    path = tmp_path / "recipe.yaml"
    path.write_text(
        "output_dir: out\npref_loss: simpo\nrobust: true\neta0: 0.8\nema_alpha: 0.2\n"
        "eta_update: epoch\nobjective: weighted\nannotator_column: rater\ngamma: 0.5\n"
        "cpo_alpha: 0.0\nbaseline: null\nnoise_eps: 0.2\nuse_cpu: true\nbf16: false\n"
    )
    (cfg,) = TrlParser((RobustConfig,)).parse_args_and_config(["--config", str(path)])
    assert (
        cfg.pref_loss,
        cfg.robust,
        cfg.eta0,
        cfg.ema_alpha,
        cfg.eta_update,
        cfg.objective,
        cfg.annotator_column,
        cfg.gamma,
        cfg.cpo_alpha,
        cfg.baseline,
        cfg.noise_eps,
    ) == ("simpo", True, 0.8, 0.2, "epoch", "weighted", "rater", 0.5, 0.0, None, 0.2)


# ---- the eight methods and the baselines train ----------------------------------------------------------------
@pytest.mark.parametrize(
    "pref_loss, method",
    [(loss, m) for loss in ("dpo", "ipo", "simpo", "cpo") for m in ("plain", "robust")]
    + [("dpo", "cdpo"), ("dpo", "rdpo")],
)
def test_methods_train_and_change_parameters(tok, pairs, tmp_path, pref_loss, method):
    extra = {"robust": method == "robust", "baseline": method if method in ("cdpo", "rdpo") else None}
    trainer = make(tok, pairs(16), tmp_path, pref_loss, max_steps=3, **extra)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert moved == len(before)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert ("w/mean" in trainer.state.log_history[0]) == (method == "robust")


def test_reference_free_losses_build_no_reference(tok, pairs, tmp_path, monkeypatch):
    from trl.trainer import dpo_trainer

    def refuse(*args, **kwargs):
        raise AssertionError("DPOTrainer tried to build a reference model")

    monkeypatch.setattr(dpo_trainer, "create_model_from_path", refuse)
    for loss in ("simpo", "cpo"):
        trainer = make(tok, pairs(8), tmp_path, loss)
        assert trainer.ref_model is None and not trainer.precompute_ref_logps
        assert not trainer.args.precompute_ref_log_probs  # the user's setting is restored
        assert "ref_chosen_logps" not in trainer.train_dataset.column_names
    with pytest.raises(ValueError, match="reference-free"):
        RobustTrainer(
            build_toy_model(0, tokenizer=tok),
            ref_model=build_toy_model(1, tokenizer=tok),
            args=RobustConfig(output_dir=str(tmp_path), pref_loss="simpo", **CPU),
            train_dataset=pairs(8),
            processing_class=tok,
        )


def test_precomputed_reference_matches_reference_model(tok, pairs, tmp_path):
    """dpo with precompute_ref_log_probs (reference = the initial policy) needs no ref model."""
    ds = pairs(8)
    pre = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        args=RobustConfig(output_dir=str(tmp_path), pref_loss="dpo", precompute_ref_log_probs=True, **CPU),
        train_dataset=ds,
        processing_class=tok,
    )
    live = make(tok, ds, tmp_path, "dpo", ref_seed=0)
    assert pre.ref_model is None
    assert batch_loss(pre) == pytest.approx(batch_loss(live), abs=1e-6)


# ---- equality with TRL's own trainers on the same batch --------------------------------------------------------
@pytest.mark.parametrize(
    "pref_loss, trl_cfg, ours",
    [
        ("dpo", dict(loss_type="sigmoid"), dict(robust=False)),
        ("ipo", dict(loss_type="ipo"), dict(robust=False)),
        ("dpo", dict(loss_type="robust", label_smoothing=0.2), dict(robust=False, baseline="rdpo", noise_eps=0.2)),
    ],
)
def test_plain_losses_equal_trl_dpo_trainer(tok, pairs, tmp_path, pref_loss, trl_cfg, ours):
    ds = pairs(8)
    theirs = DPOTrainer(
        build_toy_model(0, tokenizer=tok),
        ref_model=build_toy_model(1, tokenizer=tok),
        args=DPOConfig(output_dir=str(tmp_path), beta=BETA[pref_loss], **CPU, **trl_cfg),
        train_dataset=ds,
        processing_class=tok,
    )
    mine = make(tok, ds, tmp_path, pref_loss, **ours)
    expected = batch_loss(theirs)
    assert batch_loss(mine) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert abs(expected - 0.6931) > 1e-3  # policy and reference differ: not the trivial log 2


@pytest.mark.parametrize(
    "pref_loss, trl_cfg",
    [
        ("simpo", dict(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=0.5)),
        ("cpo", dict(loss_type="sigmoid", cpo_alpha=1.0)),
    ],
)
def test_plain_losses_equal_trl_cpo_trainer(tok, pairs, tmp_path, pref_loss, trl_cfg):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    ds = pairs(8)
    theirs = CPOTrainer(
        build_toy_model(0, tokenizer=tok),
        args=CPOConfig(output_dir=str(tmp_path), beta=BETA[pref_loss], **CPU, **trl_cfg),
        train_dataset=ds,
        processing_class=tok,
    )
    batch = theirs.data_collator([theirs.train_dataset[i] for i in range(8)])
    with torch.no_grad():
        expected = theirs.compute_loss(theirs.model, batch).item()
    mine = make(
        tok,
        ds,
        tmp_path,
        pref_loss,
        robust=False,
        gamma=trl_cfg.get("simpo_gamma", 0.0),
        cpo_alpha=trl_cfg["cpo_alpha"],
    )
    assert batch_loss(mine) == pytest.approx(expected, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("pref_loss", ["dpo", "ipo", "simpo", "cpo"])
def test_full_logits_give_the_fused_heads_log_probs(tok, pairs, tmp_path, pref_loss):
    """lm_head="logits" (CPOTrainer's way, "auto"'s choice on CPU) computes what TRL's fused head computes."""
    ds = pairs(8)
    gamma = 0.3 if pref_loss == "simpo" else 0.0  # SimPO's margin: RobustConfig refuses it for other losses
    fused = make(tok, ds, tmp_path, pref_loss, gamma=gamma, lm_head="fused")
    logits = make(tok, ds, tmp_path, pref_loss, gamma=gamma)
    assert fused.fused_head and not logits.fused_head  # auto: no Triton on CPU
    with torch.no_grad():
        (a, _, _), (b, _, _) = (policy_logps(t.model, first_batch(t), fused=t.fused_head) for t in (fused, logits))
    for x, y in zip(a[:4], b[:4]):  # chosen / rejected log-probs and lengths
        assert torch.allclose(x.float(), y.float(), rtol=1e-5, atol=1e-5)
    assert a[0].abs().min() > 1.0  # real log-probs, not masked zeros
    assert batch_loss(logits) == pytest.approx(batch_loss(fused), rel=1e-5)
    fused.args.max_steps = 2
    fused.train()  # and the fused path trains
    assert fused.eta.item() != 0.9 and torch.isfinite(torch.tensor(fused.state.log_history[0]["loss"]))


def test_cdpo_and_rdpo_mix_the_label_and_its_swap(tok, pairs, tmp_path):
    """cDPO = (1-e) L(ds) + e L(swapped ds); rDPO = ((1-e) L(ds) - e L(swapped ds)) / (1 - 2e)."""
    ds = pairs(8)
    swapped = ds.rename_columns({"chosen": "rejected", "rejected": "chosen"})
    plain, plain_swapped = (batch_loss(make(tok, d, tmp_path, "dpo", robust=False)) for d in (ds, swapped))
    eps = 0.2
    cdpo = batch_loss(make(tok, ds, tmp_path, "dpo", robust=False, baseline="cdpo", noise_eps=eps))
    rdpo = batch_loss(make(tok, ds, tmp_path, "dpo", robust=False, baseline="rdpo", noise_eps=eps))
    assert cdpo == pytest.approx((1 - eps) * plain + eps * plain_swapped, rel=1e-5)
    assert rdpo == pytest.approx(((1 - eps) * plain - eps * plain_swapped) / (1 - 2 * eps), rel=1e-5)


@pytest.mark.parametrize(
    "pref_loss, objective",
    [
        ("dpo", "gibbs"),
        ("dpo", "weighted"),
        ("ipo", "weighted"),
        ("simpo", "weighted"),
        ("cpo", "weighted"),
    ],
)
def test_robust_with_eta_frozen_at_one_equals_base(tok, pairs, tmp_path, pref_loss, objective):
    ds = pairs(8)
    gamma = 0.3 if pref_loss == "simpo" else 0.0  # SimPO's margin: RobustConfig refuses it for other losses
    base = batch_loss(make(tok, ds, tmp_path, pref_loss, robust=False, gamma=gamma))
    robust = make(tok, ds, tmp_path, pref_loss, robust=True, objective=objective, gamma=gamma)
    at_prior = batch_loss(robust)
    robust.eta = torch.ones(1, dtype=torch.float64)
    assert batch_loss(robust) == pytest.approx(base, rel=1e-6, abs=1e-7)
    assert at_prior != pytest.approx(base, rel=1e-4)  # eta = 0.9 does change the loss


# ---- EM behaviour --------------------------------------------------------------------------------------------
def test_flipped_labels_get_low_confidence_and_eta_drops(tok, pairs, tmp_path):
    ds = pairs(256, flip_frac=0.3, seed=0)
    trainer = make(tok, ds, tmp_path, "dpo", num_train_epochs=2, logging_steps=8)
    trainer.train()
    w = trainer.label_confidences()
    flipped = torch.tensor(ds["flipped"])
    assert w[flipped].mean() < w[~flipped].mean() - 0.4, (w[flipped].mean(), w[~flipped].mean())
    eta = trainer.eta.item()
    assert 0.6 < eta < 0.8, f"eta {eta} should move from 0.9 toward the true 0.7"
    logged = [h["eta/all"] for h in trainer.state.log_history if "eta/all" in h]
    assert logged[-1] == pytest.approx(eta) and logged[0] > logged[-1]


def test_noisy_annotator_gets_lower_eta(tok, pairs, tmp_path):
    ds = pairs(256, flip_frac=0.3, seed=0)
    # "bob" gets every flipped pair plus clean ones up to half the data (60% noise); "alice" is clean.
    flipped = ds["flipped"]
    clean_for_bob = set([i for i, f in enumerate(flipped) if not f][: 128 - sum(flipped)])
    ds = ds.add_column("annotator", ["bob" if f or i in clean_for_bob else "alice" for i, f in enumerate(flipped)])
    trainer = make(tok, ds, tmp_path, "dpo", num_train_epochs=2, logging_steps=8)
    trainer.train()
    assert trainer.annotator_names == ["alice", "bob"]
    alice, bob = trainer.eta.tolist()
    # true reliabilities: alice 1.0, bob 77/128 flipped = 0.40 (measured: 0.9997 and 0.344)
    assert alice > 0.95 and 0.25 < bob < 0.55, (alice, bob)
    saved = json.loads((tmp_path / "annotators.json").read_text())
    assert saved["ids"] == {"alice": 0, "bob": 1} and saved["annotator_column"] == "annotator"
    last = trainer.state.log_history[-2]
    assert {"eta/alice", "eta/bob", "w/mean", "w/frac_below_0.5"} <= set(last)


def test_eta_updates_once_per_optimizer_step_from_all_micro_batches(tok, pairs, tmp_path):
    """Grad accumulation 2 x batch 4: eta after step 1 is eq. 7 applied to all 8 w of the step."""
    ds = pairs(8)
    trainer = make(
        tok,
        ds,
        tmp_path,
        "dpo",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=1,
        train_sampling_strategy="sequential",
        learning_rate=0.0,
    )
    w0 = trainer.label_confidences()  # lr 0: the model does not move, so these are the step's w
    trainer.train()
    assert trainer.eta.item() == pytest.approx(0.9 * 0.9 + 0.1 * w0.double().mean().item(), abs=1e-7)


def test_epoch_mode_applies_eq6_after_each_epoch(tok, pairs, tmp_path):
    ds = pairs(16, flip_frac=0.25)
    trainer = make(tok, ds, tmp_path, "dpo", eta_update="epoch", num_train_epochs=1, logging_steps=1)
    trainer.train()
    logged = [h["eta/all"] for h in trainer.state.log_history if "eta/all" in h]
    assert logged[:-1] == [0.9] * (len(logged) - 1)  # constant within the epoch
    new_eta = trainer.eta.clone()
    trainer.eta = torch.tensor([0.9], dtype=torch.float64)  # the E-step at the epoch's end used eta = 0.9
    w = trainer.label_confidences()
    expected = full_update(w, torch.tensor(trainer.train_dataset[ANNOTATOR_ID]), 1)
    assert new_eta.item() == pytest.approx(expected.item(), abs=1e-7) and new_eta.item() != 0.9


def test_label_confidences_on_raw_dataset(tok, pairs, tmp_path):
    ds = pairs(12)
    trainer = make(tok, ds, tmp_path, "simpo")
    w_train, w_raw = trainer.label_confidences(), trainer.label_confidences(ds, batch_size=5)
    assert w_raw.shape == (12,) and torch.allclose(w_train, w_raw, atol=1e-6)
    assert ((w_raw > 0) & (w_raw < 1)).all()


@pytest.mark.parametrize("pref_loss", ["dpo", "simpo"])
def test_small_raw_sets_score_as_python_rows_bit_for_bit(tok, pairs, tmp_path, monkeypatch, pref_loss):
    """A raw set small enough to be tokenised into python rows (compat.SCORING_ROWS) scores exactly as the
    same set tokenised by Dataset.map, with max_length dropping the pairs whose prompt fills it."""
    from rpo.training import compat

    ds = pairs(20, flip_frac=0.25, seed=3, annotators=["a", "b"])
    trainer = make(tok, ds, tmp_path, pref_loss, max_steps=2, max_length=6)
    trainer.train()
    rows = (trainer.log_odds(ds, batch_size=6), trainer.label_confidences(ds, batch_size=6))
    assert 0 < len(rows[1]) < len(ds)  # 3-letter words' prompts are 5 tokens, longer ones fill max_length
    assert isinstance(compat.prepared(trainer, trainer._validate(ds, "t", False), "t", scoring=True), list)
    monkeypatch.setattr(compat, "SCORING_ROWS", 0)
    assert not isinstance(compat.prepared(trainer, trainer._validate(ds, "t", False), "t", scoring=True), list)
    mapped = (trainer.log_odds(ds, batch_size=6), trainer.label_confidences(ds, batch_size=6))
    assert all(torch.equal(a, b) for a, b in zip([*rows[0], rows[1]], [*mapped[0], mapped[1]]))


@pytest.mark.parametrize("fmt", ["numpy", "torch", "pandas", "arrow"])
def test_formatted_sets_train_and_score_as_python_rows(tok, pairs, tmp_path, monkeypatch, fmt):
    """A set given a datasets format (with_format) trains and scores exactly as the same set unformatted,
    small or mapped, map-style or streamed: the validator and the tokenising read python rows (they used to
    fail on numpy strings, tensors or Arrow arrays, with errors far from the cause)."""
    from rpo.training import compat

    ds = pairs(12, flip_frac=0.25, seed=4, annotators=["a", "b"])
    runs = []
    for name, data in (("plain", ds), ("formatted", ds.with_format(fmt))):
        trainer = make(tok, data, tmp_path / name, "dpo", max_steps=2, per_device_train_batch_size=4)
        trainer.train()
        runs.append((trainer, data))
    (plain, ds), (formatted, data) = runs
    assert torch.equal(formatted.eta, plain.eta) and plain.eta.ne(0.9).any()
    expected = plain.log_odds(ds)
    streamed = ds.to_iterable_dataset().with_format(fmt if fmt != "pandas" else "numpy")
    assert all(torch.equal(a, b) for a, b in zip(formatted.log_odds(data), expected))
    assert all(torch.equal(a, b) for a, b in zip(formatted.log_odds(streamed), expected))
    monkeypatch.setattr(compat, "SCORING_ROWS", 0)
    assert all(torch.equal(a, b) for a, b in zip(formatted.log_odds(data), expected))


# ---- checkpoint / resume ---------------------------------------------------------------------------------------
def test_resume_restores_eta_exactly(tok, pairs, tmp_path):
    ds = pairs(32, flip_frac=0.3)
    opts = dict(max_steps=6, save_strategy="steps", save_steps=3, per_device_train_batch_size=4)
    full = make(tok, ds, tmp_path / "full", "dpo", **opts)
    full.train()
    ckpt = tmp_path / "full" / "checkpoint-3"
    saved = json.loads((ckpt / STATE_FILE).read_text())
    assert saved["global_step"] == 3 and saved["eta"] != [0.9]
    resumed = make(tok, ds, tmp_path / "resumed", "dpo", **opts)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert torch.allclose(resumed.eta, full.eta, atol=1e-12, rtol=0), (resumed.eta, full.eta)
    assert resumed.eta.item() != saved["eta"][0]  # and it kept training after the restore


def test_resume_refuses_a_checkpoint_without_eta(tok, pairs, tmp_path):
    trainer = make(tok, pairs(8), tmp_path, "dpo")
    os.makedirs(tmp_path / "checkpoint-1")
    with pytest.raises(ValueError, match=STATE_FILE):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-1"))


# ---- bad input ---------------------------------------------------------------------------------------------
def test_bad_datasets_get_clear_errors(tok, pairs, tmp_path):
    ds = pairs(8)
    with pytest.raises(ValueError, match=r"no 'prompt' column, and chosen / rejected share no prefix"):
        make(tok, ds.remove_columns("prompt"), tmp_path, "simpo")  # read as implicit-prompt data, as TRL does
    with pytest.raises(ValueError, match=r"missing column\(s\) \['rejected'\]"):
        make(tok, ds.remove_columns("rejected"), tmp_path, "simpo")
    with pytest.raises(ValueError, match=r"train dataset: column 'rejected', row 2: empty string"):
        make(
            tok,
            ds.map(lambda r, i: {"rejected": "  " if i == 2 else r["rejected"]}, with_indices=True),
            tmp_path,
            "simpo",
        )
    with pytest.raises(ValueError, match="column 'annotator', row 0: expected str or int, got float"):
        make(tok, ds.add_column("annotator", [0.5] * 8), tmp_path, "simpo")
    with pytest.raises(ValueError, match=r"id 3 at row 1 is out of range \[0, 2\)"):
        make(tok, ds.add_column("annotator", [0, 3] * 4), tmp_path, "simpo", num_annotators=2)
    with pytest.raises(ValueError, match="id -1 at row 0"):
        make(tok, ds.add_column("annotator", [-1, 0] * 4), tmp_path, "simpo")
    trainer = make(tok, ds.add_column("annotator", ["a", "b"] * 4), tmp_path, "simpo")
    with pytest.raises(ValueError, match=r"annotators \['zed'\] not in the training set"):
        trainer.label_confidences(ds.add_column("annotator", ["zed"] * 8))


def test_identical_pairs_are_skipped_and_counted(tok, pairs, tmp_path):
    ds = pairs(8).map(lambda r, i: {"rejected": r["chosen"] if i in (1, 4) else r["rejected"]}, with_indices=True)
    trainer = make(tok, ds, tmp_path, "dpo", max_steps=1)
    assert trainer.num_identical_skipped == {"train": 2} and len(trainer.train_dataset) == 6
    w = trainer.label_confidences(ds)  # a raw dataset keeps them: no evidence, so w = eta
    assert w.shape == (8,) and w[1].item() == pytest.approx(0.9, abs=1e-6)


def test_integer_annotator_ids_and_k_from_config(tok, pairs, tmp_path):
    ds = pairs(8).add_column("annotator", [0, 2] * 4)
    trainer = make(tok, ds, tmp_path, "simpo", num_annotators=4, max_steps=1)
    assert trainer.annotator_names == ["0", "1", "2", "3"]
    trainer.train()
    eta = trainer.eta.tolist()
    assert eta[1] == eta[3] == 0.9 and eta[0] != 0.9 and eta[2] != 0.9  # absent annotators keep eta (Alg. 1 l. 8)
    assert len(first_batch(trainer)[ANNOTATOR_ID]) == 8


def test_evaluate_reports_loss_and_confidences(tok, pairs, tmp_path):
    ds = pairs(8)
    trainer = make(tok, ds, tmp_path, "ipo")
    trainer.eval_dataset = trainer._prepare_dataset(pairs(8, seed=3), tok, trainer.args, "eval")
    metrics = trainer.evaluate()
    assert torch.isfinite(torch.tensor(metrics["eval_loss"])) and 0 < metrics["eval_w/mean"] < 1
    assert trainer.reliability.step_counts == [0]  # evaluation never feeds eq. 7


def test_peft_reference_is_the_adapter_free_model(tok, pairs, tmp_path):
    """With LoRA and no ref_model, TRL's reference is the policy with the adapter disabled: at step 0
    the policy equals it, so DPO's loss is exactly log 2."""
    from peft import LoraConfig

    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        args=RobustConfig(
            output_dir=str(tmp_path),
            pref_loss="dpo",
            max_steps=2,
            per_device_train_batch_size=8,
            learning_rate=1e-2,
            save_strategy="no",
            **CPU,
        ),
        train_dataset=pairs(8),
        processing_class=tok,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    assert trainer.ref_model is None
    trainer.model.train()
    robust_at_start = batch_loss(trainer)
    trainer.train()
    assert trainer.eta.item() != 0.9
    # eta = 0.9 and h = 0: gibbs loss = -(0.9 log s(0) + 0.1 log s(0)) = log 2
    assert robust_at_start == pytest.approx(0.693147, abs=1e-5)
    assert batch_loss(trainer) < robust_at_start


def test_conversational_pairs_train(tok, pairs, tmp_path):
    from datasets import Dataset

    raw = pairs(8)
    ds = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p.removeprefix("<bos>")}] for p in raw["prompt"]],
            "chosen": [[{"role": "assistant", "content": c}] for c in raw["chosen"]],
            "rejected": [[{"role": "assistant", "content": r}] for r in raw["rejected"]],
            "annotator": ["x", "y"] * 4,
        }
    )
    trainer = make(tok, ds, tmp_path, "cpo", max_steps=2)
    trainer.train()
    assert trainer.annotator_names == ["x", "y"] and (trainer.eta != 0.9).all()
    bad = ds.map(
        lambda r, i: {"chosen": [{"role": "assistant", "content": " "}] if i == 5 else r["chosen"]}, with_indices=True
    )
    with pytest.raises(ValueError, match=r"column 'chosen', row 5, message 0: empty or non-string content"):
        make(tok, bad, tmp_path, "cpo")


def test_public_names_are_lazily_exported():
    import rpo

    assert rpo.RobustTrainer is RobustTrainer and rpo.RobustConfig is RobustConfig


def test_log_odds_and_fixed_point_eta_agree_with_label_confidences(tok, pairs, tmp_path):
    """log_odds gives eq. 2's d per row; eq. 4 from it at the trainer's eta is label_confidences' w, and an
    exact EM at the fixed model (fixed_point_eta) moves eta toward the data."""
    from rpo.core.em import fixed_point_eta

    ds = pairs(16, flip_frac=0.25, seed=2, annotators=["a", "b"])
    trainer = make(tok, ds, tmp_path, "dpo", max_steps=4)
    trainer.train()
    d, ids = trainer.log_odds(ds)
    w = trainer.label_confidences(ds)
    assert d.shape == ids.shape == w.shape == (16,) and ids.tolist() == [0, 1] * 8
    expected = torch.sigmoid(d.double() + torch.logit(trainer.eta)[ids]).float()
    assert torch.allclose(w, expected, atol=1e-6)
    eta, w_fixed, _ = fixed_point_eta(d, ids, 2, trainer.eta)
    assert torch.allclose(eta, torch.stack([w_fixed[ids == k].mean() for k in range(2)]), atol=1e-8)
