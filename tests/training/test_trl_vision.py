"""RobustTrainer on image data (issue 18): a tiny vision-language model that TRL's DPOTrainer trains.

A LLaVA (CLIP vision tower, Llama text model) and its processor are built from configs around the toy
character tokenizer, with an ``<image>`` token added: nothing is downloaded. DPOTrainer sends image data
through its vision collator (``DataCollatorForVisionPreference``) and skips ``_prepare_dataset``, so this is
the one path on which RobustTrainer's own validation and annotator mapping (``compat.raw_splits``) carry the
annotator ids. The tests train it against DPOTrainer and under R-DPO, evaluate / predict a raw image set
(which DPOTrainer passes on unprepared) and run the scoring passes (full E-step, exact EM, the epoch E-step).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("PIL")

import test_trl_compat  # noqa: E402  (its DPOConfig / RobustConfig builder)
from datasets import Dataset  # noqa: E402
from PIL import Image  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from rpo.models import build_toy_tokenizer  # noqa: E402
from rpo.training import ANNOTATOR_ID, RobustConfig, RobustTrainer  # noqa: E402

#: 8x8 images in 4x4 patches: 4 patch tokens (the CLS feature is dropped by the "default" strategy)
IMAGE_SIZE, PATCH_SIZE = 8, 4
#: the toy chat template, with TRL's multimodal content parts: an image part renders as the image token
VISION_TEMPLATE = (
    "{% for m in messages %}{{ m['role'][0] | upper }}:"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
)
WORDS = ["red", "blue", "cat", "dog", "sun", "moon", "tree", "fish"]


def tiny_processor():
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = build_toy_tokenizer()
    tok.add_tokens(["<image>"], special_tokens=True)  # one token, never split into characters
    size = dict(shortest_edge=IMAGE_SIZE)
    images = CLIPImageProcessorPil(size=size, crop_size=dict(height=IMAGE_SIZE, width=IMAGE_SIZE))
    return LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS position, which "default" then drops
        chat_template=VISION_TEMPLATE,
    )


def tiny_vlm(seed, processor):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tok = processor.tokenizer
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=processor.image_token_id,
        vision_feature_layer=-1,  # the tower's one layer (LLaVA's default, -2, would be the patch embeddings)
        vision_feature_select_strategy="default",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlavaForConditionalGeneration(config)


def vision_rows(n=8):
    """TRL's conversational vision format: an image placeholder in the user turn, one noise image per row
    (of varying height: the processor resizes and crops), and the annotator column."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 256, (IMAGE_SIZE + i % 3, IMAGE_SIZE, 3), dtype=np.uint8)  # the processor resizes
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": f"say {WORDS[i % 8]}"}]}]
        chosen = [{"role": "assistant", "content": [{"type": "text", "text": f" {WORDS[(i + 1) % 8]} ok"}]}]
        rejected = [{"role": "assistant", "content": [{"type": "text", "text": f" {WORDS[(i + 3) % 8]}"}]}]
        row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "images": [Image.fromarray(pixels)]}
        out.append({**row, "annotator": ["ann", "bob"][i % 2]})
    return out


def config(cls, tmp_path, name, **kw):
    """test_trl_compat's config, for 2 steps and without truncation (it could cut image tokens off, and TRL
    refuses keep_end on image data)."""
    return test_trl_compat.config(cls, tmp_path, name, **{"max_steps": 2, "max_length": None, **kw})


def trained(cls, trainer_cls, tmp_path, **kw):
    """A trainer after 2 steps, the policy's parameters before them, the step logs and the keyword names
    of every policy and reference forward."""
    processor = tiny_processor()
    trainer = trainer_cls(
        tiny_vlm(0, processor),
        tiny_vlm(1, processor),
        args=config(cls, tmp_path, trainer_cls.__name__ + str(kw.get("robust", "")), **kw),
        train_dataset=Dataset.from_list(vision_rows()),
        processing_class=processor,
    )
    start, seen = [p.detach().clone() for p in trainer.model.parameters()], []
    hook = lambda module, args, kwargs: seen.append(set(kwargs))  # noqa: E731
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in (trainer.model, trainer.ref_model)]
    try:
        trainer.train()
    finally:
        for h in handles:
            h.remove()
    logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    return trainer, start, logs, seen


