"""Batched, resumable answer generation for both benchmarks, with the paper's peers' decoding settings.

Decoding presets (SimPO's evaluation configs, ``princeton-nlp/SimPO/eval``):

* ``alpacaeval-mistral``: temperature 0.5, top_p 1.0, max_new_tokens 2048 (Mistral-7B-Instruct);
* ``alpacaeval-llama3``: temperature 0.9, top_p 1.0, max_new_tokens 4096 (Llama-3-8B-Instruct);
* ``arenahard``: temperature 0 (greedy), max_new_tokens 4096.

SimPO sampled with vLLM; here it is ``transformers.generate`` with left padding, so samples differ
token for token but follow the same distribution. The prompt is the tokenizer's chat template with one
user turn (no system prompt) when it has one, else the raw instruction.

Resumable: answers are written after every batch (atomically) and a rerun generates only the prompts
with no answer yet. Each batch's sampling seed is ``seed + index of its first prompt`` over the full
prompt list, so an interrupted and resumed run gives the same answers as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rpo.evaluate import formats


@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 4096


PRESETS = {
    "alpacaeval-mistral": Decoding(temperature=0.5, top_p=1.0, max_new_tokens=2048),
    "alpacaeval-llama3": Decoding(temperature=0.9, top_p=1.0, max_new_tokens=4096),
    "arenahard": Decoding(temperature=0.0, top_p=1.0, max_new_tokens=4096),
}


def decoding(preset: str | Decoding = "arenahard", **overrides) -> Decoding:
    """A preset by name (see :data:`PRESETS`), with fields overridden where given (None keeps them)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown decoding preset {preset!r}; expected one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    fields = {k: v for k, v in overrides.items() if v is not None}
    d = Decoding(**{**preset.__dict__, **fields})
    if d.temperature < 0 or not 0 < d.top_p <= 1 or d.max_new_tokens < 1:
        raise ValueError(f"invalid decoding {d}: need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1")
    return d


def format_prompt(tokenizer, instruction: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
    return instruction


@torch.no_grad()
def generate(
    model, tokenizer, instructions: list[str], dec: Decoding, *, seed: int = 0, offset: int = 0
) -> list[tuple[str, int]]:
    """``(text, number of new tokens)`` per instruction, in one left-padded batch. ``offset`` is the
    batch's position in the full list (it seeds the sampling)."""
    texts = [format_prompt(tokenizer, x) for x in instructions]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only models continue from the last position
    try:
        # the chat template already holds any BOS the model expects
        enc = tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not getattr(tokenizer, "chat_template", None)
        )
    finally:
        tokenizer.padding_side = side
    enc = {k: v.to(model.device) for k, v in enc.items()}
    kwargs = dict(
        max_new_tokens=dec.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    if dec.temperature > 0:
        kwargs.update(do_sample=True, temperature=dec.temperature, top_p=dec.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + offset)
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1] :]
    results = []
    for row in new:
        n = _n_generated(row, tokenizer, model)
        results.append((tokenizer.decode(row[:n], skip_special_tokens=True).strip(), n))
    return results


