"""Memory plan: the paper's 7B / 8B recipes on 8 x 40 GB GPUs under DeepSpeed ZeRO-3.

Writes ``docs/memory_plan.md`` (``--check``: exit 1 if the committed file differs). Per GPU it counts

1. model states (bf16 parameters and gradients, fp32 AdamW master/moments), sharded by ZeRO-3: DeepSpeed's
   own ``estimate_zero3_model_states_mem_needs`` when deepspeed is installed, else the same arithmetic
   (``4 x largest layer + 18 x params / GPUs`` bytes), and the two are checked to agree;
2. activations of one micro-batch at the recipes' ``max_length``, with and without activation
   checkpointing (formula below);
3. the reference model of DPO / IPO (bf16, ZeRO-3 sharded, no activations kept), or nothing for the
   reference-free SimPO / CPO and for precomputed reference log-probs;
4. ZeRO-3 working buffers and a fixed runtime allowance (CUDA context, NCCL, allocator slack).

Parameter counts come from the models' real architectures, built on PyTorch's meta device (no weights,
no download): the config values are written out below from the models' published ``config.json``.
Run: ``.venv/bin/python benchmarks/memory_plan.py``. It takes a few seconds on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "memory_plan.md"
GiB = 1024**3
GPU_GiB = 40 * 1e9 / GiB  # an "A800 40GB" holds 40 GB = 37.25 GiB; we budget in GiB against that
NUM_GPUS = 8
MICRO_BATCH = 2  # pairs per GPU per micro-step (recipes); TRL concatenates chosen and rejected: 2x sequences
MAX_LENGTH = 2048  # recipes (SimPO)
TOKEN_TILE = 4096  # TRL 1.16's fused LM head scores tokens in tiles of 4096 (trl/kernels/chunked_logprob.py)
RUNTIME_GiB = 2.0  # CUDA context + NCCL buffers + allocator fragmentation: an allowance, not a measurement
MAX_LIVE_PARAMS = 1e9  # ds_zero3.json stage3_max_live_parameters (bf16 -> 2 bytes each)

# Published config.json values (Hub: mistralai/Mistral-7B-Instruct-v0.2, meta-llama/Meta-Llama-3-8B-Instruct)
ARCHS = {
    "Mistral-7B-Instruct-v0.2": dict(
        model_type="mistral",
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=32768,
        rope_theta=1e6,
        sliding_window=None,
        tie_word_embeddings=False,
    ),
    "Meta-Llama-3-8B-Instruct": dict(
        model_type="llama",
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    ),
}


@functools.lru_cache(maxsize=None)
def count_params(name: str) -> tuple[int, int]:
    """(total parameters, parameters of the largest single module) of ``ARCHS[name]``, built on meta."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(ARCHS[name])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return total, largest


def model_states(total: int, largest: int) -> tuple[int, str]:
    """Bytes per GPU of ZeRO-3 model states (no offload, zero.Init), and which code computed it."""
    own = 4 * largest + int(18 * total / NUM_GPUS)  # = deepspeed's formula for this case, written out
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    except Exception:  # deepspeed is the optional `cluster` extra
        return own, "written out"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _, gpu, _ = estimate_zero3_model_states_mem_needs(
            total, largest, num_gpus_per_node=NUM_GPUS, num_nodes=1, cpu_offload=False, zero_init=True
        )
    if gpu != own:
        raise AssertionError(f"deepspeed's estimate {gpu} differs from the written-out arithmetic {own}")
    return gpu, "deepspeed"


def layer_activation_bytes_per_token(arch: dict) -> int:
    """Bytes one decoder layer keeps for backward per token, bf16, SDPA/flash attention (no s x s matrix):
    2 RMSNorms x (fp32 upcast 4h + bf16 output 2h) + q/k/v input 2h + attention q, k, v, out
    (2h + 2kv + 2kv + 2h) + o_proj input 2h + MLP input 2h + gate, silu(gate), up, product (4 x 2I)
    = 22h + 4kv + 8I. Dropout is off (TRL's disable_dropout)."""
    h, i = arch["hidden_size"], arch["intermediate_size"]
    kv = arch["num_key_value_heads"] * h // arch["num_attention_heads"]
    return 22 * h + 4 * kv + 8 * i


