"""Bad input and stale caches in the evaluation harnesses (AlpacaEval 2, Arena-Hard v0.1): duplicates are
refused with file and line, a judgment is reused only for what it judged, a generator never inherits
another's answers, a score resting on too few usable games fails. No model is loaded: judges are score
functions and generation is stubbed where it would run."""

from __future__ import annotations

import json
import math
import types

import pandas as pd
import pytest

from rpo.evaluate import alpacaeval as ae
from rpo.evaluate import arenahard as ah
from rpo.evaluate import formats
from rpo.evaluate import generate as gen
from rpo.evaluate.cli import main as eval_main
from rpo.evaluate.judges import ScoreJudge


def exact(prompt, response):
    """1 for the right answer to ``rev:<word>=``, else 0."""
    return float(response == prompt[4:-1][::-1])


WORDS = ["abc", "dog", "sun", "kit", "map", "fox"]


def make_bench(tmp_path, *, good=True, name="bench"):
    """question.jsonl, the baseline's answers (always wrong) and the model's (right when ``good``)."""
    bench = tmp_path / name
    qs = [{"question_id": f"q{i}", "turns": [{"content": f"rev:{w}="}]} for i, w in enumerate(WORDS)]
    formats.write_jsonl(bench / "question.jsonl", qs)
    base = [ah.answer_record(q["question_id"], "base", "zzz") for q in qs]
    model = [ah.answer_record(q["question_id"], "m", w[::-1] if good else "yyy") for q, w in zip(qs, WORDS)]
    formats.write_jsonl(bench / "model_answer" / "base.jsonl", base)
    formats.write_jsonl(bench / "model_answer" / "m.jsonl", model)
    return bench


def judge(calls=None):
    def score(prompt, response):
        if calls is not None:
            calls.append(prompt)
        return exact(prompt, response)

    return ScoreJudge(score, strong_margin=0.5, name="exact")


def score(bench, j=None, **kw):
    return ah.evaluate_arenahard(bench, "m", j, baseline="base", judge_name="exact", rounds=5, progress=False, **kw)


def judgment_file(bench):
    return bench / "model_judgment" / "exact" / "m.jsonl"


def rewrite_judgments(bench, edit):
    path = judgment_file(bench)
    recs = [edit(r) for r in formats.read_judgments(path)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs if r is not None))


# ---- Arena-Hard: stale judgments ------------------------------------------------------------------------------
def test_replaced_answers_are_rejudged_not_reused(tmp_path):
    bench = make_bench(tmp_path)
    assert score(bench, judge())["win_rate"] > 90
    formats.write_jsonl(  # the model's answers are replaced by wrong ones
        bench / "model_answer" / "m.jsonl", [ah.answer_record(f"q{i}", "m", "yyy") for i in range(len(WORDS))]
    )
    calls = []
    again = score(bench, judge(calls), min_usable=0)
    fresh = score(make_bench(tmp_path, good=False, name="fresh"), judge(), min_usable=0)
    assert len(calls) == 8 * len(WORDS)  # every question judged again (2 games x 4 score calls)
    assert again["win_rate"] == pytest.approx(fresh["win_rate"]) and again["win_rate"] < 60


def test_scoring_alone_refuses_a_stale_judgment_with_file_and_line(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    recs = formats.read_answers(bench / "model_answer" / "m.jsonl")
    recs["q2"]["choices"][0]["turns"][0]["content"] = "cba"
    formats.write_jsonl(bench / "model_answer" / "m.jsonl", list(recs.values()))
    with pytest.raises(ValueError, match=r"m\.jsonl:3: stale judgment of question 'q2': answer changed"):
        score(bench)


def test_a_changed_judge_prompt_is_rejudged(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(bench, lambda r: {**r, "cache_key": {**r["cache_key"], "template": "0" * 16}})
    calls = []
    score(bench, judge(calls))
    assert len(calls) == 8 * len(WORDS)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: {k: v for k, v in r.items() if k != "cache_key"} | {"judge": "gpt-4"}, ["judged by 'gpt-4'"]),
        (
            lambda r: (
                {k: v for k, v in r.items() if k != "cache_key"}
                | {"games": [{"score": g["score"]} for g in r["games"]]}
            ),
            ["what it judged is unknown"],
        ),
        (lambda r: {**r, "model": "other"}, ["m.jsonl:1: a judgment of model 'other'"]),
        (lambda r: {**r, "question_id": r["question_id"] + "x"}, ["m.jsonl:1: question_id 'q0x' is not a question"]),
    ],
    ids=["unkeyed-other-judge", "unkeyed-without-prompts", "other-model", "unknown-question"],
)
def test_judgments_that_do_not_belong_are_refused(tmp_path, edit, words):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(bench, edit)
    with pytest.raises(ValueError) as e:
        score(bench)
    for word in words:
        assert word in str(e.value), str(e.value)


