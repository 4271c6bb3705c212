"""End to end: generate with toy policies, judge with a scorer (ours, and the toy world's oracle when
rpo.world is there), score with both harnesses; the numbers are recomputed from the scores by hand.
Also the command line, standalone."""

import itertools
import json
import random

import numpy as np
import pytest
import torch

from rpo.evaluate import arenahard as ah
from rpo.evaluate import formats
from rpo.evaluate.alpacaeval import evaluate_alpacaeval
from rpo.evaluate.cli import main
from rpo.evaluate.generate import generate_alpacaeval, generate_arenahard
from rpo.evaluate.judges import ScoreJudge
from rpo.models import build_toy_model, build_toy_tokenizer


def rev_score(prompt, response):
    """Our own rule (independent of rpo.world): positional agreement with the reversed word."""
    target = prompt.strip()[4:-1][::-1]
    return sum(a == b for a, b in zip(response, target)) / max(len(response), len(target), 1)


def _world_score():
    world = pytest.importorskip("rpo.world")
    return world.score


def _policy(seed, tok):
    model = build_toy_model(seed, tokenizer=tok)
    with torch.no_grad():  # sharpen the random init so answers vary with the prompt
        for p in model.parameters():
            p.mul_(3.0)
    return model


class ScriptedPolicy(torch.nn.Module):
    """A toy policy with known quality, driven through the same ``generate`` path as a transformers
    model: it reads the prompt back from the left-padded chat-formatted ids and answers ``rev:w=``
    exactly for 3-letter words, with one wrong letter for 2-letter words (partial credit), and
    nothing for words starting with 'f' (a tie with a zero-score baseline)."""

    def __init__(self, tok):
        from transformers import GenerationConfig

        super().__init__()
        self.tok = tok
        self.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        self.device = torch.device("cpu")

    def answer(self, word):
        if word.startswith("f"):
            return ""
        return word[::-1] if len(word) == 3 else "z" + word[::-1][1:]

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            text = self.tok.decode(ids[mask.bool()], skip_special_tokens=True)
            word = text.split("rev:", 1)[1].split("=", 1)[0]
            new = self.tok.encode(self.answer(word), add_special_tokens=False)[: max_new_tokens - 1]
            rows.append(new + [self.tok.eos_token_id])
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tok.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


@pytest.mark.parametrize("scorer", ["ours", "world"])
def test_generate_judge_score_both_harnesses(tmp_path, scorer):
    score = rev_score if scorer == "ours" else _world_score()
    rng = random.Random(0)
    words = ["".join(w) for k in (2, 3) for w in itertools.product("abcdef", repeat=k)]
    prompts = [f"rev:{w}=" for w in rng.sample(words, 24)]
    tok = build_toy_tokenizer()
    policy, baseline = ScriptedPolicy(tok), _policy(2, tok)

    # AlpacaEval: reference outputs from the baseline, answers from the policy (sampled, temperature 0.9)
    ref = generate_alpacaeval(
        baseline,
        tok,
        prompts,
        tmp_path / "ref.json",
        generator="toy-baseline",
        preset="alpacaeval-llama3",
        max_new_tokens=3,
        batch_size=8,
    )
    ans = generate_alpacaeval(
        policy,
        tok,
        prompts,
        tmp_path / "ans.json",
        generator="toy-policy",
        preset="alpacaeval-llama3",
        max_new_tokens=3,
        batch_size=8,
    )
    judge = ScoreJudge(score, tie_margin=0.0, strong_margin=0.6, name="oracle")
    res = evaluate_alpacaeval(tmp_path / "ans.json", tmp_path / "ref.json", judge, progress=False)
    s_ans = np.array([score(a["instruction"], a["output"]) for a in ans])
    s_ref = np.array([score(r["instruction"], r["output"]) for r in ref])
    assert res["win_rate"] == pytest.approx(100 * ((s_ans > s_ref) + 0.5 * (s_ans == s_ref)).mean())
    assert res["n_total"] == len(prompts) and 0 <= res["length_controlled_winrate"] <= 100
    assert 60 < res["win_rate"] < 100

    # Arena-Hard: greedy answers of both into the v0.1 layout, judged twice, BT-scored
    bench = tmp_path / "arena-hard-v0.1"
    qs = [
        {"question_id": f"q{i:02d}", "category": "toy", "cluster": "rev", "turns": [{"content": p}]}
        for i, p in enumerate(prompts)
    ]
    formats.write_jsonl(bench / "question.jsonl", qs)
    a_pol = generate_arenahard(policy, tok, qs, bench / "model_answer", model_id="toy-policy", max_new_tokens=3)
    a_base = generate_arenahard(baseline, tok, qs, bench / "model_answer", model_id="toy-baseline", max_new_tokens=3)
    out = ah.evaluate_arenahard(bench, "toy-policy", judge, baseline="toy-baseline", rounds=20, progress=False)
    # by hand from the scores: weight 3 past the strong margin, ties half, both games agree (no bias)
    wins = n = 0.0
    for q in qs:
        d = score(q["turns"][0]["content"], formats.answer_text(a_pol[q["question_id"]])) - score(
            q["turns"][0]["content"], formats.answer_text(a_base[q["question_id"]])
        )
        w = 3 if abs(d) > 0.6 else 1
        wins += 2 * w * (1.0 if d > 0 else 0.5 if d == 0 else 0.0)
        n += 2 * w
    assert 0 < wins < n  # a case with wins and ties, not a degenerate one
    assert out["win_rate"] == pytest.approx(100 * wins / n, abs=1e-3)
    assert out["n_games"] == 2 * len(qs) and out["n_ok"] == 2 * len(qs)
    assert (bench / "model_judgment" / "oracle" / "toy-policy.jsonl").exists()


