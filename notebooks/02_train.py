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
# # 02 · Train: one run = several configurations x seeds
#
# One execution of this notebook trains every `(config, seed)` in `configs` (the pipeline packs a few
# configurations per run so that the kernel start and the TRL import, ~10 s, are paid once), measures
# each trained policy, and writes one metrics JSON (parameters, git commit, package versions) through
# `rpo.pipeline.write_metrics`. `rpo.tables` reads it.
#
# A config (see `rpo.profiles.DEFAULTS`): `method` (dpo, ipo, simpo, cpo; cdpo, rdpo), `robust` (the R-
# version, Algorithm 1), `layout` (single: one annotator at `noise`; two: annotator 1 clean, annotator 2
# at `noise`, section 5.4), `eta0`, `alpha` (eq. 7), `eta_update` (batch: eq. 7; epoch: eq. 6),
# `objective` (gibbs: eq. 5; weighted), and `seeds`.
#
# Metrics per (config, seed), toy world (the oracle is the judge): `clean_acc` (clean preference
# accuracy on test pairs), `win_rate` against the reference policy on held-out prompts, `mean_reward`,
# `auroc_w` (AUROC of 1 - w for flagging flipped labels, robust methods), `eta_hat_k` / `eta_true_k` per
# annotator, and the eta trajectory. `lc_win_rate` is left to the evaluation harness (05_evaluate).

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # saved policies go to policy_dir/<profile>[-<grid>]
configs = [{"method": "dpo", "robust": True, "layout": "single", "noise": 0.2, "eta0": 0.9, "alpha": 0.1,
            "eta_update": "batch", "objective": "gibbs", "seeds": [0]}]
model = "toy"  # the policy: toy (the world's SFT reference policy) or small (SmolLM2-135M-Instruct)
beta = 0.5  # temperature of every loss on the toy model (paper: 0.01 on 7B models)
lr = 0.0001
batch_size = 32
max_steps = 150  # one epoch over max_steps * batch_size freshly drawn pairs
n_test_pairs = 273  # clean test pairs for clean_acc
n_heldout = 200  # held-out prompts for the win rates
samples = 2  # samples per held-out prompt
n_confidence = 1024  # training pairs re-scored by a full E-step for auroc_w
policy_dir = "../.cache/policies"  # seed-0 policies are saved here for 05_evaluate; empty: not saved
train_command = ""  # paper profiles: accelerate + DeepSpeed launch command with a {recipe} slot
paper_model = ""  # recipes/<paper_model>/<method>.yaml
run_id = ""
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import os
import shlex
import subprocess
from pathlib import Path

import torch

from rpo.pipeline import write_metrics
from rpo.profiles import method_label

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # the pipeline sets it per profile
params = dict(profile=profile, configs=configs, model=model, beta=beta, lr=lr, batch_size=batch_size, max_steps=max_steps,
              n_test_pairs=n_test_pairs, n_heldout=n_heldout, samples=samples, n_confidence=n_confidence,
              train_command=train_command, paper_model=paper_model)
records = []


# %% [markdown]
# ## Paper profiles: launch through accelerate + DeepSpeed ZeRO-3
# Each (config, seed) is one `rpo.train` job on the recipe of its method; the evaluation of the saved
# policy is `05_evaluate`'s job.

# %%
def launch(cfg, seed):
    if cfg["noise"] > 0 or cfg["layout"] != "single":
        # the Hub datasets must be relabelled (rpo.data.apply_layout) before a recipe can train on them;
        # refusing keeps such a cell "failed" in the tables instead of silently unflipped
        raise NotImplementedError("noise injection into the paper datasets is not wired into rpo.train yet")
    recipe = f"recipes/{paper_model}/{method_label(cfg).lower()}.yaml"
    out = f"outputs/{profile}/{method_label(cfg).lower()}-{cfg['layout']}-n{cfg['noise']}-s{seed}"
    cmd = shlex.split(train_command.format(recipe=recipe)) + [
        "--seed", str(seed), "--eta0", str(cfg["eta0"]), "--ema_alpha", str(cfg["alpha"]),
        "--eta_update", cfg["eta_update"], "--objective", cfg["objective"], "--output_dir", out]
    print(" ".join(cmd))
    subprocess.run(cmd, cwd=Path.cwd().parent, check=True)  # this notebook runs in notebooks/
    return {"output_dir": out}


if train_command:
    for cfg in configs:
        for seed in cfg["seeds"]:
            c = {k: v for k, v in cfg.items() if k != "seeds"}
            records.append({"config": {**c, "seed": seed}, "metrics": launch(c, seed)})

# %% [markdown]
# ## Toy and small profiles: train in this process
# `rpo.study.train_and_measure` annotates a fresh draw of the world's pairs with the config's annotators,
# trains from the SFT reference policy, and measures the policy against the hidden truth.

# %%
if not train_command:
    from rpo.pipeline import config_hash, run_dir_of
    from rpo.study import TrainSettings, train_and_measure
    from rpo.world import WorldConfig, build_world

    world = build_world(WorldConfig(), progress=False)
    settings = TrainSettings(model=model, beta=beta, lr=lr, batch_size=batch_size, max_steps=max_steps,
                             n_test_pairs=n_test_pairs, n_heldout=n_heldout, samples=samples,
                             n_confidence=n_confidence)
    print(f"world {world.path.name}: {len(world.train)} train / {len(world.test)} test pairs; {settings}")
    for cfg in configs:
        c = {k: v for k, v in cfg.items() if k != "seeds"}
        for seed in cfg["seeds"]:
            keep = None
            if policy_dir and seed == 0:
                keep = Path(policy_dir) / run_dir_of(profile, grid, "").name / f"{config_hash(c)}-s{seed}"
            m = train_and_measure(world, c, seed, settings, save_policy=keep)
            print(method_label(c), c["layout"], c["noise"], "seed", seed,
                  {k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
            records.append({"config": {**c, "seed": seed}, "metrics": m})

# %%
write_metrics(metrics_path or None, params, records)
print(f"{len(records)} trainings recorded" + (f" in {metrics_path}" if metrics_path else ""))
