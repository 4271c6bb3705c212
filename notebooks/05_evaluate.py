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
# judge (`ScoreJudge(rpo.toy.world.score)`), and the held-out prompts are the instructions / questions. On a
# cluster, `judge="weighted_alpaca_eval_gpt4_turbo"` and `OpenAIJudge()` take the oracle's place.
#
# The policies are the seed-0 policies of Table 2's configurations, saved by `02_train`.

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # which grid's policies (02_train saves them under <policy_dir>/<profile>[-<grid>])
policy_dir = None  # None: rpo.paths.policies(), where 02_train saves them
bench_dir = None  # AlpacaEval outputs and the arena-hard-auto v0.1 folder (None: rpo.paths.bench())
n_questions = 200
bootstrap_rounds = 100
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import pandas as pd
import torch
from IPython.display import Markdown, display

from rpo import paths
from rpo.evaluate.judges import ScoreJudge
from rpo.models import load_saved, prepare_small
from rpo.pipeline.profiles import get_profile, saved_policies
from rpo.pipeline.provenance import write_metrics
from rpo.toy.harness import ToyBench, evaluate_policies
from rpo.toy.world import WorldConfig, build_world, score

torch.set_num_threads(1)
world = build_world(WorldConfig(), progress=False)
bench = ToyBench(
    paths.bench_path(bench_dir or paths.bench(), profile, grid),
    world.heldout[:n_questions],
    ScoreJudge(score, name="oracle"),
)
# toy | small: the reference policy is the starting policy
model_name = get_profile(profile, grid).model
ref_model, ref_tok = load_saved(world.path / "reference" if model_name == "toy" else prepare_small(), raw_text=True)

# %%
rows, missing = evaluate_policies(
    bench,
    (ref_model.eval(), ref_tok),
    saved_policies(profile, grid, "table2", policy_root=policy_dir),
    rounds=bootstrap_rounds,
)
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
write_metrics(
    metrics_path or None, {"profile": profile, "n_questions": n_questions}, {"rows": rows, "missing": missing}
)
