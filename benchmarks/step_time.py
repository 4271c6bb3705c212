"""Median optimizer-step time: RobustTrainer against TRL's own trainers (issue 3's performance target).

Pairs compared, on the same toy Llama (rpo.models, seed 0), the same 8-pair batch, one torch thread:

* R-DPO (RobustTrainer, pref_loss="dpo", robust=True) vs TRL DPOTrainer (loss_type="sigmoid");
* R-SimPO vs TRL CPOTrainer (loss_type="simpo", cpo_alpha=0);
* RobustTrainer's default ``lm_head="auto"`` computes log-probs from the full logits on CPU (as CPOTrainer
  does), while DPOTrainer always uses TRL's fused LM head, whose CPU fallback is slower; so R-DPO is also
  raced with ``lm_head="fused"``, DPOTrainer's own forward (like for like);
* and, to isolate RPO's own cost (E-step, eq. 5, eq. 7), each robust method against the same
  RobustTrainer with ``robust=False`` (same forward, same metrics).

One "step" is what Trainer does per optimizer step with no accumulation: ``training_step`` (forward,
loss, metrics, backward), ``optimizer.step()``, ``zero_grad()``, and for RobustTrainer its step-end
hook (the eq. 7 update of eta). Steps of the trainers alternate (A B C A B C ...) so that load from
other processes on a shared machine hits all alike; medians, not means. The race is repeated with fresh
trainers (``--repeats``); the ratio reported is the median over repeats, with their range.
Target: ratio <= 1.02.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py [--steps 300] [--warmup 20] [--repeats 3]
        [--json out.json] [--hidden 64 --layers 2]   (a wider toy shows the fixed O(B) cost of RPO shrinking)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

CPU = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to=[],
    disable_tqdm=True,
    seed=0,
    per_device_train_batch_size=8,
    learning_rate=1e-4,
    save_strategy="no",
)


FUSED = " [fused head]"  # suffix: the same trainer with lm_head="fused" (DPOTrainer's forward)


def toy_pairs(n: int = 8, seed: int = 0):
    """Prompt "<bos>word:", chosen WORD, rejected drow (the tests' synthetic rule)."""
    from datasets import Dataset

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 5))) for _ in range(n)]
    return Dataset.from_dict(
        {
            "prompt": [f"<bos>{w}:" for w in words],
            "chosen": [w.upper() for w in words],
            "rejected": [w[::-1] for w in words],
        }
    )


def build(kind: str, tok, data, out: str, size: dict | None = None):
    from trl import DPOConfig, DPOTrainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from rpo.models import build_toy_model
    from rpo.training import RobustConfig, RobustTrainer

    model = build_toy_model(0, tokenizer=tok, **(size or {}))
    ref = build_toy_model(1, tokenizer=tok, **(size or {}))
    head = "fused" if kind.endswith(FUSED) else "auto"
    base = kind.removesuffix(FUSED)
    if base == "R-DPO":
        return RobustTrainer(
            model,
            ref_model=ref,
            args=RobustConfig(output_dir=out, pref_loss="dpo", beta=0.1, lm_head=head, **CPU),
            train_dataset=data,
            processing_class=tok,
        )
    if kind == "TRL DPO":
        return DPOTrainer(
            model,
            ref_model=ref,
            args=DPOConfig(output_dir=out, loss_type="sigmoid", beta=0.1, **CPU),
            train_dataset=data,
            processing_class=tok,
        )
    if base in ("DPO (ours, robust=False)", "SimPO (ours, robust=False)"):
        simpo = base.startswith("SimPO")
        cfg = RobustConfig(
            output_dir=out,
            pref_loss="simpo" if simpo else "dpo",
            robust=False,
            beta=2.0 if simpo else 0.1,
            gamma=0.5 if simpo else 0.0,
            lm_head=head,
            **CPU,
        )
        return RobustTrainer(
            model, ref_model=None if simpo else ref, args=cfg, train_dataset=data, processing_class=tok
        )
    if base == "R-SimPO":
        return RobustTrainer(
            model,
            args=RobustConfig(output_dir=out, pref_loss="simpo", beta=2.0, gamma=0.5, lm_head=head, **CPU),
            train_dataset=data,
            processing_class=tok,
        )
    if kind == "TRL SimPO":
        return CPOTrainer(
            model,
            args=CPOConfig(output_dir=out, loss_type="simpo", cpo_alpha=0.0, beta=2.0, simpo_gamma=0.5, **CPU),
            train_dataset=data,
            processing_class=tok,
        )
    raise ValueError(kind)


