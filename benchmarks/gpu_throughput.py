"""Training throughput and MFU of R-DPO (rpo.RobustTrainer) against TRL's own DPOTrainer, on one GPU, bf16.

Issue 7 asks: R-DPO's tokens/s at least 0.99 of DPO's, for the SmolLM2-135M and Qwen2.5-0.5B
architectures (random initial weights: throughput does not depend on them). The config values of both
architectures are written out below (the Hub is unreachable from the benchmark machine).

Method. For each architecture, both trainers get the same initial weights (one seeded model, deep-copied),
the same reference model (a frozen copy, forward under no_grad every step, as TRL does), the same synthetic
pairs (fixed lengths, so every step has the same token count) and the same DPOConfig values. They are
interleaved: in each round each trainer runs ``--steps`` optimizer steps (the first ``--warmup-steps``
of a round are not timed), the order alternating between rounds; round 0 is a warm-up and is dropped.
A step is timed between ``torch.cuda.synchronize()`` calls in a TrainerCallback. The ratio reported
is the median over rounds of (R-DPO tokens/s) / (DPO tokens/s) within the round.

Tokens: every non-padding token of chosen and rejected sequences (prompt included), i.e. what the policy
forwards and backpropagates. Model FLOPs per such token (PaLM's accounting, Chowdhery et al. 2022, app. B):
policy forward+backward ``6N + 12 L h s`` plus reference forward ``2N + 4 L h s``, where N counts every
parameter that does a matmul (tied embeddings counted once, as the LM head), L layers, h hidden size,
s sequence length. MFU = achieved model FLOP/s / the GPU's dense bf16 peak (table below or --peak-tflops).

Run on the GPU (about 3-5 minutes; the script stops starting new rounds after --budget-s):
    python benchmarks/gpu_throughput.py
CPU check of the whole code path with tiny sizes (no MFU):
    python benchmarks/gpu_throughput.py --dry-run
Writes JSON + Markdown to ``benchmarks/results/gpu_throughput[-dry-run].{json,md}`` and to ``$OUT`` if set.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

# Published config.json values (HuggingFaceTB/SmolLM2-135M-Instruct, Qwen/Qwen2.5-0.5B-Instruct).
ARCHS = {
    "SmolLM2-135M": dict(
        model_type="llama",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        hidden_act="silu",
    ),
    "Qwen2.5-0.5B": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        hidden_act="silu",
    ),
}
TINY = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
# Dense bf16 peak, FLOP/s (vendor datasheets, SXM parts; no sparsity)
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
}
TARGET = 0.99


def build_config(name: str, dry_run: bool):
    from transformers import AutoConfig

    cfg = dict(ARCHS[name])
    if dry_run:
        cfg.update(TINY)
    model_type = cfg.pop("model_type")
    return AutoConfig.for_model(model_type, **cfg)


def flop_params(model) -> int:
    """Parameters that take part in a matmul: all unique ones, minus the input embedding when untied."""
    n = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    if not model.config.tie_word_embeddings:
        n -= model.get_input_embeddings().weight.numel()
    return n


def synthetic_pairs(n: int, prompt_len: int, completion_len: int, seed: int):
    """Plain-text pairs for the char-level toy tokenizer: one token per character, fixed lengths."""
    import random

    from datasets import Dataset

    from rpo.models import TOY_CHARS

    rng = random.Random(seed)
    chars = [c for c in TOY_CHARS if c.isalnum()]
    text = lambda k: "".join(rng.choice(chars) for _ in range(k))  # noqa: E731
    return Dataset.from_list(
        [
            {"prompt": text(prompt_len), "chosen": text(completion_len), "rejected": text(completion_len)}
            for _ in range(n)
        ]
    )


class StepTimer:
    """TrainerCallback timing each optimizer step between device synchronisations."""

    def __init__(self, device):
        from transformers import TrainerCallback

        self.device, self.times, self._t0 = device, [], None
        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer._sync()
                timer._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer._sync()
                timer.times.append(time.perf_counter() - timer._t0)

        self.callback = _CB()

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def make_trainers(name: str, a: argparse.Namespace, device):
    """(DPO trainer, R-DPO trainer, tokens per step, seq len, flop params) for one architecture."""
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer

    from rpo.models import build_toy_tokenizer
    from rpo.training import RobustConfig, RobustTrainer

    tok = build_toy_tokenizer()
    config = build_config(name, a.dry_run)
    config.pad_token_id, config.bos_token_id, config.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
    torch.manual_seed(a.seed)
    base = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # fp32 master weights, bf16 autocast
    n_flop = flop_params(base)
    data = synthetic_pairs(a.batch_size * (a.steps + 1), a.prompt_len, a.completion_len, a.seed)
    common = dict(
        output_dir=str(a.tmp / name),
        per_device_train_batch_size=a.batch_size,
        max_steps=a.steps,
        learning_rate=1e-6,
        lr_scheduler_type="constant",
        beta=0.1,
        max_length=a.prompt_len + a.completion_len + 8,
        bf16=not a.dry_run,
        use_cpu=a.dry_run,
        activation_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=a.steps,
        dataloader_num_workers=0,
        seed=a.seed,
        disable_tqdm=True,
    )
    trainers = {}
    for method in ("DPO", "R-DPO"):
        policy, ref = copy.deepcopy(base).to(device), copy.deepcopy(base).to(device)
        if method == "DPO":
            tr = DPOTrainer(
                model=policy, ref_model=ref, args=DPOConfig(**common), train_dataset=data, processing_class=tok
            )
        else:
            cfg = RobustConfig(**common, pref_loss="dpo", robust=True, eta0=0.9, ema_alpha=0.1)
            tr = RobustTrainer(model=policy, ref_model=ref, args=cfg, train_dataset=data, processing_class=tok)
        timer = StepTimer(device)
        tr.add_callback(timer.callback)
        tr.remove_callback(PrinterCallback)  # no per-round log dicts on stdout
        trainers[method] = (tr, timer)
    batch = next(iter(trainers["DPO"][0].get_train_dataloader()))
    tokens_per_step = int(batch["attention_mask"].sum())
    seq_len = int(batch["attention_mask"].shape[1])
    del base
    return trainers, tokens_per_step, seq_len, n_flop


def peak_flops(device, override_tflops):
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, name
    return None, name


def run(a: argparse.Namespace, save=lambda res: None) -> dict:
    """Benchmark every architecture of ``a.archs``; ``save(results)`` after each one (nothing lost on a crash)."""
    device = torch.device("cpu" if a.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not a.dry_run:
        raise SystemExit("no CUDA GPU found: use --dry-run to check the code path on CPU")
    t_start = time.perf_counter()
    peak, device_name = peak_flops(device, a.peak_tflops)
    results = {
        "device": device_name,
        "peak_bf16_flops": peak,
        "dry_run": a.dry_run,
        "target_ratio": TARGET,
        "settings": {k: v for k, v in vars(a).items() if k != "tmp"},
        "archs": {},
        "versions": versions(),
    }
    from tqdm.auto import tqdm

    for i, name in enumerate(a.archs):
        deadline = t_start + a.budget_s * (i + 1) / len(a.archs)  # each architecture gets its share
        trainers, tokens_per_step, seq_len, n_flop = make_trainers(name, a, device)
        L, h = trainers["DPO"][0].model.config.num_hidden_layers, trainers["DPO"][0].model.config.hidden_size
        flops_per_token = (6 * n_flop + 12 * L * h * seq_len) + (2 * n_flop + 4 * L * h * seq_len)
        rounds, partial = [], False
        for r in tqdm(range(a.rounds + 1), desc=name):
            if time.perf_counter() > deadline:
                partial = True
                break
            order = ("DPO", "R-DPO") if r % 2 == 0 else ("R-DPO", "DPO")
            row = {}
            for method in order:
                tr, timer = trainers[method]
                timer.times.clear()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                tr.train()
                timed = timer.times[a.warmup_steps :]
                row[method] = {
                    "tokens_per_s": tokens_per_step * len(timed) / sum(timed),
                    "step_s_median": statistics.median(timed),
                    "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                }
            if r > 0:  # round 0 warms up kernels and allocator
                row["ratio"] = row["R-DPO"]["tokens_per_s"] / row["DPO"]["tokens_per_s"]
                rounds.append(row)
        summary = {
            "params_flop": n_flop,
            "seq_len": seq_len,
            "tokens_per_step": tokens_per_step,
            "model_flops_per_token": flops_per_token,
            "rounds": rounds,
            "partial": partial,
        }
        if rounds:
            for method in ("DPO", "R-DPO"):
                tps = statistics.median(x[method]["tokens_per_s"] for x in rounds)
                summary[method] = {"tokens_per_s_median": tps, "mfu": tps * flops_per_token / peak if peak else None}
            ratios = [x["ratio"] for x in rounds]
            summary.update(
                ratio_median=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                meets_target=statistics.median(ratios) >= TARGET,
            )
        results["archs"][name] = summary
        results["wall_s"] = time.perf_counter() - t_start
        save(results)
        del trainers
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results["wall_s"] = time.perf_counter() - t_start
    return results


def versions() -> dict:
    import transformers
    import trl

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "cuda": torch.version.cuda,
    }
    try:
        import subprocess

        v["git_commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return v


def render_md(res: dict) -> str:
    L = [
        f"# R-DPO vs TRL DPOTrainer throughput ({'CPU dry run, tiny sizes' if res['dry_run'] else res['device']})",
        "",
        "Produced by `benchmarks/gpu_throughput.py`; numbers are medians over interleaved rounds.",
        "",
        "| architecture | DPO tokens/s | R-DPO tokens/s | ratio (median, min-max) | DPO MFU | R-DPO MFU | >= 0.99 |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    pct = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    for name, s in res["archs"].items():
        if "DPO" not in s:
            L.append(f"| {name} | no completed round | | | | | |")
            continue
        L.append(
            f"| {name} | {s['DPO']['tokens_per_s_median']:,.0f} | {s['R-DPO']['tokens_per_s_median']:,.0f} | "
            f"{s['ratio_median']:.4f} ({s['ratio_min']:.4f}-{s['ratio_max']:.4f}) | {pct(s['DPO']['mfu'])} | "
            f"{pct(s['R-DPO']['mfu'])} | {'yes' if s['meets_target'] else '**no**'}"
            f"{' (partial)' if s['partial'] else ''} |"
        )
    st = res["settings"]
    L += [
        "",
        f"Settings: {st['batch_size']} pairs per step, prompt {st['prompt_len']} + completion "
        f"{st['completion_len']} tokens, {st['steps']} steps per round ({st['warmup_steps']} untimed), "
        f"{st['rounds']} timed rounds; bf16 autocast over fp32 weights; reference model forward included in "
        f"MFU. Wall time {res['wall_s']:.0f} s. Versions: {res['versions']}.",
        "",
    ]
    return "\n".join(L)


def write(res: dict, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(res, indent=2, default=str)), (".md", render_md(res))):
        path = out_dir / f"{stem}{suffix}"
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # atomic: a killed run never leaves half a file
        paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", "--smoke", action="store_true", help="tiny sizes on CPU: checks the code path")
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 8; dry run 2)")
    ap.add_argument("--prompt-len", type=int, default=None, help="default 256 (dry run 16)")
    ap.add_argument("--completion-len", type=int, default=None, help="default 256 (dry run 16)")
    ap.add_argument("--steps", type=int, default=None, help="steps per trainer per round (default 20; dry run 3)")
    ap.add_argument("--warmup-steps", type=int, default=None, help="untimed steps per round (default 3; dry run 1)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds, after one warm-up (default 6; dry run 2)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="start no round after this many seconds")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU, if not in the table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    small = dict(batch_size=2, prompt_len=16, completion_len=16, steps=3, warmup_steps=1, rounds=2)
    full = dict(batch_size=8, prompt_len=256, completion_len=256, steps=20, warmup_steps=3, rounds=6)
    for k, v in (small if a.dry_run else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.warmup_steps >= a.steps:
        ap.error("--warmup-steps must be smaller than --steps")
    import tempfile

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    stem = "gpu_throughput-dry-run" if a.dry_run else "gpu_throughput"
    out_dirs = [a.out_dir] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else [])

    def save(res):
        return [p for d in out_dirs for p in write(res, d, stem)]

    with tempfile.TemporaryDirectory() as tmp:
        a.tmp = Path(tmp)
        res = run(a, save)
    paths = save(res)
    print(render_md(res))
    print("written:", *map(str, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
