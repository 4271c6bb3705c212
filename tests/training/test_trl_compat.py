"""RobustTrainer as a drop-in for TRL's DPOTrainer (issue 18): the project's own compatibility tests.

Each test trains (or evaluates) DPOTrainer and RobustTrainer(robust=False, pref_loss="dpo") on the same
tiny local model (same seed, same data, same batch order) and asserts equal losses and the same logged
metric keys; RPO (robust=True) is run on the same feature to show that it trains too. Everything is
local: ``rpo.models.build_toy_model`` / ``build_toy_tokenizer`` and tiny models built from configs.
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import ANNOTATOR_ID, RobustConfig, RobustTrainer  # noqa: E402

CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True)
#: keys both trainers log every step (plus loss, grad_norm, learning_rate, epoch)
DPO_KEYS = {
    "entropy",
    "num_tokens",
    "mean_token_accuracy",
    "logits/chosen",
    "logits/rejected",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
}
WORDS = ["red", "blue", "cat", "dog", "sun", "moon", "tree", "fish"]


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def rows(n=8, fmt="standard", annotators=False):
    out = []
    for i in range(n):
        p, c, r = f"say {WORDS[i % 8]}", f" {WORDS[(i + 1) % 8]} ok", f" {WORDS[(i + 3) % 8]}"
        if fmt == "standard":
            row = {"prompt": p, "chosen": c, "rejected": r}
        elif fmt == "standard_implicit":
            row = {"chosen": p + c, "rejected": p + r}
        else:
            user = [{"role": "user", "content": p}]
            row = {"prompt": user, "chosen": [{"role": "assistant", "content": c}]}
            row["rejected"] = [{"role": "assistant", "content": r}]
            if fmt == "conversational_implicit":
                row = {"chosen": user + row["chosen"], "rejected": user + row["rejected"]}
            if fmt == "conversational_tools":  # a tool call and its answer in the prompt, and the tools column
                call = {"type": "function", "function": {"name": "lookup", "arguments": {"word": WORDS[i % 8]}}}
                row["prompt"] = user + [
                    {"role": "assistant", "content": "", "tool_calls": [call]},
                    {"role": "tool", "name": "lookup", "content": WORDS[(i + 2) % 8]},
                ]
                row["tools"] = '[{"type": "function", "function": {"name": "lookup", "parameters": {}}}]'
        if annotators:
            row["annotator"] = ["ann", "bob"][i % 2]
        out.append(row)
    return out


def config(cls, tmp_path, name, **kw):
    base = dict(
        CPU,
        output_dir=str(tmp_path / name),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-2,
        max_steps=3,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        beta=0.1,
    )
    base.update(kw)
    if cls is RobustConfig:
        base.setdefault("robust", False)
        base.setdefault("pref_loss", "dpo")
    return cls(**base)


def pair(tok, tmp_path, train, *, eval_dataset=None, ref=True, model_fn=None, robust_kw=None, **kw):
    """The same run under DPOTrainer and RobustTrainer(robust=False): both trainers, not yet trained."""
    model_fn = model_fn or (lambda seed: build_toy_model(seed, tokenizer=tok))
    made = []
    for cls, trainer_cls, extra in ((DPOConfig, DPOTrainer, {}), (RobustConfig, RobustTrainer, robust_kw or {})):
        model = model_fn(0)
        ref_model = model_fn(1) if ref else None
        made.append(
            trainer_cls(
                model,
                ref_model,
                args=config(cls, tmp_path, trainer_cls.__name__, **kw, **extra),
                train_dataset=train() if callable(train) else train,
                eval_dataset=eval_dataset() if callable(eval_dataset) else eval_dataset,
                processing_class=tok,
            )
        )
    return made


def train_logs(trainer):
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]


def eval_logs(trainer):
    return [h for h in trainer.state.log_history if any(k.endswith("_loss") and k.startswith("eval") for k in h)]


def assert_same_logs(dpo_logs, rpo_logs, rtol=1e-4):
    assert len(dpo_logs) == len(rpo_logs) > 0
    for a, b in zip(dpo_logs, rpo_logs):
        assert set(a) == set(b), f"logged keys differ: only DPO {set(a) - set(b)}, only RPO {set(b) - set(a)}"
        assert DPO_KEYS <= set(a)
        for key in a:
            if key in ("learning_rate", "epoch", "grad_norm"):
                continue
            assert math.isclose(a[key], b[key], rel_tol=rtol, abs_tol=1e-5), (key, a[key], b[key])


# ---- dataset formats: standard / conversational, explicit / implicit prompt, tool calls
@pytest.mark.parametrize(
    "fmt", ["standard", "standard_implicit", "conversational", "conversational_implicit", "conversational_tools"]
)
def test_dataset_formats_train_like_dpo(tok, tmp_path, fmt):
    dpo, rob = pair(tok, tmp_path, lambda: Dataset.from_list(rows(8, fmt)))
    assert_same_logs(train_logs(dpo), train_logs(rob))


def test_implicit_prompt_with_annotators_under_rpo(tok, tmp_path):
    data = Dataset.from_list(rows(8, "conversational_implicit", annotators=True))
    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        build_toy_model(1, tokenizer=tok),
        args=config(RobustConfig, tmp_path, "rpo", robust=True),
        train_dataset=data,
        processing_class=tok,
    )
    assert trainer.annotator_names == ["ann", "bob"]
    logs = train_logs(trainer)
    assert {"eta/ann", "eta/bob", "w/mean"} <= set(logs[-1]) and DPO_KEYS <= set(logs[-1])


# ---- the annotator-id column never reaches model.forward
def forward_kwargs_recorder(model, seen):
    def hook(module, args, kwargs):
        seen.append(set(kwargs))

    return model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("precompute", [False, True])
def test_annotator_id_never_reaches_the_model(tok, tmp_path, precompute):
    data = Dataset.from_list(rows(8, annotators=True))
    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        build_toy_model(1, tokenizer=tok),
        args=config(RobustConfig, tmp_path, "r", robust=True, precompute_ref_log_probs=precompute, max_steps=1),
        train_dataset=data,
        eval_dataset={"a": data, "b": data.select(range(4))},
        processing_class=tok,
    )
    seen = []
    handles = [forward_kwargs_recorder(m, seen) for m in (trainer.model, trainer.ref_model) if m is not None]
    try:
        trainer.train()
        metrics = trainer.evaluate(Dataset.from_list(rows(4, annotators=True)))  # a raw set: tokenised, precomputed
        metrics.update(trainer.evaluate())
        trainer.predict(trainer.eval_dataset["b"])
    finally:
        for h in handles:
            h.remove()
    assert seen and not any(ANNOTATOR_ID in keys for keys in seen)
    assert {"eval_loss", "eval_a_loss", "eval_b_loss"} <= set(metrics)
    assert {"eval_entropy", "eval_mean_token_accuracy"} <= set(eval_logs(trainer)[-1])


# ---- evaluate / predict with several eval sets, precomputed reference log-probs
@pytest.mark.parametrize("precompute", [False, True])
def test_evaluate_several_sets_like_dpo(tok, tmp_path, precompute):
    data = lambda: Dataset.from_list(rows(8))  # noqa: E731
    evals = lambda: {"x": Dataset.from_list(rows(8, "conversational")), "y": Dataset.from_list(rows(4))}  # noqa: E731
    dpo, rob = pair(tok, tmp_path, data, eval_dataset=evals, precompute_ref_log_probs=precompute)
    a, b = dpo.evaluate(), rob.evaluate()
    assert set(a) == set(b) and {"eval_x_loss", "eval_y_loss"} <= set(a)
    logs_a, logs_b = eval_logs(dpo), eval_logs(rob)
    assert len(logs_a) == len(logs_b) == 2
    for la, lb in zip(logs_a, logs_b):
        assert set(la) == set(lb) and {"eval_entropy", "eval_num_tokens", "eval_logits/chosen"} <= set(la)
        for key in la:
            if "runtime" not in key and "per_second" not in key:
                assert math.isclose(la[key], lb[key], rel_tol=1e-4, abs_tol=1e-5), (key, la[key], lb[key])
    pa, pb = dpo.predict(dpo.eval_dataset["y"]), rob.predict(rob.eval_dataset["y"])
    assert math.isclose(pa.metrics["test_loss"], pb.metrics["test_loss"], rel_tol=1e-4)
    assert_same_logs(train_logs(dpo), train_logs(rob))


# ---- PEFT, sync_ref_model
def test_peft_like_dpo(tok, tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    def lora(seed):
        torch.manual_seed(seed)  # LoRA's A is drawn from the global generator
        return get_peft_model(
            build_toy_model(seed, tokenizer=tok), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8)
        )

    dpo, rob = pair(tok, tmp_path, lambda: Dataset.from_list(rows(8)), ref=False, model_fn=lora)
    assert_same_logs(train_logs(dpo), train_logs(rob))


def test_sync_ref_model_like_dpo(tok, tmp_path):
    dpo, rob = pair(
        tok, tmp_path, lambda: Dataset.from_list(rows(8)), sync_ref_model=True, ref_model_sync_steps=1, max_steps=3
    )
    assert_same_logs(train_logs(dpo), train_logs(rob))
    for a, b in zip(rob.ref_model.parameters(), dpo.ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    assert not torch.equal(next(rob.ref_model.parameters()), next(build_toy_model(1, tokenizer=tok).parameters()))


# ---- bf16 / fp16 on the CPU: lm_head="auto" takes the fused head wherever the logits path would differ
@pytest.mark.parametrize("mode", ["bf16_autocast", "bf16_model", "fp16_model"])
def test_low_precision_like_dpo(tok, tmp_path, mode):
    dtype = {"bf16_autocast": torch.float32, "bf16_model": torch.bfloat16, "fp16_model": torch.float16}[mode]
    kw = dict(bf16=True) if mode == "bf16_autocast" else {}
    dpo, rob = pair(
        tok,
        tmp_path,
        lambda: Dataset.from_list(rows(8)),
        model_fn=lambda s: build_toy_model(s, tokenizer=tok).to(dtype),
        **kw,
    )
    assert rob.fused_head
    assert_same_logs(train_logs(dpo), train_logs(rob), rtol=1e-6)


def test_float32_cpu_keeps_the_logits_path(tok, tmp_path):
    _, rob = pair(tok, tmp_path, Dataset.from_list(rows(8)))
    assert not rob.fused_head  # the toy study's path, unchanged


# ---- MoE aux loss
def tiny_moe(seed, tok):
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2MoeConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=32,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_experts=4,
        num_experts_per_tok=2,
        output_router_logits=True,
        router_aux_loss_coef=0.01,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return Qwen2MoeForCausalLM(cfg)


def test_moe_aux_loss_like_dpo(tok, tmp_path):
    dpo, rob = pair(tok, tmp_path, lambda: Dataset.from_list(rows(8)), model_fn=lambda s: tiny_moe(s, tok))
    assert dpo.aux_loss_enabled and rob.aux_loss_enabled
    a, b = train_logs(dpo), train_logs(rob)
    assert "aux_loss" in a[0]
    assert_same_logs(a, b)


# ---- IterableDataset train and eval (streaming)
def streamed(n=8, **kw):
    return Dataset.from_list(rows(n, **kw)).to_iterable_dataset()


def test_streamed_train_and_eval_like_dpo(tok, tmp_path):
    dpo, rob = pair(tok, tmp_path, lambda: streamed(8), eval_dataset=lambda: streamed(4, fmt="conversational"))
    assert_same_logs(train_logs(dpo), train_logs(rob))
    a, b = dpo.evaluate(), rob.evaluate()
    assert math.isclose(a["eval_loss"], b["eval_loss"], rel_tol=1e-4)
    assert set(eval_logs(dpo)[-1]) == set(eval_logs(rob)[-1])


def test_streamed_rpo_with_integer_ids_and_epoch_e_step(tok, tmp_path):
    data = Dataset.from_list([{**r, "annotator": i % 3} for i, r in enumerate(rows(8))])
    kw = dict(robust=True, num_annotators=3, eta_update="epoch", max_steps=4, per_device_train_batch_size=4)
    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        build_toy_model(1, tokenizer=tok),
        args=config(RobustConfig, tmp_path, "s", **kw),
        train_dataset=data.to_iterable_dataset(),
        processing_class=tok,
    )
    assert trainer.annotator_names == ["0", "1", "2"]
    eta0 = trainer.eta.clone()
    trainer.train()
    assert not torch.equal(trainer.eta, eta0)  # the epoch E-step ran over the stream
    w = trainer.label_confidences(data.to_iterable_dataset())
    d, ids = trainer.log_odds(data.to_iterable_dataset())
    assert w.shape == d.shape == (8,) and ids.tolist() == [i % 3 for i in range(8)]
    torch.testing.assert_close(w, trainer.label_confidences(data))  # streamed == map-style


def test_streamed_string_names_and_bad_rows_are_named(tok, tmp_path):
    def make(ds, **kw):
        return RobustTrainer(
            build_toy_model(0, tokenizer=tok),
            build_toy_model(1, tokenizer=tok),
            args=config(RobustConfig, tmp_path, "e", robust=True, **kw),
            train_dataset=ds,
            processing_class=tok,
        )

    with pytest.raises(ValueError, match=r"string annotator names needs the names.*RobustConfig\(annotator_names="):
        make(streamed(8, annotators=True))
    with pytest.raises(ValueError, match="needs num_annotators"):
        make(Dataset.from_list([{**r, "annotator": 0} for r in rows(8)]).to_iterable_dataset())
    bad = rows(8)
    bad[5]["chosen"] = "   "
    trainer = make(Dataset.from_list(bad).to_iterable_dataset(), max_steps=2)
    with pytest.raises(ValueError, match=r"column 'chosen', row 5: empty string"):
        trainer.train()


def robust(tok, tmp_path, ds, **kw):
    return RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        build_toy_model(1, tokenizer=tok),
        args=config(RobustConfig, tmp_path, "n", robust=True, **kw),
        train_dataset=ds,
        processing_class=tok,
    )


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "map-style"])
def test_annotator_names_fix_eta_order_and_a_stream_of_names_trains(tok, tmp_path, stream):
    names = ["bob", "cid", "ann"]  # not sorted: the given order is eta's, "cid" has no row
    data = Dataset.from_list(rows(8, annotators=True))
    trainer = robust(
        tok, tmp_path, streamed(8, annotators=True) if stream else data, annotator_names=names, max_steps=2
    )
    assert trainer.annotator_names == names and trainer.eta.shape == (3,)
    trainer.train()
    assert trainer.state.global_step == 2
    eta = trainer.eta.tolist()
    assert eta[1] == 0.9 and eta[0] != 0.9 and eta[2] != 0.9  # only the labelled annotators moved
    _, ids = trainer.log_odds(data)
    assert ids.tolist() == [2, 0] * 4  # ann -> 2, bob -> 0, as listed


def test_a_name_outside_annotator_names_is_named_with_its_row(tok, tmp_path):
    data = rows(8, annotators=True)
    data[5]["annotator"] = "zed"
    names = ["ann", "bob"]
    with pytest.raises(
        ValueError, match=r"annotators \['zed'\] not in RobustConfig.annotator_names \(first at row 5\)"
    ):
        robust(tok, tmp_path, Dataset.from_list(data), annotator_names=names)
    trainer = robust(tok, tmp_path, Dataset.from_list(data).to_iterable_dataset(), annotator_names=names, max_steps=2)
    with pytest.raises(ValueError, match=r"column 'annotator': annotator 'zed' at row 5 is not in RobustConfig"):
        trainer.train()
    with pytest.raises(ValueError, match="num_annotators=3 but annotator_names names 2"):
        robust(tok, tmp_path, streamed(8, annotators=True), annotator_names=names, num_annotators=3)


# ---- image data: the wiring, without a model (a tiny local VLM trains it in tests/training/test_trl_vision.py)
def test_image_data_is_validated_and_mapped_before_dpotrainer_skips_preparation():
    from rpo.data.schema import validate_preferences
    from rpo.training import compat
    from rpo.training.collator import RobustCollator

    def vrow(i):
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"what is {i}?"}]}]
        answer = [{"role": "assistant", "content": [{"type": "text", "text": f"{i}"}]}]
        other = [{"role": "assistant", "content": [{"type": "text", "text": f"{i + 1}"}]}]
        return {"prompt": prompt, "chosen": answer, "rejected": other, "images": [[0]], "annotator": "ab"[i % 2]}

    data = Dataset.from_list([vrow(i) for i in range(4)])
    validate_preferences(data, name="vision")  # TRL's multimodal content parts are accepted
    seen = []

    def validate(ds, name, drop_identical):
        seen.append(name)
        return ds.add_column(ANNOTATOR_ID, [i % 2 for i in range(len(ds))])

    train, evals = compat.raw_splits(data, {"a": data, "b": data}, validate)
    assert (
        seen == ["train", "a", "b"] and ANNOTATOR_ID in train.column_names and ANNOTATOR_ID in evals["b"].column_names
    )
    assert compat.raw_splits(Dataset.from_list(rows(4)), None, validate)[0].column_names == [
        "prompt",
        "chosen",
        "rejected",
    ]
    base = lambda examples: {"n": len(examples)}  # noqa: E731
    assert RobustCollator(base, default_id=0)([{}, {ANNOTATOR_ID: 1}])[ANNOTATOR_ID].tolist() == [0, 1]
    with pytest.raises(KeyError, match=ANNOTATOR_ID):
        RobustCollator(base)([{}])
