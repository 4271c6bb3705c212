"""Arena-Hard v0.1 harness: verdict parsing, battles, Bradley-Terry + bootstrap, swapped positions,
the published file layout, and clear errors."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rpo.evaluate import arenahard as ah
from rpo.evaluate import formats
from rpo.evaluate.judges import ScoreJudge

FIX = Path(__file__).parent.parent / "fixtures" / "arenahard"
BENCH = FIX / "arena-hard-v0.1"


# ----------------------------------------------------------------------------- verdict parsing


@pytest.mark.parametrize("label", ["A>>B", "A>B", "A=B", "B>A", "B>>A"])
def test_every_verdict_form_parses(label):
    assert ah.parse_verdict(f"Long reasoning.\n\nMy final verdict is: [[{label}]]") == (label, "ok")
    assert ah.parse_verdict(f"[[{label}]] and again [[{label}]]") == (label, "ok")  # repeated = one verdict


@pytest.mark.parametrize(
    "mirrored,canonical", [("B<<A", "A>>B"), ("B<A", "A>B"), ("B=A", "A=B"), ("A<B", "B>A"), ("A<<B", "B>>A")]
)
def test_mirrored_labels_read_as_canonical(mirrored, canonical):
    assert ah.parse_verdict(f"verdict [[{mirrored}]]") == (canonical, "ok")


@pytest.mark.parametrize(
    "text,status",
    [
        (None, "missing"),
        ("", "missing"),
        ("A is better. Final verdict: A>B", "missing"),
        ("[A>B]", "missing"),
        ("[[C>D]]", "missing"),
        ("[[A>B]] no wait [[B>A]]", "conflict"),
        ("[[A>B]] or [[A>>B]]", "conflict"),
        ("[[A>>>B]]", "unknown"),
        ("[[AB]]", "unknown"),
        ("[[=]]", "unknown"),
    ],
)
def test_missing_conflicting_and_unknown_verdicts_have_no_label(text, status):
    assert ah.parse_verdict(text) == (None, status)


def test_battles_follow_v01_mapping_weights_and_count_bad_games():
    recs = [
        {"question_id": "q1", "model": "m", "games": [{"judgment": "[[B>>A]]"}, {"judgment": "[[A>B]]"}]},
        {"question_id": "q2", "model": "m", "games": [{"judgment": "[[A=B]]"}, {"judgment": "nothing"}]},
        {"question_id": "q3", "model": "m", "games": [{"judgment": "[[A>B]][[B>A]]"}, {"score": "B>>A"}]},
        {"question_id": "q4", "model": "m", "games": [None, {"judgment": "[[A>>>B]]"}]},
    ]
    battles, rep = ah.battles_from_judgments(recs, baseline="base", weight=3)
    assert (battles["model_a"] == "base").all() and (battles["model_b"] == "m").all()
    by_q = battles.groupby("question_id")["winner"].apply(list).to_dict()
    # game 1: B is the model; game 2 (swapped): A is the model
    assert by_q["q1"] == ["model_b"] * 3 + ["model_b"]
    assert by_q["q2"] == ["tie"]
    assert by_q["q3"] == ["model_a"] * 3  # game 2 'B>>A': B is the baseline
    assert "q4" not in by_q
    assert rep == {
        "n_ok": 4,
        "n_missing": 2,
        "n_conflict": 1,
        "n_unknown": 1,
        "n_games": 8,
        "verdicts": {"A>>B": 0, "A>B": 1, "A=B": 1, "B>A": 0, "B>>A": 2},
    }
    first, rep1 = ah.battles_from_judgments(recs, baseline="base", first_game_only=True)
    assert rep1["n_games"] == 4 and len(first) == 3 + 1  # q1 (x3) + q2 tie; q3 conflict, q4 missing


# ----------------------------------------------------------------------------- Bradley-Terry


def _tournament(strengths: dict, n_per_pair: int, seed: int, tie_frac: float = 0.1) -> pd.DataFrame:
    """Round robin with expected score sigmoid(s_i - s_j) (natural-log units): a tie (half a win) with
    probability ``tie_frac``, else a win with probability q such that the expected score is unchanged."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = 1 / (1 + math.exp(strengths[b] - strengths[a]))
            q = (p - tie_frac / 2) / (1 - tie_frac)
            for _ in range(n_per_pair):
                u = rng.random()
                rows.append((a, b, "tie" if u < tie_frac else ("model_a" if rng.random() < q else "model_b")))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])


def test_bradley_terry_recovers_strength_order_and_win_rates_within_interval():
    strengths = {"base": 0.0, "weak": -1.0, "good": 0.5, "best": 1.2}
    battles = _tournament(strengths, n_per_pair=300, seed=0)
    board = ah.leaderboard(battles, baseline="base", rounds=100, seed=1)
    assert list(board["model"]) == ["best", "good", "base", "weak"]
    for _, row in board.iterrows():
        true = 100 / (1 + math.exp(strengths["base"] - strengths[row["model"]]))
        assert row["lower"] <= true <= row["upper"], (row.to_dict(), true)
        assert row["upper"] - row["lower"] < 12  # an informative interval, not a vacuous one
    base = board.set_index("model").loc["base"]
    assert base["win_rate"] == pytest.approx(50) and base["elo"] == pytest.approx(1000)