def vision_tower_moved(trainer, start) -> bool:
    """Whether the optimizer changed the vision tower: the pixels reached the policy's loss."""
    names = [n for n, _ in trainer.model.named_parameters()]
    return any(
        "vision_tower" in n and not torch.equal(p0, p.detach())
        for n, p0, p in zip(names, start, trainer.model.parameters())
    )


@pytest.mark.slow
def test_vision_dpo_trains_like_dpotrainer(tmp_path):
    dpo, dpo_start, dpo_logs, _ = trained(DPOConfig, DPOTrainer, tmp_path)
    rob, rob_start, rob_logs, _ = trained(RobustConfig, RobustTrainer, tmp_path)
    assert dpo._is_vision_dataset and rob._is_vision_dataset
    assert rob.annotator_names == ["ann", "bob"]
    assert len(dpo_logs) == len(rob_logs) == 2
    for a, b in zip(dpo_logs, rob_logs):
        assert set(a) == set(b), f"logged keys differ: only DPO {set(a) - set(b)}, only RPO {set(b) - set(a)}"
        for key in ("loss", "rewards/margins", "logps/chosen", "logps/rejected", "logits/chosen", "num_tokens"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    assert vision_tower_moved(dpo, dpo_start) and vision_tower_moved(rob, rob_start)
    # Adam's steps are ~lr = 1e-2: a parameter with a near-zero gradient may differ by a rounding's worth
    for a, b in zip(dpo.model.parameters(), rob.model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    # a raw image set, which DPOTrainer passes on unprepared: RobustTrainer maps its annotator ids on the way
    raw = Dataset.from_list(vision_rows(4))
    a, b = dpo.evaluate(raw)["eval_loss"], rob.evaluate(raw)["eval_loss"]
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    a, b = dpo.predict(raw).metrics["test_loss"], rob.predict(raw).metrics["test_loss"]
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_vision_rdpo_moves_eta(tmp_path):
    rob, start, logs, seen = trained(RobustConfig, RobustTrainer, tmp_path, robust=True)
    # the pixels reach both forwards (policy and reference), the annotator ids neither
    assert len(seen) >= 4 and all("pixel_values" in k and ANNOTATOR_ID not in k for k in seen)
    eta = rob.eta
    assert torch.isfinite(eta).all() and not torch.allclose(eta, torch.full_like(eta, rob.args.eta0))
    assert all(math.isfinite(h["loss"]) for h in logs) and {"eta/ann", "eta/bob", "w/mean"} <= set(logs[-1])
    assert vision_tower_moved(rob, start)
    # the scoring passes (full E-step, exact EM) read the raw conversation and images, as the collator does
    w, w_raw = rob.label_confidences(), rob.label_confidences(Dataset.from_list(vision_rows(4)))
    assert w.shape == (8,) and w_raw.shape == (4,) and ((w > 0) & (w < 1)).all()
    torch.testing.assert_close(w_raw, w[:4])  # the same rows, raw or prepared
    assert torch.isfinite(rob.fit_reliability()).all()


@pytest.mark.slow
def test_vision_epoch_e_step_moves_eta(tmp_path):
    kw = dict(robust=True, eta_update="epoch", max_steps=-1, num_train_epochs=1)
    rob, _, logs, _ = trained(RobustConfig, RobustTrainer, tmp_path, **kw)
    assert len(logs) == 2  # one epoch of 8 rows in batches of 4, then eq. 6 over the images
    assert torch.isfinite(rob.eta).all() and not torch.allclose(rob.eta, torch.full_like(rob.eta, rob.args.eta0))
