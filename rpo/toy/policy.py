"""The toy world's policies: batched left-padded sampling, and the plain-torch SFT loop that makes the
reference policy (one thread, CPU)."""

from __future__ import annotations

import random

import torch

from rpo.toy.tasks import MARKER, answer, corrupt


def encode_left_padded(tokenizer, prompts: list[str]) -> dict:
    """Tokenise prompts with left padding (no special tokens) for batched generation."""
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old


@torch.no_grad()
def sample_responses(
    model,
    tokenizer,
    prompts: list[str],
    *,
    n: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 10,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> list[list[str]]:
    """``n`` responses per prompt (``[len(prompts)][n]``), batched with left padding.

    ``temperature == 0`` is greedy; otherwise pure ancestral sampling (``top_k=0, top_p=1``: transformers
    would otherwise apply its default top-k of 50), so on-policy pairs come from pi_ref itself.
    Deterministic for a given (model, prompts, n, batch_size, seed): each batch reseeds a forked RNG,
    so the caller's global RNG is left untouched.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    flat = [p for p in prompts for _ in range(n)]
    decoding = (
        dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0) if temperature > 0 else dict(do_sample=False)
    )
    out: list[str] = []
    starts = range(0, len(flat), batch_size)
    for b, start in enumerate(tqdm(starts, desc="sampling", disable=not progress)):
        enc = encode_left_padded(tokenizer, flat[start : start + batch_size])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1_000_003 + b)
            gen = model.generate(
                **enc,
                **decoding,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(t.strip() for t in texts)
    model.train(was_training)
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def sft_train(
    model,
    tokenizer,
    prompts: list[str],
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    p_correct: float = 0.5,
    seed: int = 0,
    progress: bool = False,
    style_rate: float = 0.0,
) -> list[float]:
    """Plain SFT on ``prompt + target + eos`` with the loss on the completion only.

    The target is the exact answer with probability ``p_correct`` and a :func:`corrupt`-ed one otherwise
    (drawn afresh each time), so the model learns a *distribution* of good and flawed answers.
    ``style_rate > 0`` (the witness-dial world family) appends :data:`rpo.toy.tasks.MARKER` to a target
    with that probability, independently of its correctness (0: no draw, today's stream of targets).
    Returns the loss per step.
    """
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    model.train()
    eos = tokenizer.eos_token_id
    losses = []
    for _ in tqdm(range(steps), desc="SFT reference", disable=not progress):
        idx = torch.randint(len(prompts), (batch_size,), generator=gen).tolist()
        seqs, masks = [], []
        for i in idx:
            target = answer(prompts[i])
            if rng.random() >= p_correct:
                target = corrupt(target, rng)
            if style_rate > 0 and rng.random() < style_rate:
                target += MARKER
            p_ids = tokenizer(prompts[i], add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [eos]
            seqs.append(p_ids + c_ids)
            masks.append([0] * len(p_ids) + [1] * len(c_ids))
        width = max(map(len, seqs))
        ids = torch.full((batch_size, width), tokenizer.pad_token_id)
        attn = torch.zeros((batch_size, width), dtype=torch.long)
        labels = torch.full((batch_size, width), -100)
        for r, (s, m) in enumerate(zip(seqs, masks)):
            ids[r, : len(s)] = torch.tensor(s)
            attn[r, : len(s)] = 1
            labels[r, : len(s)] = torch.where(torch.tensor(m) == 1, torch.tensor(s), -100)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