def _n_generated(row: torch.Tensor, tokenizer, model) -> int:
    """New tokens up to and including the first end-of-sequence token (the rest is padding)."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos if eos is not None else tokenizer.eos_token_id])
    for i, t in enumerate(row.tolist()):
        if t in eos:
            return i + 1
    return len(row)


def _batched(
    model, tokenizer, items: list, key, done: set, dec: Decoding, batch_size: int, seed: int, desc: str, on_batch
):
    from tqdm.auto import tqdm

    model.eval()
    todo = sum(key(x) not in done for x in items)
    bar = tqdm(total=todo, desc=desc)
    for start in range(0, len(items), batch_size):
        batch = [x for x in items[start : start + batch_size] if key(x) not in done]
        if not batch:
            continue
        outs = generate(model, tokenizer, [x[1] for x in batch], dec, seed=seed, offset=start)
        on_batch(batch, outs)
        bar.update(len(batch))
    bar.close()


def generate_alpacaeval(
    model,
    tokenizer,
    instructions,
    out_path: Path | str,
    *,
    generator: str,
    preset: str | Decoding = "alpacaeval-mistral",
    batch_size: int = 16,
    seed: int = 0,
    **overrides,
) -> list[dict]:
    """AlpacaEval outputs ``[{"instruction", "output", "generator"}]`` written to ``out_path`` (JSON).

    ``instructions``: strings, or records with ``instruction`` (other keys, e.g. ``dataset``, are kept).
    Instructions already answered in ``out_path`` are not generated again. ``overrides``: Decoding
    fields (``temperature``, ``top_p``, ``max_new_tokens``).
    """
    dec = decoding(preset, **overrides)
    recs = [{"instruction": x} if isinstance(x, str) else dict(x) for x in instructions]
    first = {}
    for i, r in enumerate(recs):
        if not isinstance(r.get("instruction"), str):
            raise ValueError(f"instructions[{i}] has no string 'instruction'")
        if r["instruction"] in first:  # one answer would stand for both
            raise ValueError(f"instructions[{i}] repeats instructions[{first[r['instruction']]}]")
        first[r["instruction"]] = i
    out_path = Path(out_path)
    have = {r["instruction"]: r for r in formats.read_alpacaeval(out_path)} if out_path.exists() else {}
    others = sorted({str(r.get("generator")) for r in have.values()} - {generator})
    if others:  # an answer is reused only if this generator wrote it: another model's would be scored as ours
        raise ValueError(
            f"{out_path} holds answers of generator(s) {others[:3]}, not {generator!r}: write each generator's "
            "answers to a file of its own (or remove that file)"
        )
    items = [(i, r["instruction"]) for i, r in enumerate(recs)]

    def save(batch, outs):
        for (i, _), (text, _) in zip(batch, outs):
            have[recs[i]["instruction"]] = {**recs[i], "output": text, "generator": generator}
        formats.write_json(out_path, [have[r["instruction"]] for r in recs if r["instruction"] in have])

    _batched(model, tokenizer, items, lambda x: x[1], set(have), dec, batch_size, seed, f"alpacaeval {generator}", save)
    if not out_path.exists():  # nothing to generate and nothing there: still leave a valid file
        formats.write_json(out_path, [])
    return [have[r["instruction"]] for r in recs]


def generate_arenahard(
    model,
    tokenizer,
    questions,
    answer_dir: Path | str,
    *,
    model_id: str,
    preset: str | Decoding = "arenahard",
    batch_size: int = 16,
    seed: int = 0,
    **overrides,
) -> dict[str, dict]:
    """Arena-Hard v0.1 answers written to ``answer_dir/<model_id>.jsonl``; returns ``{question_id: record}``.

    ``questions``: records of ``question.jsonl`` or a path to one. Questions already answered in the file
    are not generated again. ``token_len`` counts the policy's own tokens.
    """
    from rpo.evaluate.cache import content_hash
    from rpo.evaluate.formats import answer_record

    dec = decoding(preset, **overrides)
    if isinstance(questions, (str, Path)):
        questions = formats.read_questions(questions)
    path = Path(answer_dir) / f"{model_id}.jsonl"
    have = formats.read_answers(path) if path.exists() else {}
    others = sorted({str(r.get("model_id")) for r in have.values()} - {model_id})
    if others:
        raise ValueError(f"{path} holds answers of model_id(s) {others[:3]}, not {model_id!r}; remove that file")
    items = [(q["question_id"], q["turns"][0]["content"]) for q in questions]
    if len({qid for qid, _ in items}) != len(items):
        dup = next(qid for i, (qid, _) in enumerate(items) if qid in {q for q, _ in items[:i]})
        raise ValueError(f"questions: question_id {dup!r} appears more than once")
    # an answer to a question whose text has changed since is answered again (answers we wrote say what
    # they answered; answers from elsewhere carry no question_hash and are kept)
    for qid, text in items:
        if qid in have and have[qid].get("question_hash", content_hash(text)) != content_hash(text):
            del have[qid]

    def save(batch, outs):
        for (qid, q), (text, n) in zip(batch, outs):
            have[qid] = answer_record(qid, model_id, text, token_len=n, question_hash=content_hash(q))
        formats.write_jsonl(path, [have[q] for q, _ in items if q in have])

    _batched(model, tokenizer, items, lambda x: x[0], set(have), dec, batch_size, seed, f"arenahard {model_id}", save)
    if not path.exists():
        formats.write_jsonl(path, [])
    return {q: have[q] for q, _ in items}
