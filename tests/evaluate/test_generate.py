"""Answer generation: presets, both benchmarks' formats, left-padded batching, resumption."""

import json

import pytest
import torch

from rpo.evaluate import formats
from rpo.evaluate.generate import PRESETS, decoding, generate_alpacaeval, generate_arenahard
from rpo.models import build_toy_model, build_toy_tokenizer

PROMPTS = ["rev:abc=", "srt:cab=", "add:2+3=", "rev:kefir=", "srt:zyxwvu=", "add:10+91="]


@pytest.fixture(scope="module")
def toy():
    """The toy model with its random weights scaled up: at init its greedy answer is one repeated
    character whatever the prompt, which would make the batching test vacuous."""
    tok = build_toy_tokenizer()
    model = build_toy_model(0, tokenizer=tok)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model, tok


def test_presets_are_the_peers_settings():
    assert (PRESETS["alpacaeval-mistral"].temperature, PRESETS["alpacaeval-mistral"].top_p) == (0.5, 1.0)
    assert (PRESETS["alpacaeval-llama3"].temperature, PRESETS["alpacaeval-llama3"].top_p) == (0.9, 1.0)
    assert PRESETS["arenahard"].temperature == 0.0
    assert decoding("arenahard", max_new_tokens=7, temperature=None).max_new_tokens == 7
    with pytest.raises(ValueError, match="unknown decoding preset 'gpt'"):
        decoding("gpt")
    with pytest.raises(ValueError, match="top_p"):
        decoding("alpacaeval-llama3", top_p=0.0)


def test_alpacaeval_outputs_resume_without_regenerating(toy, tmp_path):
    model, tok = toy
    kw = dict(generator="toy", preset="alpacaeval-llama3", max_new_tokens=6, batch_size=2, seed=3)
    fresh = generate_alpacaeval(model, tok, PROMPTS, tmp_path / "fresh.json", **kw)
    assert [set(r) for r in fresh] == [{"instruction", "output", "generator"}] * len(PROMPTS)
    assert formats.read_alpacaeval(tmp_path / "fresh.json") == fresh
    assert len({r["output"] for r in fresh}) > 1  # sampling, not one constant string

    path = tmp_path / "resumed.json"
    first = generate_alpacaeval(model, tok, PROMPTS[:2], path, **kw)  # an "interrupted" run
    assert first == fresh[:2]
    marked = json.loads(path.read_text())
    marked[0]["output"] = "ALREADY THERE"
    path.write_text(json.dumps(marked))
    resumed = generate_alpacaeval(model, tok, PROMPTS, path, **kw)
    assert resumed[0]["output"] == "ALREADY THERE"  # not generated again
    assert resumed[1:] == fresh[1:]  # batch seeds follow positions: same answers as one straight run


def test_arenahard_answers_greedy_batched_equals_unbatched(toy, tmp_path):
    model, tok = toy
    qs = [{"question_id": f"q{i}", "category": "toy", "turns": [{"content": p}]} for i, p in enumerate(PROMPTS)]
    a = generate_arenahard(model, tok, qs, tmp_path / "b3", model_id="toy", max_new_tokens=5, batch_size=3)
    b = generate_arenahard(model, tok, qs, tmp_path / "b1", model_id="toy", max_new_tokens=5, batch_size=1)
    text = lambda recs: [r["choices"][0]["turns"][0]["content"] for r in recs.values()]  # noqa: E731
    assert len(set(text(a))) == len(qs)  # answers depend on the prompt
    assert text(a) == text(b)  # left padding changes nothing
    read = formats.read_answers(tmp_path / "b3" / "toy.jsonl")
    assert list(read) == [q["question_id"] for q in qs]
    rec = read["q0"]
    assert set(rec) == {"question_id", "answer_id", "model_id", "choices", "tstamp", "question_hash"}
    assert rec["choices"][0]["index"] == 0 and 1 <= rec["choices"][0]["turns"][0]["token_len"] <= 5
