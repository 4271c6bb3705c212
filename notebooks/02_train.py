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
configs = [{"method": "dpo", "robust": True, "layout": "single", "noise": 0.2, "eta0": 0.9, "alpha": 0.1,
            "eta_update": "batch", "objective": "gibbs", "seeds": [0]}]
beta = 0.1
lr = 1e-3
epochs = 1
batch_size = 16
n_train_pairs = 256  # pairs drawn from the world's training split (before annotation)
n_test_pairs = 200  # clean test pairs for clean_acc
n_heldout = 100  # held-out prompts for the win rate
train_command = ""  # paper profiles: accelerate + DeepSpeed launch command with a {recipe} slot
paper_model = ""  # recipes/<paper_model>/<method>.yaml
run_id = ""
metrics_path = ""  # set by the pipeline; empty: nothing written

# %%
import os
import random
import shlex
import subprocess
import tempfile
from pathlib import Path

import torch

from rpo.pipeline import write_metrics
from rpo.profiles import method_label

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
params = dict(profile=profile, configs=configs, beta=beta, lr=lr, epochs=epochs, batch_size=batch_size,
              n_train_pairs=n_train_pairs, n_test_pairs=n_test_pairs, n_heldout=n_heldout,
              train_command=train_command, paper_model=paper_model)
records = []


# %% [markdown]
# ## Paper profiles: launch through accelerate + DeepSpeed ZeRO-3
# Each (config, seed) is one `rpo.train` job on the recipe of its method; the evaluation of the saved
# policy is `05_evaluate`'s job.

# %%
def launch(cfg, seed):
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

# %%
if not train_command:
    from rpo import RobustConfig, RobustTrainer
    from rpo.data import public_view, single_annotator, true_reliability, two_annotators
    from rpo.losses import NEEDS_REFERENCE
    from rpo.metrics import flag_auroc, generation_quality, preference_accuracy
    from rpo.world import WorldConfig, build_world

    world = build_world(WorldConfig(), progress=False)
    test_pairs = world.test[:n_test_pairs]
    heldout = world.heldout[:n_heldout]
    print(f"world {world.path.name}: {len(world.train)} train / {len(world.test)} test pairs")


def train_one(cfg, seed):
    """Annotate, train, measure one (config, seed). The policy starts from the SFT reference."""
    pool = random.Random(seed).sample(world.train, min(n_train_pairs, len(world.train)))
    if cfg["layout"] == "single":
        data = single_annotator(pool, cfg["noise"], seed=seed)
    else:
        data = two_annotators(pool, cfg["noise"], seed=seed)
    base = "dpo" if cfg["method"] in ("cdpo", "rdpo") else cfg["method"]
    args = RobustConfig(
        output_dir=tempfile.mkdtemp(prefix="rpo-train-"), pref_loss=base, robust=cfg["robust"],
        baseline=cfg["method"] if cfg["method"] in ("cdpo", "rdpo") else None,
        noise_eps=min(max(cfg["noise"], 1e-3), 0.499), eta0=cfg["eta0"], ema_alpha=cfg["alpha"],
        eta_update=cfg["eta_update"], objective=cfg["objective"], beta=beta, learning_rate=lr,
        num_train_epochs=epochs, per_device_train_batch_size=batch_size, per_device_eval_batch_size=64,
        seed=seed, use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no",
        report_to=[], logging_steps=1, disable_tqdm=True)
    policy, tok = world.load_reference()
    reference, _ = world.load_reference()
    trainer = RobustTrainer(policy, reference if base in NEEDS_REFERENCE else None, args=args,
                            train_dataset=public_view(data), processing_class=tok)
    trainer.train()
    policy.eval()
    m = {"clean_acc": preference_accuracy(policy, tok, test_pairs,
                                          reference=reference if base in NEEDS_REFERENCE else None)}
    gen = generation_quality(policy, tok, heldout, reference=reference, seed=seed)
    m.update(win_rate=gen["win_rate"], mean_reward=gen["mean_reward"], exact=gen["exact"])
    truth = true_reliability(data)
    for k, name in enumerate(trainer.annotator_names, start=1):
        m[f"eta_true_{k}"] = truth[name]
        if cfg["robust"]:
            m[f"eta_hat_{k}"] = float(trainer.eta[k - 1])
            m[f"eta_trajectory_{k}"] = [h[f"eta/{name}"] for h in trainer.state.log_history if f"eta/{name}" in h]
    if cfg["robust"]:
        w = trainer.label_confidences(public_view(data)).numpy()
        m["auroc_w"] = flag_auroc(w, data["is_flipped"])
        m["mean_w"] = float(w.mean())
    return m


# %%
if not train_command:
    for cfg in configs:
        for seed in cfg["seeds"]:
            c = {k: v for k, v in cfg.items() if k != "seeds"}
            m = train_one(c, seed)
            print(method_label(c), c["layout"], c["noise"], "seed", seed,
                  {k: round(v, 3) for k, v in m.items() if isinstance(v, float)})
            records.append({"config": {**c, "seed": seed}, "metrics": m})

# %%
write_metrics(metrics_path or None, params, records)
print(f"{len(records)} trainings recorded" + (f" in {metrics_path}" if metrics_path else ""))
