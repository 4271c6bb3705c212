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

* **The witness dial** (issue 12; :data:`DIAL_FAMILY`): ``style_rate > 0`` makes the reference emit a
  style marker (``!`` at the end of an answer) on that share of its SFT targets, independent of correctness;
  ``style_weight`` (the dial) mixes "has the marker" into the oracle,
  ``(1 - w) * correctness + w * marker`` (:func:`rpo.toy.tasks.styled_score`), which then labels the pairs
  and judges every win rate. Why this dial: the witness RPO needs is the *policy's own* preference (eq. 2);
  the hard tasks' correctness is learned slowly by the tiny model (70-80% of clean test pairs), but one
  token that means the same on every prompt is learned in a few steps and generalises to unseen pairs, so
  ``w`` sets how much of each label's truth the policy can know out of sample, from today's regime
  (``w = 0``) up to a witness that knows nearly every label (``w = 1``: the marker alone decides). It is
  measured, not assumed: ``benchmarks/witness.py`` reports plain DPO's cross-fitted AUROC per level.
  The defaults (``style_rate = style_weight = 0``) are today's world, with today's cache key.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from rpo.io import read_jsonl

# the world's parts, importable from here as before
from rpo.toy.policy import encode_left_padded, sample_responses, sft_train  # noqa: F401
from rpo.toy.tasks import LETTERS, TASKS, answer, corrupt, make_prompt, score, styled_score  # noqa: F401

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
    style_rate: float = 0.0  # share of SFT targets given the style marker (0: today's world)
    style_weight: float = 0.0  # the witness dial: the marker's weight in the oracle (0: correctness only)

    def key(self) -> str:
        fields = asdict(self)
        for name in _LATER_FIELDS:  # fields added later enter the key only when set: old keys stay valid
            if fields[name] == _LATER_FIELDS[name]:
                del fields[name]
        blob = json.dumps({"version": WORLD_VERSION, **fields}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def oracle(self):
        """The world's judge ``(prompt, response) -> reward``: :func:`score` unless the dial is in use."""
        if self.style_rate == 0 and self.style_weight == 0:
            return score
        from functools import partial

        return partial(styled_score, weight=self.style_weight)


_LATER_FIELDS = {"style_rate": 0.0, "style_weight": 0.0}

#: the witness-dial family of issue 12: half the reference's answers carry the marker; the dial is
#: ``style_weight``. ``dial_world(w)`` is its member at level ``w``.
DIAL_FAMILY = {"style_rate": 0.5}
DIAL_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def dial_world(weight: float, **overrides) -> WorldConfig:
    """The witness-dial family's world at dial level ``weight`` (see the module doc)."""
    return WorldConfig(**{**DIAL_FAMILY, "style_weight": float(weight), **overrides})


def world_config(dial: str = "today") -> WorldConfig:
    """The world a study config's ``dial`` names: ``today`` is ``WorldConfig()`` (the committed study's world),
    a level such as ``"0.5"`` is :func:`dial_world` at that level."""
    return WorldConfig() if dial == "today" else dial_world(float(dial))


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


def make_pairs(
    prompts: list[str], samples: list[list[str]], *, rule: str = "random", seed: int = 0, oracle=score
) -> list[dict]:
    """Preference pairs from sampled responses; chosen = higher ``oracle`` reward, ties dropped."""
    if rule not in ("random", "best_worst"):
        raise ValueError(f"pair_rule must be 'random' or 'best_worst', got {rule!r}")
    rng = random.Random(seed)
    pairs = []
    for prompt, resp in zip(prompts, samples):
        scored = [(oracle(prompt, r), r) for r in resp if r]
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
    if cfg.style_weight != 0:  # the dial's levels share one reference and its samples: only the labels differ
        return _relabel(build_world(replace(cfg, style_weight=0.0), cache_dir=root, progress=progress), cfg, path)

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
            style_rate=cfg.style_rate,
        )
        kw = dict(
            n=cfg.samples_per_prompt, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, progress=progress
        )
        samples = {
            "train": (train_p, sample_responses(model, tok, train_p, seed=cfg.seed + 1, **kw)),
            "test": (test_p, sample_responses(model, tok, test_p, seed=cfg.seed + 2, **kw)),
        }
        train, test = _pairs_of(cfg, samples)
    finally:
        torch.set_num_threads(threads)

    tmp = root / f".world-{cfg.key()}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp / "reference")
    atomic_write_jsonl(tmp / "train.jsonl", train, sort_keys=True, ensure_ascii=True)
    atomic_write_jsonl(tmp / "test.jsonl", test, sort_keys=True, ensure_ascii=True)
    atomic_write_jsonl(tmp / "heldout.jsonl", ({"prompt": p} for p in held_p), sort_keys=True, ensure_ascii=True)
    if cfg.style_rate > 0:  # the dial's other levels relabel these samples (see _relabel)
        atomic_write_json(tmp / "samples.json", samples)
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


def _pairs_of(cfg: WorldConfig, samples: dict) -> tuple[list, list]:
    """Train and test pairs of ``samples`` (``split -> (prompts, responses)``), labelled by ``cfg``'s oracle."""
    return tuple(
        make_pairs(*samples[split], rule=cfg.pair_rule, seed=cfg.seed + offset, oracle=cfg.oracle())
        for split, offset in (("train", 1), ("test", 2))
    )


def _relabel(base: World, cfg: WorldConfig, path: Path) -> World:
    """The dial level ``cfg`` of ``base`` (same config at dial 0): the same reference policy and samples,
    pairs formed and labelled by ``cfg``'s oracle."""
    from rpo.io import atomic_write_json, atomic_write_jsonl

    samples = json.loads((base.path / "samples.json").read_text())
    train, test = _pairs_of(cfg, samples)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base.path, tmp)
    atomic_write_jsonl(tmp / "train.jsonl", train, sort_keys=True, ensure_ascii=True)
    atomic_write_jsonl(tmp / "test.jsonl", test, sort_keys=True, ensure_ascii=True)
    meta = json.loads((base.path / "meta.json").read_text())
    meta.update(config=asdict(cfg), key=cfg.key(), n_train=len(train), n_test=len(test), relabelled_from=base.path.name)
    atomic_write_json(tmp / "meta.json", meta)
    try:
        tmp.rename(path)
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
