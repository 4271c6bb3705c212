"""AlpacaEval 2 harness: win rates against alpaca_eval's own functions, the offline length-controlled
GLM on cases with a known answer, the official-GLM path with a local df_gamed.csv, local judges, and
file errors."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rpo.evaluate import alpacaeval as ae
from rpo.evaluate import formats
from rpo.evaluate.judges import ScoreJudge

FIX = Path(__file__).parent.parent / "fixtures" / "alpacaeval"


def _synthetic(n: int, theta: float, length_weight: float, seed: int = 0, soft: bool = True) -> pd.DataFrame:
    """Annotations whose P(model preferred) = sigmoid(theta + length_weight * tanh(std (len_model -
    len_ref))): ``theta`` is the model's quality, the rest a pure length preference. The model's outputs
    are longer on average, so a length-loving judge inflates the raw win rate."""
    rng = np.random.default_rng(seed)
    len_ref = rng.integers(200, 1500, n)
    len_mod = len_ref + rng.integers(-200, 1500, n)
    delta = len_mod - len_ref
    p = 1 / (1 + np.exp(-(theta + length_weight * np.tanh(delta / delta.std()))))
    pref = 1 + p if soft else np.where(rng.random(n) < p, 2.0, 1.0)
    return pd.DataFrame(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "output_1": ["r" * k for k in len_ref],
            "generator_1": "ref",
            "output_2": ["m" * k for k in len_mod],
            "generator_2": "model",
            "annotator": "synthetic",
            "preference": pref,
        }
    )


def test_win_rates_agree_with_alpaca_eval_functions():
    from alpaca_eval.metrics import get_winrate, pairwise_to_winrate

    rng = np.random.default_rng(1)
    prefs = np.concatenate([rng.choice([1.0, 1.5, 2.0], 60, p=[0.3, 0.1, 0.6]), 1 + rng.random(40)])
    ann = _synthetic(100, 0.0, 0.0).assign(preference=prefs)
    ours = ae.length_controlled(ann)
    ref = pairwise_to_winrate(list(prefs))
    for key in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate"):
        assert ours[key] == pytest.approx(ref[key]), key
    assert ours == pytest.approx({**ours, **get_winrate(ann)})
    # and by the definition: mean of (preference - 1), its standard error of the mean
    assert ours["win_rate"] == pytest.approx(100 * (prefs - 1).mean())
    assert ours["standard_error"] == pytest.approx(100 * (prefs - 1).std(ddof=1) / math.sqrt(100))
    assert ours["discrete_win_rate"] == pytest.approx(100 * ((prefs > 1.5) + 0.5 * (prefs == 1.5)).mean())


def test_offline_lc_removes_a_pure_length_preference():
    ann = _synthetic(600, theta=0.0, length_weight=2.0)
    out = ae.length_controlled(ann)
    assert out["lc_glm"] == "length_controlled_minimal"
    assert out["win_rate"] > 70  # raw win rate inflated by length alone
    assert out["length_controlled_winrate"] == pytest.approx(50.0, abs=1.0)
    assert out["lc_extreme_change"] is True


@pytest.mark.parametrize("theta,length_weight", [(0.8, 0.0), (0.8, 1.5), (-0.6, 1.5)])
def test_offline_lc_recovers_the_length_free_win_rate(theta, length_weight):
    ann = _synthetic(600, theta=theta, length_weight=length_weight, seed=2)
    out = ae.length_controlled(ann)
    truth = 100 / (1 + math.exp(-theta))  # the win rate at equal length
    assert out["length_controlled_winrate"] == pytest.approx(truth, abs=1.5)
    if length_weight == 0:
        assert out["length_controlled_winrate"] == pytest.approx(out["win_rate"], abs=1.5)


def test_offline_lc_with_hard_preferences_and_bootstrap_se():
    ann = _synthetic(400, theta=0.5, length_weight=1.5, seed=4, soft=False)
    out = ae.length_controlled(ann)
    assert out["length_controlled_winrate"] == pytest.approx(100 / (1 + math.exp(-0.5)), abs=6)
    assert out["lc_standard_error"] < 1e-9  # alpaca_eval's definition degenerates without difficulty
    boot = ae.lc_bootstrap(ann, rounds=8, seed=0)
    assert 0.5 < boot.std(ddof=1) < 6  # a bootstrap spread of the right order (~2.5 points)


def _df_gamed(tmp_path, n, difficulty):
    """A df_gamed.csv in the Hub file's columns: two gamed baselines' annotations (preferences in [0, 1],
    following the same difficulty and no length effect) + per-instruction difficulties."""
    rows = []
    for model, sign in (("gpt4_gamed_verbose", 1), ("gpt4_gamed_concise", -1)):
        for i in range(n):
            rows.append(
                {
                    "model": model,
                    "index": i,
                    "preference": 1 / (1 + math.exp(1.5 * difficulty[i])),
                    "std_delta_len": -sign * 1.0,
                    "instruction_difficulty": difficulty[i],
                    "not_gamed_baseline": False,
                }
            )
    path = tmp_path / "df_gamed.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_official_lc_path_uses_instruction_difficulty_from_a_local_df_gamed(tmp_path):
    n = 300
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0, 1.0, n)
    ann = _synthetic(n, theta=0.0, length_weight=0.0, seed=5)
    p = 1 / (1 + np.exp(-(0.7 - 1.5 * difficulty)))  # hard instructions: the model loses more
    ann["preference"] = 1 + p
    official = ae.length_controlled(ann, df_gamed=_df_gamed(tmp_path, n, difficulty))
    offline = ae.length_controlled(ann)
    assert official["lc_glm"] == "length_controlled_v1" and offline["lc_glm"] == "length_controlled_minimal"
    assert official["win_rate"] == offline["win_rate"]
    # per-instruction predictions now differ, so alpaca_eval's own LC standard error is informative
    assert official["lc_standard_error"] > 0.5 and offline["lc_standard_error"] < 1e-9
    assert official["length_controlled_winrate"] == pytest.approx(100 * p.mean(), abs=3)
    with pytest.raises(ValueError, match="knows 300 instructions"):
        ae.length_controlled(_synthetic(n + 5, 0.0, 0.0), df_gamed=tmp_path / "df_gamed.csv")


def _rev_score(prompt, response):
    target = prompt.strip()[4:-1][::-1]
    return sum(a == b for a, b in zip(response, target)) / max(len(response), len(target), 1)


def test_local_judge_on_the_fixture_matches_a_hand_count(tmp_path):
    judge = ScoreJudge(_rev_score, name="rev-oracle")
    res = ae.evaluate_alpacaeval(
        FIX / "model_outputs.json", FIX / "reference_outputs.json", judge, output_dir=tmp_path, progress=False
    )
    # by hand: model better on abcd, kefir, jam, bridge; reference better on hello; tie on lamp? no:
    # pmla (2/4) vs pmal (4/4): reference better. So 4 wins, 2 losses.
    assert (res["n_wins"], res["n_wins_base"], res["n_draws"], res["n_total"]) == (4, 2, 0, 6)
    assert res["win_rate"] == pytest.approx(400 / 6)
    assert res["annotator"] == "rev-oracle" and res["generator"] == "toy-policy"
    ann = json.loads((tmp_path / "annotations.json").read_text())
    assert [a["preference"] for a in ann] == [2.0, 1.0, 2.0, 2.0, 1.0, 2.0]
    assert set(ann[0]) == {
        "instruction",
        "output_1",
        "generator_1",
        "output_2",
        "generator_2",
        "annotator",
        "preference",
    }
    assert json.loads((tmp_path / "metrics.json").read_text())["win_rate"] == pytest.approx(res["win_rate"])


def test_soft_judge_preferences_and_bare_score_callable():
    soft = ScoreJudge(_rev_score, soft_temperature=0.25)
    assert soft.preference("rev:ab=", "ab", "ba") == pytest.approx(1 + 1 / (1 + math.exp(-4)))
    assert soft.preference("rev:ab=", "ba", "ba") == pytest.approx(1.5)
    ann = ae.judge_pairs(FIX / "model_outputs.json", FIX / "reference_outputs.json", _rev_score, progress=False)
    assert list(ann["preference"]) == [2.0, 1.0, 2.0, 2.0, 1.0, 2.0]


def test_missing_instruction_and_bad_judge_output_are_clear_errors():
    ref = formats.read_alpacaeval(FIX / "reference_outputs.json")
    with pytest.raises(ValueError, match=r"lack 1 reference instruction\(s\), first: 'rev:bridge='"):
        ae.judge_pairs(ref[:5], ref, _rev_score, progress=False)

    class Broken:
        name = "broken"

        def preference(self, *a):
            return 3.0

    with pytest.raises(ValueError, match=r"judge 'broken' returned preference 3.0 outside \[1, 2\]"):
        ae.judge_pairs(ref, ref, Broken(), progress=False)


def test_malformed_outputs_file_error_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"model_outputs_malformed\.json:14: record 2 must be an object"):
        formats.read_alpacaeval(FIX / "model_outputs_malformed.json")
    (tmp_path / "broken.json").write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]')
    with pytest.raises(ValueError, match=r"broken\.json:3: not valid JSON"):
        formats.read_alpacaeval(tmp_path / "broken.json")
    (tmp_path / "dict.json").write_text('{"instruction": "a", "output": "b"}')
    with pytest.raises(ValueError, match=r"dict\.json: expected a JSON list"):
        formats.read_alpacaeval(tmp_path / "dict.json")


def test_too_few_annotations_for_the_glm(tmp_path):
    ref = formats.read_alpacaeval(FIX / "reference_outputs.json")[:3]
    with pytest.raises(ValueError, match="needs at least 5 annotations, got 3"):
        ae.length_controlled(ae.judge_pairs(ref, ref, _rev_score, progress=False))
    res = ae.evaluate_alpacaeval(ref, ref, _rev_score, progress=False)
    assert res["win_rate"] == 50 and math.isnan(res["length_controlled_winrate"]) and res["lc_glm"] is None


def test_config_name_judge_goes_through_alpaca_eval_evaluate(tmp_path):
    """The cluster path (an annotator config name) runs alpaca_eval.main.evaluate; a stand-in
    Annotator class replaces the GPT-4 annotator so the wiring is checked offline."""
    seen = {}

    class StandIn:
        def __init__(self, annotators_config, **kwargs):
            seen["config"] = annotators_config

        def annotate_head2head(self, outputs_1, outputs_2, **kwargs):
            judge = ScoreJudge(_rev_score)
            return [
                {
                    "instruction": a["instruction"],
                    "output_1": a["output"],
                    "generator_1": a["generator"],
                    "output_2": b["output"],
                    "generator_2": b["generator"],
                    "annotator": "stand-in",
                    "preference": judge.preference(a["instruction"], a["output"], b["output"]),
                }
                for a, b in zip(outputs_1.to_dict("records"), outputs_2.to_dict("records"))
            ]

    res = ae.evaluate_alpacaeval(
        FIX / "model_outputs.json",
        FIX / "reference_outputs.json",
        "weighted_alpaca_eval_gpt4_turbo",
        output_dir=tmp_path,
        alpaca_eval_kwargs={"Annotator": StandIn},
    )
    assert seen["config"] == "weighted_alpaca_eval_gpt4_turbo"
    assert res["annotator"] == "weighted_alpaca_eval_gpt4_turbo" and res["win_rate"] == pytest.approx(400 / 6)
    assert res["lc_glm"] == "length_controlled_minimal" and (tmp_path / "metrics.json").exists()
