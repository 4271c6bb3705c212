# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Evaluate: AlpacaEval 2 and Arena-Hard harnesses on the trained policies
#
# The paper's Table 2 is measured with AlpacaEval 2 (LC and raw win rate against GPT-4 Turbo's answers)
# and Arena-Hard v0.1 (win rate against gpt-4-0314, judged by GPT-4). Here the same harnesses
# (`rpo.evaluate`) run offline: the *reference policy* plays the baseline, the toy world's oracle is the
# judge (`ScoreJudge(rpo.world.score)`), and the held-out prompts are the instructions / questions. On a
# cluster, `judge="weighted_alpaca_eval_gpt4_turbo"` and `OpenAIJudge()` take the oracle's place.
#
# The policies are the seed-0 policies of Table 2's configurations, saved by `02_train`.

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # which grid's policies (02_train saves them under policy_dir/<profile>[-<grid>])
policy_dir = "../.cache/policies"
bench_dir = "../.cache/bench"  # AlpacaEval outputs and the arena-hard-auto v0.1 folder
n_questions = 200
bootstrap_rounds = 100
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Markdown, display
from transformers import AutoModelForCausalLM, AutoTokenizer

from rpo.evaluate import formats
from rpo.evaluate.alpacaeval import evaluate_alpacaeval
from rpo.evaluate.arenahard import evaluate_arenahard
from rpo.evaluate.generate import generate_alpacaeval, generate_arenahard
from rpo.evaluate.judges import ScoreJudge
from rpo.models import build_toy_tokenizer, prepare_small
from rpo.pipeline import config_hash, run_dir_of, write_metrics
from rpo.profiles import get_profile, method_label
from rpo.world import WorldConfig, build_world, score

torch.set_num_threads(1)
world = build_world(WorldConfig(), progress=False)
judge = ScoreJudge(score, name="oracle")
prompts = world.heldout[:n_questions]
bench = Path(bench_dir) / run_dir_of(profile, grid, "").name
questions = [{"question_id": f"q{i:04d}", "category": "toy", "cluster": "toy",
              "turns": [{"content": p}]} for i, p in enumerate(prompts)]
formats.write_jsonl(bench / "arena-hard-v0.1" / "question.jsonl", questions)


def load(path):
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    # toy policies: the char tokenizer is rebuilt locally (deterministic); others saved theirs
    tok = AutoTokenizer.from_pretrained(path) if (Path(path) / "tokenizer_config.json").exists() \
        else build_toy_tokenizer()
    tok.chat_template = None  # the toy world's prompts are raw text, as the policies were trained on them
    return model, tok


def answer(name, model, tok):
    """Both benchmarks' answer files for one model (skipped where already written: resumable)."""
    recs = generate_alpacaeval(model, tok, prompts, bench / "alpacaeval" / f"{name}.json", generator=name,
                               preset="alpacaeval-mistral", max_new_tokens=10)
    generate_arenahard(model, tok, questions, bench / "arena-hard-v0.1" / "model_answer", model_id=name,
                       max_new_tokens=10)
    return recs


model_name = get_profile(profile, grid).model  # toy | small: the reference policy is the starting policy
ref_model, ref_tok = load(world.path / "reference" if model_name == "toy" else prepare_small())
reference = answer("reference", ref_model, ref_tok)

# %%
table2 = next(s for s in get_profile(profile, grid).studies if s.name == "table2")
rows, missing = [], []
for cfg in table2.configs:
    name = method_label(cfg)
    path = Path(policy_dir) / run_dir_of(profile, grid, "").name / f"{config_hash(cfg)}-s0"
    if not (path / "config.json").exists():
        missing.append(name)
        continue
    model, tok = load(path)
    answers = answer(name, model, tok)
    ae = evaluate_alpacaeval(answers, reference, judge, progress=False)
    ah = evaluate_arenahard(bench / "arena-hard-v0.1", name, judge, baseline="reference",
                            rounds=bootstrap_rounds, progress=False)
    rows.append({"method": name, "AE2 LC (%)": ae["length_controlled_winrate"], "AE2 WR (%)": ae["win_rate"],
                 "Arena-Hard WR (%)": ah["win_rate"], "AH 95% CI": f"[{ah['ci_lower']:.1f}, {ah['ci_upper']:.1f}]",
                 "AH unusable verdicts": ah["n_missing"] + ah["n_conflict"] + ah["n_unknown"]})
result = pd.DataFrame(rows)
display(result.round(1) if len(result) else Markdown("no policies found"))
if missing:
    print("MISSING (no saved seed-0 policy; run 02_train first):", ", ".join(missing))

# %% [markdown]
# These are single-seed numbers (seed 0), against the reference policy and judged by the oracle, so they
# show the harnesses working end to end rather than the study's result: Table 2 in `results/` reports the
# same win rates for every seed with 95% intervals. The offline LC uses alpaca_eval's minimal GLM
# (no instruction-difficulty term), see `rpo/evaluate/alpacaeval.py`.

# %%
write_metrics(metrics_path or None, {"profile": profile, "n_questions": n_questions},
              {"rows": rows, "missing": missing})