def test_two_player_bt_equals_tie_as_half_win_fraction():
    battles = pd.DataFrame(
        {"model_a": "base", "model_b": "m", "winner": ["model_b"] * 7 + ["model_a"] * 2 + ["tie"] * 3}
    )
    elo = ah.bradley_terry(battles, baseline="base")
    assert ah.elo_win_rate(elo["m"], elo["base"]) == pytest.approx((7 + 1.5) / 12, abs=1e-5)


def test_bt_stays_finite_when_one_side_wins_everything():
    battles = pd.DataFrame({"model_a": "base", "model_b": "m", "winner": ["model_b"] * 20})
    elo = ah.bradley_terry(battles, baseline="base")
    assert np.isfinite(elo).all() and ah.elo_win_rate(elo["m"], elo["base"]) > 0.9


# ----------------------------------------------------------------------------- swapped positions


def _quality_scorer():
    rng = np.random.default_rng(3)
    quality = {}

    def score(prompt, response):
        return quality[response]

    qs, base, model = [], {}, {}
    for i in range(200):
        qid = f"q{i}"
        qs.append({"question_id": qid, "turns": [{"content": f"question {i}"}]})
        b, m = f"base answer {i}", f"model answer {i}"
        quality[b] = rng.normal()
        quality[m] = quality[b] + rng.normal(0.3, 0.5)  # the model is a little better on average
        base[qid] = ah.answer_record(qid, "base", b)
        model[qid] = ah.answer_record(qid, "model", m)
    return score, qs, base, model


@pytest.mark.parametrize("first_game_only", [False, True])
def test_swapped_games_cancel_a_planted_position_bias(tmp_path, first_game_only):
    score, qs, base, model = _quality_scorer()
    rates = {}
    for name, bias in (("unbiased", 0.0), ("favours_A", 0.4), ("favours_B", -0.4)):
        judge = ScoreJudge(score, tie_margin=0.05, strong_margin=0.6, position_bias=bias, name=name)
        recs = ah.judge_answers(
            qs, model, base, judge, model="model", out_path=tmp_path / f"{name}.jsonl", progress=False
        )
        battles, _ = ah.battles_from_judgments(recs, baseline="base", first_game_only=first_game_only)
        elo = ah.bradley_terry(battles, baseline="base")
        rates[name] = 100 * ah.elo_win_rate(elo["model"], elo["base"])
    if first_game_only:  # the planted bias is real: one game shows it in full
        assert rates["favours_A"] < rates["unbiased"] - 10 < rates["favours_B"] - 20
    else:  # both orders: the A-favouring and B-favouring judges give the same number
        assert rates["favours_A"] == pytest.approx(rates["favours_B"], abs=1e-6)
        assert rates["favours_A"] > 50 and rates["unbiased"] > 50  # the better model stays ahead


# ----------------------------------------------------------------------------- files and harness


def test_published_layout_fixture_scores_to_the_hand_count():
    # 10 of its 12 games are usable: below the default min_usable (0.9), so the share is lowered knowingly
    with pytest.raises(ValueError, match=r"only 10 of 12 games .* below min_usable=0.9"):
        ah.evaluate_arenahard(BENCH, "toy-policy", judge=None, judge_name="gpt-4-1106-preview", rounds=5)
    res = ah.evaluate_arenahard(
        BENCH, "toy-policy", judge=None, judge_name="gpt-4-1106-preview", rounds=30, min_usable=0.8
    )
    # by hand: model wins 3+3, 1+1, 3 (q4 game 2 missing), 1 (q6 game 1 conflict); baseline 1+1; ties 2
    assert res["win_rate"] == pytest.approx(100 * (12 + 1) / 16, abs=1e-3)
    assert res["ci_lower"] <= res["win_rate"] <= res["ci_upper"]
    assert (res["n_games"], res["n_ok"], res["n_missing"], res["n_conflict"], res["n_unknown"]) == (12, 10, 1, 1, 0)
    assert res["verdicts"] == {"A>>B": 1, "A>B": 3, "A=B": 2, "B>A": 2, "B>>A": 2}
    assert res["n_questions"] == res["n_judged"] == 6 and res["avg_tokens"] == pytest.approx(27 / 6)
    with pytest.raises(ValueError, match="without a usable verdict"):
        ah.evaluate_arenahard(BENCH, "toy-policy", judge=None, judge_name="gpt-4-1106-preview", rounds=5, strict=True)