def test_an_unkeyed_judgment_that_matches_its_prompts_is_accepted(tmp_path):
    bench = make_bench(tmp_path)
    first = score(bench, judge())
    rewrite_judgments(bench, lambda r: {k: v for k, v in r.items() if k != "cache_key"})  # arena-hard-auto's layout
    assert score(bench)["win_rate"] == pytest.approx(first["win_rate"])


# ---- Arena-Hard: malformed and duplicated files ---------------------------------------------------------------
def test_duplicate_question_is_refused(tmp_path):
    bench = make_bench(tmp_path)
    with open(bench / "question.jsonl", "a") as f:
        f.write(json.dumps({"question_id": "q1", "turns": [{"content": "rev:abc="}]}) + "\n")
    with pytest.raises(ValueError, match=r"question\.jsonl:7: duplicate question_id 'q1' \(first at line 2\)"):
        score(bench, judge())


def test_duplicate_judgment_is_refused(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(bench, lambda r: {**r, "question_id": "q0"} if r["question_id"] == "q3" else r)
    with pytest.raises(ValueError, match=r"m\.jsonl:4: duplicate judgment of question_id 'q0' \(first at line 1\)"):
        score(bench)


def test_non_string_judgment_is_refused(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(bench, lambda r: {**r, "games": [{"judgment": 3, "score": None}, r["games"][1]]})
    with pytest.raises(ValueError, match=r"m\.jsonl:1: game 0 must be null or an object with string judgment"):
        score(bench)


def test_a_record_with_one_game_counts_the_other_as_missing():
    one = {"question_id": "q", "model": "m", "games": [{"judgment": "[[B>A]]"}]}
    _, report = ah.battles_from_judgments([one], baseline="base")
    assert (report["n_games"], report["n_ok"], report["n_missing"]) == (2, 1, 1)


# ---- Arena-Hard: too few usable games --------------------------------------------------------------------------
def test_two_usable_games_of_twelve_fail(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(
        bench,
        lambda r: (
            r if r["question_id"] == "q0" else {**r, "games": [{**g, "judgment": "no verdict"} for g in r["games"]]}
        ),
    )
    with pytest.raises(ValueError, match=r"only 2 of 12 games .* below min_usable=0\.9"):
        score(bench, judge())  # what is cached is not stale: the judge is not asked again
    argv = ["arenahard", "--bench-dir", str(bench), "--model-id", "m", "--baseline", "base"]
    assert eval_main([*argv, "--judge-name", "exact", "--score-only", "--rounds", "5", "--no-progress"]) == 2


def test_unjudged_questions_count_against_the_share(tmp_path):
    bench = make_bench(tmp_path)
    score(bench, judge())
    rewrite_judgments(bench, lambda r: r if r["question_id"] in ("q0", "q1") else None)
    with pytest.raises(ValueError, match=r"only 4 of 12 games"):
        score(bench)


def test_min_usable_outside_zero_one_is_refused(tmp_path):
    bench = make_bench(tmp_path)
    with pytest.raises(ValueError, match=r"min_usable must be a share in \[0, 1\], got 1\.5"):
        score(bench, judge(), min_usable=1.5)


def test_cli_names_a_missing_bench_folder(tmp_path, capsys):
    code = eval_main(["arenahard", "--bench-dir", str(tmp_path / "nope"), "--model-id", "m", "--score-only"])
    assert code == 2 and "nope" in capsys.readouterr().err


# ---- generation caches ----------------------------------------------------------------------------------------
def stub_generate(monkeypatch, text="new"):
    seen = []

    def fake(model, tokenizer, instructions, dec, *, seed=0, offset=0):
        seen.extend(instructions)
        return [(text, 1) for _ in instructions]

    monkeypatch.setattr(gen, "generate", fake)
    return seen


def test_alpacaeval_generation_refuses_another_generators_file(tmp_path, monkeypatch):
    stub_generate(monkeypatch)
    out = tmp_path / "answers.json"
    formats.write_json(out, [{"instruction": "rev:abc=", "output": "cba", "generator": "policy-a"}])
    with pytest.raises(
        ValueError, match=r"answers\.json holds answers of generator\(s\) \['policy-a'\], not 'policy-b'"
    ):
        gen.generate_alpacaeval(None, None, ["rev:abc="], out, generator="policy-b")


def test_arenahard_generation_refuses_another_models_file(tmp_path, monkeypatch):
    stub_generate(monkeypatch)
    bench = make_bench(tmp_path)
    (bench / "model_answer" / "b.jsonl").write_text((bench / "model_answer" / "m.jsonl").read_text())
    with pytest.raises(ValueError, match=r"b\.jsonl holds answers of model_id\(s\) \['m'\], not 'b'"):
        gen.generate_arenahard(None, None, bench / "question.jsonl", bench / "model_answer", model_id="b")


def test_a_changed_question_is_answered_again(tmp_path, monkeypatch):
    seen = stub_generate(monkeypatch)
    qs = [{"question_id": "q0", "turns": [{"content": "rev:abc="}]}]
    model = types.SimpleNamespace(eval=lambda: None)
    gen.generate_arenahard(model, None, qs, tmp_path, model_id="p")
    gen.generate_arenahard(model, None, qs, tmp_path, model_id="p")
    assert seen == ["rev:abc="]  # resumed: nothing generated twice
    qs[0]["turns"][0]["content"] = "rev:xyz="
    gen.generate_arenahard(model, None, qs, tmp_path, model_id="p")
    assert seen == ["rev:abc=", "rev:xyz="]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: gen.generate_alpacaeval(None, None, ["a", "b", "a"], p / "o.json", generator="g"), r"\[2\] repeats"),
        (
            lambda p: gen.generate_arenahard(
                None, None, [{"question_id": "q", "turns": [{"content": "x"}]}] * 2, p, model_id="g"
            ),
            "question_id 'q' appears more than once",
        ),
    ],
    ids=["alpacaeval-duplicate-instruction", "arenahard-duplicate-question"],
)
def test_generation_refuses_duplicates(tmp_path, monkeypatch, call, match):
    stub_generate(monkeypatch)
    with pytest.raises(ValueError, match=match):
        call(tmp_path)


