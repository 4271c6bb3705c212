"""Scoring throughput and memory of ``rpo audit`` (issue 14).

Throughput: pairs per second of the audit's scoring (:func:`rpo.audit.witness.score_rows`: tokenising each
chunk as TRL does, collating, the policy's and (DPO) the reference's forward, eq. 2's log-odds, the chunk
cache) against a bare forward pass of the same batches (the same collated tensors, tokenised and collated
beforehand, through the policy and the reference model under ``no_grad``: the least work any scorer
does). Also the scoring pass alone on the pre-tokenised data (:func:`rpo.training.scoring.score_pass`),
which separates the tokenising cost, and the scorer's forward alone on the pre-collated batches (the
trainer's ``_forward``: both models' logits and log-probs, by the policy's head), which separates the loader's:
its ratio is the ceiling of any loader or tokenising work. Each timing is the best of ``--repeats`` runs,
interleaved and rotated (each repeat starts with the next pass), so a busy machine slows all four alike.

Memory: peak resident memory of a fresh process auditing N pairs with an already trained witness
(``--witness``-style scoring only, no bootstrap), against the same process's memory just before scoring,
for growing N: scoring is streamed in chunks, so the difference should not grow with N.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/audit_throughput.py
    ... --model small --threads 2     # SmolLM2-135M-Instruct, only on an otherwise idle machine

Outputs: ``benchmarks/audit_throughput[_small].{json,txt}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: bare: the two models' forwards alone; scorer_forward: the scorer's forward and eq. 2 on the same collated
#: batches (the ceiling of any loader work); score_pass: with the loader; audit_scoring: with tokenising
PASSES = ("bare_forward", "scorer_forward", "score_pass", "audit_scoring")
HIDDEN = ["is_flipped", "true_eta", "true_chosen", "true_rejected", "true_flip_prob"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Linux: writing 5 to /proc/self/clear_refs resets the peak resident size (VmHWM) to the current one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def throughput(model_name: str, n: int, batch_size: int, repeats: int) -> dict:
    import copy

    import torch
    from torch.utils.data import DataLoader
    from trl import DPOTrainer

    from rpo.audit import known_flips, witness
    from rpo.audit.run import _internal
    from rpo.audit.settings import resolve
    from rpo.core.em import gap
    from rpo.core.losses import pair_losses
    from rpo.data.files import read_preferences
    from rpo.models import load_model
    from rpo.training.forward import model_inputs
    from rpo.training.scoring import score_pass

    ds, info = read_preferences(known_flips(n, seed=0).remove_columns(HIDDEN))
    data = _internal(ds, info["ids"])
    if model_name.startswith("toy-"):  # a wider toy Llama, e.g. toy-256x4: hidden 256, 4 layers
        hidden, layers = map(int, model_name.removeprefix("toy-").split("x"))
        policy, tok = load_model("toy", hidden_size=hidden, num_layers=layers)
    else:
        policy, tok = load_model(model_name)
    ref = copy.deepcopy(policy)
    params = sum(p.numel() for p in policy.parameters())
    settings = resolve(model_name.startswith("toy"), batch_size=batch_size, max_length=512)
    rows = list(range(n))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = witness.scoring_trainer(policy, ref, tok, settings, Path(tmp), data, num_annotators=3)
        trainer.args.disable_tqdm = True
        prepared = trainer._validate(data, "bench", drop_identical=False)
        prepared = DPOTrainer._prepare_dataset(trainer, prepared, tok, trainer.args, "bench")
        keep = ["prompt_ids", "chosen_ids", "rejected_ids", "rpo_annotator_id"]
        loader = DataLoader(prepared.select_columns(keep), batch_size=batch_size, collate_fn=trainer.data_collator)
        batches = list(loader)
        tokens = int(sum(b["attention_mask"].sum() for b in batches))
        pol, rf = trainer.model, trainer.ref_model
        pol.eval()
        rf.eval()

        @torch.no_grad()
        def bare():
            for b in batches:
                kw = model_inputs(b)
                pol(**kw, use_cache=False)
                rf(**kw, use_cache=False)

        @torch.no_grad()
        def scorer_forward():  # the scorer's own forward (both models through the policy's head), same batches
            for b in batches:
                logps, _, _ = trainer._forward(pol, b)
                pair_losses(trainer.args.pref_loss, *logps, **trainer._loss_options())

        @torch.no_grad()  # as the trainer's own callers (log_odds, label_confidences) run it
        def scored_pass():
            score_pass(trainer, prepared, batch_size, lambda wl, lw, ids: gap(wl, lw), "bench")

        def end_to_end():
            with tempfile.TemporaryDirectory() as cache:
                witness.score_rows(trainer, data, rows, Path(cache))

        best = dict.fromkeys(PASSES, float("inf"))
        import datasets

        datasets.disable_progress_bars()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            end_to_end()  # warm-up (lazy imports, first allocation)
            passes = list(zip(PASSES, (bare, scorer_forward, scored_pass, end_to_end)))
            for r in range(repeats):
                # each repeat starts one pass later: a machine that slows down as it warms up (a minute
                # per pass on SmolLM2) would otherwise always penalise the passes timed last
                for name, fn in passes[r % len(passes) :] + passes[: r % len(passes)]:
                    t = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t)
    pps = {k: n / v for k, v in best.items()}
    return {
        "model": model_name,
        "parameters": params,
        "n_pairs": n,
        "batch_size": batch_size,
        "tokens": tokens,
        "threads": torch.get_num_threads(),
        "seconds": best,
        "pairs_per_s": pps,
        "ratio_audit_vs_bare": pps["audit_scoring"] / pps["bare_forward"],
        "ratio_score_pass_vs_bare": pps["score_pass"] / pps["bare_forward"],
        "ratio_scorer_forward_vs_bare": pps["scorer_forward"] / pps["bare_forward"],
    }


def memory_child(n: int) -> None:
    """Run in a fresh process: audit ``n`` pairs with a saved (untrained) toy witness; print RSS figures."""
    import torch

    torch.set_num_threads(1)
    from rpo.audit import audit, known_flips
    from rpo.models import load_model

    public = known_flips(n, seed=0).remove_columns(HIDDEN)
    with tempfile.TemporaryDirectory() as tmp:
        load_model("toy")[0].save_pretrained(tmp)
        before = _status_mb("VmRSS")
        reset = _reset_peak()  # the peak of the scoring alone, not of the imports and model loading before it
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            audit(public, model="toy", witness_dir=tmp, bootstrap=0, progress=False, calibrate=False)
        seconds = time.perf_counter() - t
    peak = _status_mb("VmHWM") if reset else _rss_mb()
    print(
        json.dumps(
            {"n_pairs": n, "rss_before_mb": before, "peak_rss_mb": peak, "peak_reset": reset, "seconds": seconds}
        )
    )


def memory(sizes: list[int]) -> list[dict]:
    out = []
    for n in sizes:
        res = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(n)],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TQDM_DISABLE="1"),
        )
        rec = json.loads(res.stdout.strip().splitlines()[-1])
        rec["peak_minus_before_mb"] = rec["peak_rss_mb"] - rec["rss_before_mb"]
        print(json.dumps(rec), flush=True)
        out.append(rec)
    return out


def main():
    from rpo.io import atomic_write_json, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy", help="toy, toy-<hidden>x<layers> (a wider toy Llama) or small")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory", type=int, nargs="*", default=[1000, 4000, 16000, 64000], help="data sizes (toy only)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        return memory_child(args.memory_child)
    import torch

    torch.set_num_threads(args.threads)
    t = throughput(args.model, args.n, args.batch_size, args.repeats)
    lines = [
        f"audit scoring throughput, {args.model} model ({t['parameters']:,} parameters), {t['n_pairs']} pairs "
        f"({t['tokens']} tokens in batches of {t['batch_size']}), {t['threads']} thread(s), best of {args.repeats}:",
        "| pass | seconds | pairs/s | vs bare forward |",
        "|---|---|---|---|",
    ]
    for name in PASSES:
        lines.append(
            f"| {name} | {t['seconds'][name]:.3f} | {t['pairs_per_s'][name]:.1f} | "
            f"{t['pairs_per_s'][name] / t['pairs_per_s']['bare_forward']:.3f} |"
        )
    mem = memory(args.memory) if args.model == "toy" and args.memory else []
    if mem:
        lines += [
            "",
            "memory (fresh process per size, toy witness, scoring only):",
            "| pairs | RSS before scoring MB | peak RSS MB | peak - before MB | seconds |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {m['n_pairs']} | {m['rss_before_mb']:.0f} | {m['peak_rss_mb']:.0f} | {m['peak_minus_before_mb']:.0f} | "
            f"{m['seconds']:.1f} |"
            for m in mem
        ]
    text = "\n".join(lines) + "\n"
    suffix = ("" if args.model == "toy" else f"_{args.model}") + (
        "" if args.batch_size == 32 else f"_b{args.batch_size}"
    )
    stem = HERE / ("audit_throughput" + suffix)
    atomic_write_json(stem.with_suffix(".json"), {"throughput": t, "memory": mem})
    atomic_write_text(stem.with_suffix(".txt"), text)
    print(text)


if __name__ == "__main__":
    main()