def test_malformed_answer_file_error_names_file_and_line():
    bad = FIX / "malformed" / "model_answer" / "toy-policy.jsonl"
    with pytest.raises(ValueError, match=r"toy-policy\.jsonl:3: not valid JSON"):
        formats.read_answers(bad)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"question_id": "x", "model_id": "m"}', r"bad\.jsonl:2: record lacks key\(s\) \['choices'\]"),
        ('{"question_id": "x", "model_id": "m", "choices": []}', r"bad\.jsonl:2: record lacks choices"),
        ("[1, 2]", r"bad\.jsonl:2: expected a JSON object"),
    ],
)
def test_answer_record_errors_name_line(tmp_path, line, match):
    good = ah.answer_record("q0", "m", "hi")
    (tmp_path / "bad.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=match):
        formats.read_answers(tmp_path / "bad.jsonl")


def _rev_score(prompt, response):
    target = prompt.strip()[4:-1][::-1]
    hits = sum(a == b for a, b in zip(response, target))
    return hits / max(len(response), len(target), 1)


def test_judging_writes_v01_records_and_resumes(tmp_path):
    bench = tmp_path / "arena-hard-v0.1"
    shutil.copytree(BENCH, bench)
    shutil.rmtree(bench / "model_judgment")
    calls = []

    def counting(prompt, response):
        calls.append(prompt)
        return _rev_score(prompt, response)

    judge = ScoreJudge(counting, strong_margin=0.3, name="rev-oracle")
    res = ah.evaluate_arenahard(bench, "toy-policy", judge, rounds=20, progress=False)
    path = bench / "model_judgment" / "rev-oracle" / "toy-policy.jsonl"
    recs = formats.read_judgments(path)
    questions = formats.read_questions(bench / "question.jsonl")
    assert [r["question_id"] for r in recs] == [q["question_id"] for q in questions]
    g1, g2 = recs[0]["games"]
    assert set(recs[0]) == {"question_id", "model", "judge", "games", "cache_key"}  # v0.1 + what was judged
    assert set(g1) == set(g2) == {"user_prompt", "judgment", "score"}
    assert "<|The Start of Assistant A's Answer|>\ndcab\n" in g1["user_prompt"]  # game 1: baseline first
    assert "<|The Start of Assistant A's Answer|>\ndcba\n" in g2["user_prompt"]  # game 2: swapped
    assert (g1["score"], g2["score"]) == ("B>>A", "A>>B")
    assert res["n_missing"] == res["n_conflict"] == 0 and res["win_rate"] > 50
    n_calls = len(calls)
    again = ah.evaluate_arenahard(bench, "toy-policy", judge, rounds=20, progress=False)
    assert len(calls) == n_calls and again["win_rate"] == res["win_rate"]  # nothing judged twice


def test_missing_answer_is_named(tmp_path):
    qs = [{"question_id": "q1", "turns": [{"content": "rev:ab="}]}]
    with pytest.raises(ValueError, match=r"toy has no answer to 1 question\(s\), e.g. \['q1'\]"):
        ah.judge_answers(
            qs,
            {},
            {"q1": ah.answer_record("q1", "b", "ba")},
            ScoreJudge(_rev_score),
            model="toy",
            out_path=tmp_path / "j.jsonl",
            progress=False,
        )


def test_openai_judge_sends_v01_prompts_and_asks_again_without_verdict():
    from types import SimpleNamespace

    from rpo.evaluate.judges import ARENA_HARD_SYSTEM_PROMPT, CONTINUE_PROMPT, OpenAIJudge

    sent, replies = [], iter(["Both answers are long; let me think.", "My final verdict is: [[B>A]]"])

    def create(**kw):
        sent.append(kw)
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=next(replies)))])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    judge = OpenAIJudge(client=client, attempts=2)
    text = judge.judge("rev:ab=", "ab", "ba")
    assert ah.parse_verdict(text) == ("B>A", "ok")
    first, second = sent
    assert first["model"] == "gpt-4-1106-preview" and first["temperature"] == 0 and first["max_tokens"] == 4096
    assert first["messages"][0] == {"role": "system", "content": ARENA_HARD_SYSTEM_PROMPT}
    assert first["messages"][1]["content"].startswith("<|User Prompt|>\nrev:ab=\n\n<|The Start of Assistant A's")
    assert second["messages"][-1] == {"role": "user", "content": CONTINUE_PROMPT}


def test_score_judge_margins_and_argument_errors():
    judge = ScoreJudge(lambda p, r: float(r), tie_margin=0.1, strong_margin=0.5)
    assert [judge.verdict("q", "0.5", b) for b in ("0.45", "0.3", "0.9", "-0.2")] == ["A=B", "A>B", "B>A", "A>>B"]
    with pytest.raises(ValueError, match="tie_margin <= strong_margin"):
        ScoreJudge(lambda p, r: 0.0, tie_margin=0.6, strong_margin=0.5)
    with pytest.raises(ValueError, match="score must be callable"):
        ScoreJudge("oracle")