# ---- AlpacaEval --------------------------------------------------------------------------------------------------
REF = [{"instruction": f"rev:{w}=", "output": "zzz", "generator": "ref"} for w in WORDS]
ANS = [{"instruction": f"rev:{w}=", "output": w[::-1], "generator": "m"} for w in WORDS]


def test_duplicate_instruction_in_a_file_is_refused_with_its_line(tmp_path):
    path = tmp_path / "answers.json"
    formats.write_json(path, [*ANS, ANS[1]])
    with pytest.raises(ValueError, match=r"answers\.json:\d+: record 6 repeats the instruction of record 1"):
        ae.evaluate_alpacaeval(path, REF, exact, progress=False)


def test_duplicate_instruction_in_memory_is_refused():
    with pytest.raises(ValueError, match=r"reference_answers\[6\] repeats the instruction of reference_answers\[0\]"):
        ae.evaluate_alpacaeval(ANS, [*REF, REF[0]], exact, progress=False)


def test_alpacaeval_with_too_few_usable_preferences_fails(monkeypatch):
    def unparsed(model, ref, config, output_dir, **kw):  # an API annotator that could parse one answer in six
        rows = ae.judge_pairs(model, ref, exact, progress=False)
        return rows.assign(preference=[1.9] + [math.nan] * (len(rows) - 1))

    monkeypatch.setattr(ae, "_annotate_with_alpaca_eval", unparsed)
    with pytest.raises(ValueError, match=r"only 1 of 6 instructions have a usable preference"):
        ae.evaluate_alpacaeval(ANS, REF, "weighted_alpaca_eval_gpt4_turbo", progress=False)


@pytest.mark.parametrize(
    "text, match",
    [
        ('["a",\n  oops]', r"instr\.json:2: not valid JSON"),
        ('["a",\n 7]', r"instr\.json:2: item 1 is no instruction"),
        ('{"instruction": "a"}', r"instr\.json: expected a JSON list of instructions, got dict"),
        ('["a",\n "a"]', r"instr\.json:2: item 1 repeats the instruction of item 0"),
    ],
    ids=["bad-json", "item-not-an-instruction", "not-a-list", "duplicate"],
)
def test_instruction_files_are_checked_with_their_line(tmp_path, text, match):
    (tmp_path / "instr.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        formats.read_instructions(tmp_path / "instr.json")


def test_annotations_keep_their_order_and_count():  # the harness's own output, checked once
    rows = ae.judge_pairs(ANS, REF, exact, progress=False)
    assert isinstance(rows, pd.DataFrame) and list(rows["instruction"]) == [r["instruction"] for r in REF]
