"""The toy world: tasks a program scores exactly, a reference policy, and on-policy preference pairs.

Shaped like the paper's data pipeline (section 5.1: on-policy responses from the SFT model, labelled by a
judge), but every label's truth is known, so noise can be injected and measured.

* **Tasks** (prompt < 16 chars, answer <= 6 chars, one token per character for the toy tokenizer):
  ``rev:abcd=`` -> ``dcba`` (reverse), ``srt:dbca=`` -> ``abcd`` (sort), ``add:23+45=`` -> ``68``.
* **Oracle** :func:`score` ``(prompt, response) -> float in [0, 1]``: positional character agreement with
  the exact answer, ``#{i : r[i] == t[i]} / max(len(r), len(t))``. Graded (partial credit), so pairs
  differ by large and small margins; 1.0 only for the exact answer.
* **Reference policy**: the toy model (``rpo.models.build_toy_model``) fine-tuned on CPU (plain torch
  SFT loop, one thread) on answers of which a set fraction are deliberately corrupted by 1-2 character
  edits, so that sampling from it gives a mix of right and flawed answers.
* **Pairs**: per training prompt, ``samples_per_prompt`` responses sampled at temperature 1 from the
  reference policy; a random pair with distinct oracle rewards (``pair_rule="random"``) or the best and
  worst (``"best_worst"``, as in SimPO's UltraFeedback sets); chosen = higher reward; prompts whose
  samples all tie are dropped.
* **Splits**: ``train`` pairs, clean ``test`` pairs (on disjoint prompts), and ``heldout`` prompts for
  generation, all prompt-disjoint.

A built world is cached under ``cache_dir/world-<hash of its config>/`` (JSONL splits, the reference
model, ``meta.json``), so the pipeline builds it once; the same config gives byte-identical files (same
torch build and CPU type: floating-point kernels may differ elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rpo.io import read_jsonl

# the world's parts, importable from here as before
from rpo.toy.policy import encode_left_padded, sample_responses, sft_train  # noqa: F401
from rpo.toy.tasks import LETTERS, TASKS, answer, corrupt, make_prompt, score  # noqa: F401

WORLD_VERSION = 2  # bump when the world's construction changes, so old caches are not reused


# ----------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a world (its cache key is a hash of these fields)."""

    seed: int = 0
    tasks: tuple = TASKS
    n_train_prompts: int = 8000  # ~7200 pairs: a 250-step x 32 run is ~1 epoch, as in the paper (fewer pairs
    # and several epochs let the tiny policy memorise flipped labels, so eta drifts to 1 instead of eta_true)
    n_test_prompts: int = 300
    n_heldout_prompts: int = 200
    samples_per_prompt: int = 4
    pair_rule: str = "random"  # or "best_worst"
    temperature: float = 1.0
    max_new_tokens: int = 10
    sft_steps: int = 600
    sft_batch_size: int = 64
    sft_lr: float = 3e-3
    sft_p_correct: float = 0.5
    model_kwargs: dict = field(default_factory=lambda: {"hidden_size": 64, "num_layers": 2, "num_heads": 4})

    def key(self) -> str:
        blob = json.dumps({"version": WORLD_VERSION, **asdict(self)}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class World:
    """A built world: ``train``/``test`` pair lists (dicts), ``heldout`` prompts, the reference policy's
    folder, and its config. Pair dicts carry ``prompt, chosen, rejected, task, true_chosen_reward,
    true_rejected_reward, true_margin``; chosen is the truly better response in every pair."""

    config: WorldConfig
    path: Path
    train: list
    test: list
    heldout: list

    def load_reference(self):
        """``(model, tokenizer)``: a fresh copy of the SFT reference policy (eval mode)."""
        from rpo.models import load_saved

        model, tok = load_saved(self.path / "reference")
        model.eval()
        return model, tok

    def dataset(self, split: str):
        """A split as a ``datasets.Dataset`` (heldout: one ``prompt`` column)."""
        from datasets import Dataset

        rows = {"train": self.train, "test": self.test}.get(split)
        if split == "heldout":
            return Dataset.from_dict({"prompt": list(self.heldout)})
        if rows is None:
            raise ValueError(f"unknown split {split!r}; expected train, test or heldout")
        return Dataset.from_list(rows)


def _distinct_prompts(cfg: WorldConfig) -> tuple[list, list, list]:
    rng = random.Random(cfg.seed)
    need = cfg.n_train_prompts + cfg.n_test_prompts + cfg.n_heldout_prompts
    seen, prompts = set(), []
    for _ in range(need * 50):
        p = make_prompt(cfg.tasks[len(prompts) % len(cfg.tasks)], rng)
        if p not in seen:
            seen.add(p)
            prompts.append(p)
            if len(prompts) == need:
                break
    if len(prompts) < need:
        raise ValueError(f"only {len(prompts)} distinct prompts for tasks {cfg.tasks}; asked for {need}")
    rng.shuffle(prompts)
    a, b = cfg.n_train_prompts, cfg.n_train_prompts + cfg.n_test_prompts
    return prompts[:a], prompts[a:b], prompts[b:]


def make_pairs(prompts: list[str], samples: list[list[str]], *, rule: str = "random", seed: int = 0) -> list[dict]:
    """Preference pairs from sampled responses; chosen = higher oracle reward, ties dropped."""
    if rule not in ("random", "best_worst"):
        raise ValueError(f"pair_rule must be 'random' or 'best_worst', got {rule!r}")
    rng = random.Random(seed)
    pairs = []
    for prompt, resp in zip(prompts, samples):
        scored = [(score(prompt, r), r) for r in resp if r]
        if rule == "best_worst":
            scored.sort(key=lambda t: t[0])
            options = [(scored[-1], scored[0])] if scored and scored[-1][0] > scored[0][0] else []
        else:
            options = [(a, b) for i, a in enumerate(scored) for b in scored[i + 1 :] if a[0] != b[0]]
        if not options:
            continue  # all samples tie: no preference to learn
        a, b = rng.choice(options)
        (rc, c), (rr, r) = (a, b) if a[0] > b[0] else (b, a)
        pairs.append(
            {
                "prompt": prompt,
                "chosen": c,
                "rejected": r,
                "task": prompt.split(":")[0],
                "true_chosen_reward": rc,
                "true_rejected_reward": rr,
                "true_margin": rc - rr,
            }
        )
    return pairs


def build_world(
    config: WorldConfig | None = None, *, cache_dir: Path | str | None = "default", progress: bool = True
) -> World:
    """Build (or load from ``cache_dir``) the world of ``config``. ``cache_dir=None`` builds in a temp dir
    that is not reused. Runs on one torch thread (set by this function for its duration)."""
    import tempfile

    from rpo import paths
    from rpo.io import atomic_write_json, atomic_write_jsonl
    from rpo.models import build_toy_model, build_toy_tokenizer

    if cache_dir == "default":
        cache_dir = paths.cache()
    cfg = config or WorldConfig()
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="rpo-world-"))
    path = root / f"world-{cfg.key()}"
    if (path / "meta.json").exists():
        return load_world(path)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_p, test_p, held_p = _distinct_prompts(cfg)
        tok = build_toy_tokenizer()
        model = build_toy_model(cfg.seed, tokenizer=tok, **cfg.model_kwargs)
        torch.manual_seed(cfg.seed)
        losses = sft_train(
            model,
            tok,
            train_p,
            steps=cfg.sft_steps,
            batch_size=cfg.sft_batch_size,
            lr=cfg.sft_lr,
            p_correct=cfg.sft_p_correct,
            seed=cfg.seed,
            progress=progress,
        )
        kw = dict(
            n=cfg.samples_per_prompt, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, progress=progress
        )
        train = make_pairs(
            train_p,
            sample_responses(model, tok, train_p, seed=cfg.seed + 1, **kw),
            rule=cfg.pair_rule,
            seed=cfg.seed + 1,
        )
        test = make_pairs(
            test_p, sample_responses(model, tok, test_p, seed=cfg.seed + 2, **kw), rule=cfg.pair_rule, seed=cfg.seed + 2
        )
    finally:
        torch.set_num_threads(threads)

    tmp = root / f".world-{cfg.key()}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "reference")
    atomic_write_jsonl(tmp / "train.jsonl", train, sort_keys=True, ensure_ascii=True)
    atomic_write_jsonl(tmp / "test.jsonl", test, sort_keys=True, ensure_ascii=True)
    atomic_write_jsonl(tmp / "heldout.jsonl", ({"prompt": p} for p in held_p), sort_keys=True, ensure_ascii=True)
    meta = {
        "config": asdict(cfg),
        "key": cfg.key(),
        "version": WORLD_VERSION,
        "sft_final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "n_train": len(train),
        "n_test": len(test),
        "n_heldout": len(held_p),
    }
    atomic_write_json(tmp / "meta.json", meta)
    try:
        tmp.rename(path)  # atomic publish; a concurrent builder may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_world(path)


def load_world(path: Path | str) -> World:
    """Load a world folder written by :func:`build_world`."""
    path = Path(path)
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{path} is not a built world (no meta.json)")
    meta = json.loads((path / "meta.json").read_text())
    c = meta["config"]
    c["tasks"] = tuple(c["tasks"])
    return World(
        config=WorldConfig(**c),
        path=path,
        train=read_jsonl(path / "train.jsonl"),
        test=read_jsonl(path / "test.jsonl"),
        heldout=[r["prompt"] for r in read_jsonl(path / "heldout.jsonl")],
    )
