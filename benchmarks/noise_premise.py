"""Premise check (issue 4): in the toy world, label noise hurts plain DPO.

For each seed and noise rate, relabel the world's training pairs by one symmetric annotator, train plain
DPO (TRL's own DPOTrainer: rpo.RobustTrainer is tested elsewhere) from the reference policy on one
thread, and measure the win rate of the policy's samples against the reference policy's samples on
held-out prompts, judged by the oracle (ties half). Passes when win(0%) - win(40%) exceeds the 95%
interval of the paired difference over seeds.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/noise_premise.py

``--method r-dpo`` trains R-DPO through rpo.RobustTrainer instead and also reports eta_hat against the
measured eta_true and the AUROC of 1 - w for flipped labels. Outputs: noise_premise[_r-dpo].{json,txt}.

``--dial W`` (issue 12) runs the same check in the witness-dial world at level ``W``
(:func:`rpo.toy.world.dial_world`; its oracle judges the win rates) and writes
noise_premise_dial<W>[_<method>].json, printing today's committed numbers (noise_premise.json) beside the
new ones. The dynamic-range target at the strong end: clean-label DPO's win rate >= 0.70 and 30% flips
cost it >= 0.10 (paired by seed, 95% CI excluding 0).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def train_dpo(
    world,
    pairs,
    *,
    seed: int,
    steps: int,
    lr: float,
    beta: float,
    batch_size: int,
    method: str = "trl-dpo",
    rpo_kwargs: dict | None = None,
):
    """Train from the world's reference policy (policy and reference both start there).

    ``method``: "trl-dpo" (TRL's own DPOTrainer: plain DPO independent of this project's trainer),
    "dpo" (rpo.RobustTrainer, robust=False) or "r-dpo" (rpo.RobustTrainer, RPO with the paper's eta0 0.9,
    alpha 0.1). Returns (policy, reference, tokenizer, train seconds, trainer)."""
    from trl import DPOConfig, DPOTrainer

    policy, tok = world.load_reference()
    ref, _ = world.load_reference()
    common = dict(
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        learning_rate=lr,
        beta=beta,
        lr_scheduler_type="constant",
        warmup_steps=0,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=10**6,
        seed=seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    with tempfile.TemporaryDirectory() as out:
        if method == "trl-dpo":
            trainer = DPOTrainer(
                model=policy,
                ref_model=ref,
                args=DPOConfig(output_dir=out, **common),
                processing_class=tok,
                train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
            )
        elif method in ("dpo", "r-dpo"):
            from rpo.training import RobustConfig, RobustTrainer

            args = RobustConfig(
                output_dir=out, pref_loss="dpo", robust=method == "r-dpo", **common, **(rpo_kwargs or {})
            )
            trainer = RobustTrainer(
                model=policy,
                ref_model=ref,
                args=args,
                processing_class=tok,
                train_dataset=pairs.select_columns(["prompt", "chosen", "rejected", "annotator"]),
            )
        else:
            raise ValueError(f"unknown method {method!r}; expected trl-dpo, dpo or r-dpo")
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    policy.eval()
    return policy, ref, tok, train_s, trainer


def _nan_to_none(x):
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.4])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4, help="samples per held-out prompt")
    ap.add_argument("--train-prompts", type=int, default=None, help="WorldConfig.n_train_prompts (default: its own)")
    ap.add_argument("--method", default="trl-dpo", choices=["trl-dpo", "dpo", "r-dpo"])
    ap.add_argument("--eta0", type=float, default=0.9, help="r-dpo: initial eta (paper 0.9)")
    ap.add_argument("--alpha", type=float, default=0.1, help="r-dpo: EMA momentum (paper 0.1)")
    ap.add_argument("--dial", type=float, default=None, help="witness-dial world at this level (issue 12)")
    ap.add_argument("--out", default=None, help="default: benchmarks/noise_premise[_dial<W>][_<method>].json")
    a = ap.parse_args()
    if a.out is None:
        stem = str(Path(__file__).with_suffix("")) + ("" if a.dial is None else f"_dial{a.dial:g}")
        a.out = f"{stem}.json" if a.method == "trl-dpo" else f"{stem}_{a.method}.json"
    torch.set_num_threads(1)

    from rpo.data import single_annotator, true_reliability
    from rpo.toy.metrics import flag_auroc, generation_quality, mean_ci, preference_accuracy
    from rpo.toy.world import WorldConfig, build_world, dial_world, sample_responses

    t0 = time.perf_counter()
    extra_cfg = {} if a.train_prompts is None else {"n_train_prompts": a.train_prompts}
    cfg = WorldConfig(**extra_cfg) if a.dial is None else dial_world(a.dial, **extra_cfg)
    world = build_world(cfg, progress=False)
    judge = cfg.oracle()
    build_s = time.perf_counter() - t0
    ref, tok = world.load_reference()
    ref_resp = [s for ss in sample_responses(ref, tok, world.heldout, n=a.samples, seed=10_000) for s in ss]
    base = generation_quality(ref, tok, world.heldout, reference_responses=ref_resp, n=a.samples, seed=99, judge=judge)
    print(
        f"world {world.path.name}: {len(world.train)} train / {len(world.test)} test pairs, "
        f"{len(world.heldout)} held-out prompts; build/load {build_s:.1f} s; reference vs itself: {base}"
    )

    runs = []
    for seed in range(a.seeds):
        for rate in a.noise:
            pairs = single_annotator(world.train, rate, seed=seed)
            policy, ref, tok, train_s, trainer = train_dpo(
                world,
                pairs,
                seed=seed,
                steps=a.steps,
                lr=a.lr,
                beta=a.beta,
                batch_size=a.batch_size,
                method=a.method,
                rpo_kwargs={"eta0": a.eta0, "ema_alpha": a.alpha},
            )
            extra = {}
            if a.method == "r-dpo":  # RPO's own estimates against the hidden truth
                w = trainer.label_confidences(pairs.select_columns(["prompt", "chosen", "rejected", "annotator"]))
                extra = {
                    "eta_hat": float(trainer.eta[0]),
                    "eta_true": true_reliability(pairs)["a1"],
                    "flag_auroc": flag_auroc(w.numpy(), pairs["is_flipped"]),
                }
            gq = generation_quality(
                policy, tok, world.heldout, reference_responses=ref_resp, n=a.samples, seed=seed + 1, judge=judge
            )
            acc = preference_accuracy(policy, tok, world.test, reference=ref)
            run = {
                "seed": seed,
                "noise": rate,
                "train_s": round(train_s, 2),
                "pref_acc": acc,
                **gq,
                "flip_rate": float(sum(pairs["is_flipped"]) / len(pairs)),
                **extra,
            }
            runs.append(run)
            print(json.dumps(run), flush=True)

    summary = {}
    for rate in a.noise:
        rs = [r for r in runs if r["noise"] == rate]
        summary[str(rate)] = {
            k: mean_ci([r[k] for r in rs]) for k in ("win_rate", "mean_reward", "pref_acc", "train_s")
        }
    lo, hi = min(a.noise), max(a.noise)
    d_mean = d_half = float("nan")
    passed = None
    if lo != hi:
        diffs = [
            r0["win_rate"] - r1["win_rate"]
            for r0, r1 in zip([r for r in runs if r["noise"] == lo], [r for r in runs if r["noise"] == hi])
        ]
        d_mean, d_half = mean_ci(diffs)
        w_lo, w_hi = summary[str(lo)]["win_rate"], summary[str(hi)]["win_rate"]
        passed = bool(d_mean > d_half and (w_lo[0] - w_lo[1]) > (w_hi[0] + w_hi[1]))
    print("\nnoise  win_rate (95% CI)      mean_reward        pref_acc           train_s")
    for rate in a.noise:
        s = summary[str(rate)]
        print(
            f"{rate:<5}  "
            + "  ".join(
                f"{m:.3f} +- {h:.3f}" for m, h in (s["win_rate"], s["mean_reward"], s["pref_acc"], s["train_s"])
            )
        )
    if passed is not None:
        print(
            f"paired win-rate drop {lo} -> {hi}: {d_mean:.3f} +- {d_half:.3f} (95%, {a.seeds} seeds); "
            f"intervals disjoint and drop > CI: {'PASS' if passed else 'FAIL'}"
        )
    old = Path(__file__).with_suffix(".json")
    if a.dial is not None and old.exists():  # today's committed numbers beside the new ones
        prev = json.loads(old.read_text())
        print(f"beside: today's world ({prev['world']}, {prev['args']['seeds']} seeds, {prev['args']['steps']} steps):")
        for rate, s in prev["summary"].items():
            print(
                f"  noise {rate}: win_rate {s['win_rate'][0]:.3f} +- {s['win_rate'][1]:.3f}, "
                f"pref_acc {s['pref_acc'][0]:.3f} +- {s['pref_acc'][1]:.3f}"
            )
        print(f"  paired drop: {prev['drop'][0]:.3f} +- {prev['drop'][1]:.3f}")
    for key in ("eta_hat", "eta_true", "flag_auroc"):
        if runs and key in runs[0]:
            print(
                f"{key}: "
                + ", ".join(
                    f"noise {rate}: {m:.3f} +- {h:.3f}"
                    for rate in a.noise
                    for m, h in [mean_ci([r[key] for r in runs if r["noise"] == rate])]
                )
            )
    result = {
        "args": vars(a),
        "method": a.method,
        "world": world.path.name,
        "reference_vs_itself": base,
        "runs": runs,
        "summary": summary,
        "drop": [d_mean, d_half],
        "passed": passed,
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:  # NaN (e.g. AUROC with no flipped label) written as null: strict JSON
        f.write(json.dumps(_nan_to_none(result), indent=1, allow_nan=False))
    os.replace(tmp, a.out)  # atomic


if __name__ == "__main__":
    main()