def plan(name: str, arch: dict, micro_batch: int = MICRO_BATCH) -> dict:
    total, largest = count_params(name)
    states, how = model_states(total, largest)
    tokens = 2 * micro_batch * MAX_LENGTH  # chosen + rejected, padded to max_length (worst case)
    L, h, V = arch["num_hidden_layers"], arch["hidden_size"], arch["vocab_size"]
    per_layer = layer_activation_bytes_per_token(arch) * tokens
    lm_tile = TOKEN_TILE * V * 4  # one fp32 logits tile (an upper bound: TRL may also split the vocabulary)
    final = tokens * h * (4 + 2)  # final RMSNorm (fp32 upcast + bf16 out)
    no_ckpt = L * per_layer + final + lm_tile
    # checkpointing keeps each layer's bf16 input; backward recomputes one layer at a time and needs about
    # as much again for that layer's activation gradients
    ckpt = L * tokens * h * 2 + 2 * per_layer + final + lm_tile
    ref = 2 * total // NUM_GPUS  # bf16, sharded; gathered layers of its forward fall under the live buffer
    live = int(2 * MAX_LIVE_PARAMS)
    return dict(
        name=name,
        total=total,
        largest=largest,
        states=states,
        how=how,
        tokens=tokens,
        per_layer=per_layer,
        ckpt=ckpt,
        no_ckpt=no_ckpt,
        ref=ref,
        live=live,
    )


def per_gpu_total(p: dict, *, ckpt: bool, reference: bool) -> float:
    """Bytes per GPU of a plan: states + activations + reference + ZeRO live buffer + runtime allowance."""
    return (
        p["states"]
        + (p["ckpt"] if ckpt else p["no_ckpt"])
        + (p["ref"] if reference else 0)
        + p["live"]
        + RUNTIME_GiB * GiB
    )


def largest_micro_batch(name: str, arch: dict, *, ckpt: bool, reference: bool = True, limit: int = 16) -> int:
    """Most pairs per GPU per micro-step that fit a 40 GB card at max_length (0: not even one)."""
    best = 0
    for mb in range(1, limit + 1):
        if per_gpu_total(plan(name, arch, mb), ckpt=ckpt, reference=reference) / GiB > GPU_GiB:
            break
        best = mb
    return best


def fmt_gib(b: float) -> str:
    return f"{b / GiB:.2f}"