class Stepper:
    """One trainer, its optimizer and its fixed batch; ``step()`` returns seconds."""

    def __init__(self, trainer):
        self.trainer = trainer
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        self.batch = trainer._prepare_inputs(trainer.data_collator(rows))
        self.end_of_step = getattr(trainer, "_end_of_step", lambda: None)
        self.times: list[float] = []

    def step(self) -> float:
        tr = self.trainer
        t0 = time.perf_counter()
        tr.training_step(tr.model, self.batch)
        tr.optimizer.step()
        tr.model.zero_grad()
        self.end_of_step()
        dt = time.perf_counter() - t0
        # metrics pile up until log(), which this loop never calls
        if hasattr(tr, "_metrics"):
            tr._metrics["train"].clear()
        if hasattr(tr, "_stored_metrics"):
            tr._stored_metrics.clear()
        return dt


def race(kinds: list[str], tok, data, steps: int, warmup: int, size: dict) -> dict[str, float]:
    """Median seconds per step of each trainer, steps taken round-robin in a rotating order."""
    with tempfile.TemporaryDirectory() as out:
        steppers = [Stepper(build(k, tok, data, out, size)) for k in kinds]
        for i in range(warmup + steps):
            shift = i % len(steppers)
            for s in steppers[shift:] + steppers[:shift]:
                dt = s.step()
                if i >= warmup:
                    s.times.append(dt)
    return {k: statistics.median(s.times) for k, s in zip(kinds, steppers)}


#: (trainers raced together, [(ours, theirs, what the ratio measures)])
GROUPS = [
    (
        ["R-DPO", "TRL DPO", "DPO (ours, robust=False)", "R-DPO" + FUSED, "DPO (ours, robust=False)" + FUSED],
        [
            ("R-DPO", "TRL DPO", "target, defaults"),
            ("R-DPO" + FUSED, "TRL DPO", "target, same forward: fused head"),
            ("R-DPO", "DPO (ours, robust=False)", "RPO's own cost"),
            ("R-DPO" + FUSED, "DPO (ours, robust=False)" + FUSED, "RPO's own cost, fused head"),
        ],
    ),
    (
        ["R-SimPO", "TRL SimPO", "SimPO (ours, robust=False)", "R-SimPO" + FUSED],
        [
            ("R-SimPO", "TRL SimPO", "target, defaults = same forward: full logits"),
            ("R-SimPO", "SimPO (ours, robust=False)", "RPO's own cost"),
            ("R-SimPO" + FUSED, "TRL SimPO", "TRL's fused head (CPU fallback) vs full logits"),
        ],
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="races with fresh trainers; median ratio reported")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--hidden", type=int, default=64, help="toy model width (rpo.models default 64)")
    parser.add_argument("--layers", type=int, default=2, help="toy model depth (rpo.models default 2)")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    import transformers
    from tqdm.auto import tqdm

    from rpo.models import build_toy_tokenizer

    transformers.logging.set_verbosity_error()
    tok, data = build_toy_tokenizer(), toy_pairs()
    size = {"hidden_size": opts.hidden, "num_layers": opts.layers}
    results = []
    for kinds, pairs in GROUPS:
        meds = [
            race(kinds, tok, data, opts.steps, opts.warmup, size)
            for _ in tqdm(range(opts.repeats), desc=kinds[0], leave=False)
        ]
        for ours, theirs, what in pairs:
            ratios = [m[ours] / m[theirs] for m in meds]
            results.append(
                {
                    "ours": ours,
                    "theirs": theirs,
                    "measures": what,
                    "median_ms_ours": 1e3 * statistics.median(m[ours] for m in meds),
                    "median_ms_theirs": 1e3 * statistics.median(m[theirs] for m in meds),
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "repeats": opts.repeats,
                    "steps": opts.steps,
                    "hidden": opts.hidden,
                    "layers": opts.layers,
                }
            )
    print(
        f"toy Llama {opts.hidden} wide x {opts.layers} layers, one thread; median of {opts.steps} interleaved "
        f"steps per race, {opts.repeats} races"
    )
    for r in results:
        verdict = "meets" if r["ratio"] <= 1.02 else "MISSES"
        print(
            f"{r['ours']:>20}: {r['median_ms_ours']:6.2f} ms  vs {r['theirs']:>37}: {r['median_ms_theirs']:6.2f} ms"
            f"  ratio {r['ratio']:.3f} [{r['ratio_min']:.3f}-{r['ratio_max']:.3f}] ({verdict} 1.02; {r['measures']})"
        )
    if opts.json:
        tmp = opts.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, opts.json)


if __name__ == "__main__":
    main()