def test_cli_standalone_both_benchmarks(tmp_path, capsys):
    bench = tmp_path / "bench"
    words = ["ab", "abc", "cab", "ba", "bca"]
    qs = [{"question_id": f"q{i}", "turns": [{"content": f"rev:{w}="}]} for i, w in enumerate(words)]
    formats.write_jsonl(bench / "question.jsonl", qs)
    formats.write_jsonl(
        bench / "model_answer" / "gpt-4-0314.jsonl",
        [ah.answer_record(q["question_id"], "gpt-4-0314", "zz") for q in qs],
    )
    judge = "tests_evaluate_scorer:rev_score"
    import sys
    import types

    sys.modules["tests_evaluate_scorer"] = types.SimpleNamespace(rev_score=rev_score)  # an importable scorer
    try:
        rc = main(
            [
                "arenahard",
                "--bench-dir",
                str(bench),
                "--model-id",
                "toy",
                "--model",
                "toy",
                "--max-new-tokens",
                "3",
                "--judge",
                judge,
                "--rounds",
                "5",
                "--no-progress",
                "--out",
                str(tmp_path / "ah.json"),
            ]
        )
        assert rc == 0
        res = json.loads((tmp_path / "ah.json").read_text())
        assert res["benchmark"] == "arena-hard-v0.1" and res["n_games"] == 10
        assert json.loads(capsys.readouterr().out)["win_rate"] == res["win_rate"]

        ref = [{"instruction": q["turns"][0]["content"], "output": "zz", "generator": "ref"} for q in qs]
        formats.write_json(tmp_path / "ref.json", ref)
        rc = main(
            [
                "eval",
                "alpacaeval",
                "--answers",
                str(tmp_path / "ans.json"),
                "--reference",
                str(tmp_path / "ref.json"),
                "--model",
                "toy",
                "--max-new-tokens",
                "3",
                "--judge",
                judge,
                "--output-dir",
                str(tmp_path / "ae"),
                "--no-progress",
            ]
        )
        assert rc == 0
        assert len(formats.read_alpacaeval(tmp_path / "ans.json")) == 5
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["n_total"] == 5 and metrics["lc_glm"] == "length_controlled_minimal"
        assert (tmp_path / "ae" / "annotations.json").exists()
    finally:
        del sys.modules["tests_evaluate_scorer"]


def test_cli_reports_a_malformed_file_with_its_line(tmp_path, capsys):
    bench = tmp_path / "bench"
    formats.write_jsonl(bench / "question.jsonl", [{"question_id": "q0", "turns": [{"content": "rev:ab="}]}])
    (bench / "question.jsonl").write_text((bench / "question.jsonl").read_text() + '{"question_id": "q1"}\n')
    rc = main(["arenahard", "--bench-dir", str(bench), "--model-id", "m", "--score-only", "--no-progress"])
    assert rc == 2
    assert "question.jsonl:2: record lacks key(s) ['turns']" in capsys.readouterr().err
