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
# `rpo.pipeline.provenance.write_metrics`. `rpo.report` reads it.
#
# A config (see `rpo.pipeline.profiles.DEFAULTS`): `method` (dpo, ipo, simpo, cpo; cdpo, rdpo), `robust` (the R-
# version, Algorithm 1), `layout` (single: one annotator at `noise`; two: annotator 1 clean, annotator 2
# at `noise`, section 5.4), `eta0`, `alpha` (eq. 7), `eta_update` (batch: eq. 7; epoch: eq. 6),
# `objective` (gibbs: eq. 5; weighted), and `seeds`; on the toy world also `labels` (noisy; true: the
# ceiling; filtered: the flipped pairs removed), `dial` (today's world or a level of the witness-dial family,
# issue 12) and `beta` (None: the profile's).
#
# Metrics per (config, seed), toy world (the oracle is the judge): `clean_acc` (clean preference
# accuracy on test pairs), `win_rate` against the reference policy on held-out prompts, `mean_reward`,
# `auroc_w` (AUROC of 1 - w for flagging flipped labels, robust methods), `eta_hat_k` / `eta_true_k` per
# annotator, and the eta trajectory. `lc_win_rate` is left to the evaluation harness (05_evaluate).

# %% tags=["parameters"]
profile = "toy"
grid = "full"  # saved policies go to <policy_dir>/<profile>[-<grid>] (rpo.paths.policy_path)
configs = [
    {
        "method": "dpo",
        "robust": True,
        "layout": "single",
        "noise": 0.2,
        "eta0": 0.9,
        "alpha": 0.1,
        "eta_update": "batch",
        "objective": "gibbs",
        "labels": "noisy",
        "dial": "today",
        "beta": None,
        "seeds": [0],
    }
]
# Training settings: None keeps the default of rpo.toy.settings.TrainSettings (stated there, once);
# the pipeline passes the profile's values (rpo.pipeline.profiles).
model = None  # the policy: toy (the world's SFT reference policy) or small (SmolLM2-135M-Instruct)
beta = None  # temperature of every loss
lr = None
batch_size = None
max_steps = None  # one epoch over max_steps * batch_size freshly drawn pairs
n_test_pairs = None  # clean test pairs for clean_acc
n_heldout = None  # held-out prompts for the win rates
samples = None  # samples per held-out prompt
n_confidence = None  # training pairs re-scored by a full E-step for auroc_w
policy_dir = None  # seed-0 policies are saved here for 05_evaluate (None: rpo.paths.policies()); "": not saved
train_command = ""  # paper profiles: accelerate + DeepSpeed launch command with a {recipe} slot
paper_model = ""  # recipes/<paper_model>/<method>.yaml
run_id = ""
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import os

import torch

from rpo import paths
from rpo.pipeline.profiles import row_label
from rpo.pipeline.provenance import config_hash, write_metrics

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # the pipeline sets it per profile
# the settings as given (None: TrainSettings' default), recorded with the run
settings_params = dict(
    model=model,
    beta=beta,
    lr=lr,
    batch_size=batch_size,
    max_steps=max_steps,
    n_test_pairs=n_test_pairs,
    n_heldout=n_heldout,
    samples=samples,
    n_confidence=n_confidence,
)
params = dict(profile=profile, configs=configs, **settings_params, train_command=train_command, paper_model=paper_model)
records = []


def each_training():
    """Every (config without its seeds, seed) of this run."""
    for cfg in configs:
        c = {k: v for k, v in cfg.items() if k != "seeds"}
        for seed in cfg["seeds"]:
            yield c, seed


# %% [markdown]
# ## Paper profiles: launch through accelerate + DeepSpeed ZeRO-3
# Each (config, seed) is one `rpo.training.launch` job on the recipe of its method
# (`rpo.pipeline.paper.launch`); the evaluation of the saved policy is `05_evaluate`'s job.

# %%
if train_command:
    from rpo.pipeline.paper import launch

    for c, seed in each_training():
        records.append({"config": {**c, "seed": seed}, "metrics": launch(train_command, paper_model, profile, c, seed)})

# %% [markdown]
# ## Toy and small profiles: train in this process
# `rpo.toy.study.train_and_measure` annotates a fresh draw of the world's pairs with the config's annotators,
# trains from the SFT reference policy, and measures the policy against the hidden truth.

# %%
if not train_command:
    from rpo.toy.settings import TrainSettings
    from rpo.toy.study import summary, train_and_measure
    from rpo.toy.world import build_world, world_config

    worlds = {}  # a config's `dial` names its world (today's, or a level of the witness-dial family)
    settings = TrainSettings.from_params(**settings_params)
    print(settings)
    policy_root = paths.policies() if policy_dir is None else policy_dir
    for c, seed in each_training():
        keep = (
            paths.policy_path(policy_root, profile, grid, config_hash(c), seed) if policy_root and seed == 0 else None
        )
        if c["dial"] not in worlds:
            worlds[c["dial"]] = world = build_world(world_config(c["dial"]), progress=False)
            print(f"dial {c['dial']}: world {world.path.name}, {len(world.train)} train / {len(world.test)} test pairs")
        m = train_and_measure(worlds[c["dial"]], c, seed, settings, save_policy=keep)
        print(
            row_label(c),
            f"dial {c['dial']}",
            c["layout"],
            c["noise"],
            "seed",
            seed,
            summary(m),
        )
        records.append({"config": {**c, "seed": seed}, "metrics": m})

# %%
write_metrics(metrics_path or None, params, records)
print(f"{len(records)} trainings recorded" + (f" in {metrics_path}" if metrics_path else ""))
