"""Premise check (issue 4): in the toy world, label noise hurts plain DPO.

For each seed and noise rate, relabel the world's training pairs by one symmetric annotator, train plain
DPO (TRL's own DPOTrainer: rpo.RobustTrainer is tested elsewhere) from the reference policy on one
thread, and measure the win rate of the policy's samples against the reference policy's samples on
held-out prompts, judged by the oracle (ties half). Passes when win(0%) - win(40%) exceeds the 95%
interval of the paired difference over seeds.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/noise_premise.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def train_dpo(world, pairs, *, seed: int, steps: int, lr: float, beta: float, batch_size: int):
    """Plain DPO with TRL's DPOTrainer, policy and reference both the world's reference policy."""
    from trl import DPOConfig, DPOTrainer

    policy, tok = world.load_reference()
    ref, _ = world.load_reference()
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
            beta=beta, lr_scheduler_type="constant", warmup_steps=0, use_cpu=True, bf16=False,
            gradient_checkpointing=False, report_to=[], save_strategy="no", logging_steps=10 ** 6,
            seed=seed, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, processing_class=tok,
                             train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]))
        t0 = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - t0
    policy.eval()
    return policy, ref, tok, train_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.4])
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=4, help="samples per held-out prompt")
    ap.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    a = ap.parse_args()
    torch.set_num_threads(1)

    from rpo.data import single_annotator
    from rpo.metrics import generation_quality, mean_ci, preference_accuracy
    from rpo.world import WorldConfig, build_world, sample_responses

    t0 = time.perf_counter()
    world = build_world(WorldConfig(), progress=False)
    build_s = time.perf_counter() - t0
    ref, tok = world.load_reference()
    ref_resp = [s for ss in sample_responses(ref, tok, world.heldout, n=a.samples, seed=10_000) for s in ss]
    base = generation_quality(ref, tok, world.heldout, reference_responses=ref_resp, n=a.samples, seed=99)
    print(f"world {world.path.name}: {len(world.train)} train / {len(world.test)} test pairs, "
          f"{len(world.heldout)} held-out prompts; build/load {build_s:.1f} s; reference vs itself: {base}")

    runs = []
    for seed in range(a.seeds):
        for rate in a.noise:
            pairs = single_annotator(world.train, rate, seed=seed)
            policy, ref, tok, train_s = train_dpo(world, pairs, seed=seed, steps=a.steps, lr=a.lr,
                                                  beta=a.beta, batch_size=a.batch_size)
            gq = generation_quality(policy, tok, world.heldout, reference_responses=ref_resp, n=a.samples,
                                    seed=seed + 1)
            acc = preference_accuracy(policy, tok, world.test, reference=ref)
            run = {"seed": seed, "noise": rate, "train_s": round(train_s, 2), "pref_acc": acc, **gq,
                   "flip_rate": float(sum(pairs["is_flipped"]) / len(pairs))}
            runs.append(run)
            print(json.dumps(run), flush=True)

    summary = {}
    for rate in a.noise:
        rs = [r for r in runs if r["noise"] == rate]
        summary[str(rate)] = {k: mean_ci([r[k] for r in rs]) for k in ("win_rate", "mean_reward", "pref_acc", "train_s")}
    lo, hi = min(a.noise), max(a.noise)
    diffs = [r0["win_rate"] - r1["win_rate"] for r0, r1 in zip(
        [r for r in runs if r["noise"] == lo], [r for r in runs if r["noise"] == hi])]
    d_mean, d_half = mean_ci(diffs)
    w_lo, w_hi = summary[str(lo)]["win_rate"], summary[str(hi)]["win_rate"]
    passed = d_mean > d_half and (w_lo[0] - w_lo[1]) > (w_hi[0] + w_hi[1])
    print("\nnoise  win_rate (95% CI)      mean_reward        pref_acc           train_s")
    for rate in a.noise:
        s = summary[str(rate)]
        print(f"{rate:<5}  " + "  ".join(f"{m:.3f} +- {h:.3f}" for m, h in
                                          (s["win_rate"], s["mean_reward"], s["pref_acc"], s["train_s"])))
    print(f"paired win-rate drop {lo} -> {hi}: {d_mean:.3f} +- {d_half:.3f} (95%, {a.seeds} seeds); "
          f"intervals disjoint and drop > CI: {'PASS' if passed else 'FAIL'}")
    result = {"args": vars(a), "world": world.path.name, "reference_vs_itself": base, "runs": runs,
              "summary": summary, "drop": [d_mean, d_half], "passed": bool(passed)}
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, a.out)  # atomic


if __name__ == "__main__":
    main()