def render(plans: list[dict]) -> str:
    L = [
        "# Memory plan: the paper's recipes on 8 x 40 GB under DeepSpeed ZeRO-3",
        "",
        "Generated by `benchmarks/memory_plan.py` (do not edit by hand; rerun it). Per GPU, in GiB "
        f"(1 GiB = 2^30 bytes; a 40 GB card holds {GPU_GiB:.2f} GiB). Setting: the recipes in `recipes/` "
        f"(full fine-tuning, bf16, AdamW, {NUM_GPUS} GPUs, micro-batch {MICRO_BATCH} pairs, max_length "
        f"{MAX_LENGTH}, `recipes/accelerate/zero3.yaml` + `ds_zero3.json`, no offload).",
        "",
        "## Model states (ZeRO-3)",
        "",
        "| model | parameters | largest module | params + grads + AdamW per GPU |",
        "|---|---:|---:|---:|",
    ]
    for p in plans:
        L.append(f"| {p['name']} | {p['total']:,} | {p['largest']:,} (embedding) | {fmt_gib(p['states'])} |")
    L += [
        "",
        "DeepSpeed's estimator (`deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs`, no "
        f"offload, zero.Init): `4 x largest module + 18 bytes x parameters / {NUM_GPUS}` (bf16 weights 2 + bf16 "
        "grads 2 + fp32 master 4 + Adam m 4 + v 4 + 2 of buffers, per parameter). The script writes this "
        "arithmetic out and, where deepspeed is installed, checks that deepspeed's function gives the same bytes "
        "(it did with deepspeed 0.19.8).",
        "",
        "## Activations of one micro-batch",
        "",
        f"TRL concatenates chosen and rejected, so a micro-batch of {MICRO_BATCH} pairs is {2 * MICRO_BATCH} "
        f"sequences: at most {plans[0]['tokens']:,} tokens when every sequence reaches max_length (TRL pads to "
        "the longest in the batch; UltraFeedback pairs are usually far shorter, so this is the worst case).",
        "Per decoder layer and token, bf16 with SDPA/flash attention (no s x s matrix), the tensors kept for "
        "backward are `22h + 4kv + 8I` bytes (two RMSNorms with their fp32 upcast, q/k/v inputs, attention "
        "q, k, v and output, o_proj input, and the SwiGLU MLP's four intermediate tensors): "
        f"{layer_activation_bytes_per_token(ARCHS['Mistral-7B-Instruct-v0.2']):,} bytes for both models "
        "(h = 4096, kv = 1024, I = 14336). The LM head is TRL's fused, tiled head: logits are never "
        f"materialised; we count one fp32 tile of {TOKEN_TILE} tokens x the whole vocabulary as an upper bound.",
        "With activation checkpointing each layer keeps only its bf16 input; the backward recomputes one layer "
        "at a time, counted twice (its activations and their gradients).",
        "",
        "| model | one layer | all layers, no checkpointing | with checkpointing |",
        "|---|---:|---:|---:|",
    ]
    for p in plans:
        L.append(f"| {p['name']} | {fmt_gib(p['per_layer'])} | {fmt_gib(p['no_ckpt'])} | {fmt_gib(p['ckpt'])} |")
    L += [
        "",
        "## Total per GPU",
        "",
        f"Reference model (DPO, IPO): bf16, sharded like the policy (`2 x parameters / {NUM_GPUS}`), no activations "
        "kept (no grad). SimPO and CPO are reference-free (RobustTrainer builds none); with "
        "`precompute_ref_log_probs: true` DPO/IPO need none during training either (one extra pass before). "
        f"ZeRO-3 live parameters: `stage3_max_live_parameters` = {MAX_LIVE_PARAMS:.0e} bf16 parameters "
        f"gathered at most ({fmt_gib(2 * MAX_LIVE_PARAMS)} GiB). Runtime allowance: {RUNTIME_GiB} GiB "
        "(CUDA context, NCCL, fragmentation; an assumption, not a measurement).",
        "",
        "| model | method | checkpointing | states | activations | reference | ZeRO live | runtime | total | fits 40 GB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in plans:
        for method, ref in (("DPO / IPO", p["ref"]), ("SimPO / CPO", 0)):
            for ck in (True, False):
                act = p["ckpt"] if ck else p["no_ckpt"]
                total = per_gpu_total(p, ckpt=ck, reference=bool(ref))
                fits = "yes" if total / GiB <= GPU_GiB else "**no**"
                L.append(
                    f"| {p['name']} | {method} | {'yes' if ck else 'no'} | {fmt_gib(p['states'])} | "
                    f"{fmt_gib(act)} | {fmt_gib(ref)} | {fmt_gib(p['live'])} | {RUNTIME_GiB:.2f} | "
                    f"{fmt_gib(total)} | {fits} |"
                )
    L += [
        "",
        f"Largest micro-batch (pairs per GPU, every sequence {MAX_LENGTH} tokens) that fits, DPO / IPO "
        "(with the reference):",
        "",
        "| model | with checkpointing | without |",
        "|---|---:|---:|",
    ]
    for p in plans:
        a = ARCHS[p["name"]]
        L.append(
            f"| {p['name']} | {largest_micro_batch(p['name'], a, ckpt=True)} | "
            f"{largest_micro_batch(p['name'], a, ckpt=False)} |"
        )
    L += [
        "",
        "## Conclusions",
        "",
        "- Full fine-tuning of both models fits 8 x 40 GB under ZeRO-3 **only with activation checkpointing** "
        "(the recipes set `activation_checkpointing: true`); without it one worst-case micro-batch of 2 pairs "
        "needs more activation memory than the card holds.",
        "- The reference model costs little under ZeRO-3 (it is sharded too); precomputing reference log-probs "
        "is not needed for memory, only to save the reference forward's time.",
        "- Without checkpointing not even one pair per GPU fits at 2048 tokens (table above); shorter "
        "max_length or optimizer offload (`offload_optimizer: cpu`) would be the other levers.",
        "- Not counted: the paper's 'EMA of the model parameters' if read literally as a second model copy "
        "(the recipes read it as eta's EMA, eq. 7); a literal EMA copy would add about 2 bytes x parameters / "
        f"{NUM_GPUS} if sharded like the reference.",
        "",
    ]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/memory_plan.md differs")
    args = ap.parse_args(argv)
    text = render([plan(n, a) for n, a in ARCHS.items()])
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} differs from benchmarks/memory_plan.py's output")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
