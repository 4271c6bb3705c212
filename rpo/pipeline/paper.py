"""The paper profiles' training step: one ``rpo.training.launch`` job per (config, seed), through the
profile's accelerate + DeepSpeed command, on the recipe of the config's method (:mod:`rpo.core.methods`)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from rpo import paths
from rpo.core.methods import from_config
from rpo.pipeline.spec import DEFAULTS, TOY_ONLY


def output_dir(profile: str, cfg: dict, seed: int) -> str:
    """Where one paper training writes (relative to the project root)."""
    return f"outputs/{profile}/{from_config(cfg).key}-{cfg['layout']}-n{cfg['noise']}-s{seed}"


def launch_command(train_command: str, paper_model: str, profile: str, cfg: dict, seed: int) -> list[str]:
    """The command line of one training: ``train_command`` with its ``{recipe}`` slot filled with
    ``recipes/<paper_model>/<method>.yaml``, and the config's RPO and noise settings as overrides.

    Noise (section 5.4): the config's ``layout`` and ``noise`` relabel the recipe's training split
    (:mod:`rpo.training.noisy`; ``single`` at noise 0 is the dataset's own labels), drawn with the run's
    seed; the truth lands in the run's ``noise_truth.json``. The known-noise baselines (cDPO, rDPO) are told
    the injected rate, as in the toy study; at noise 0 they keep their recipe's assumed rate."""
    toy_only = {k: cfg[k] for k in TOY_ONLY if k in cfg and cfg[k] != DEFAULTS[k]}
    if toy_only:
        raise ValueError(f"config keys {toy_only} are toy-world settings; a paper recipe trains on its dataset")
    method = from_config(cfg)
    recipe = f"recipes/{paper_model}/{method.recipe}"
    noise = ["--noise_layout", cfg["layout"], "--noise_rate", str(cfg["noise"]), "--noise_seed", str(seed)]
    if method.baseline in ("cdpo", "rdpo") and cfg["noise"] > 0:
        noise += ["--noise_eps", str(min(cfg["noise"], 0.499))]
    return (
        shlex.split(train_command.format(recipe=recipe))
        + noise
        + [
            "--seed",
            str(seed),
            "--eta0",
            str(cfg["eta0"]),
            "--ema_alpha",
            str(cfg["alpha"]),
            "--eta_update",
            cfg["eta_update"],
            "--objective",
            cfg["objective"],
            "--output_dir",
            output_dir(profile, cfg, seed),
        ]
    )


def node_gpus(env=None) -> int | None:
    """The GPUs this job may use: ``SLURM_GPUS_ON_NODE`` inside a Slurm job that was given GPUs, else the
    entries of ``CUDA_VISIBLE_DEVICES``; ``None`` when neither says (the accelerate config's count stands)."""
    env = os.environ if env is None else env
    n = env.get("SLURM_GPUS_ON_NODE", "").strip()
    if n.isdigit() and int(n) > 0:
        return int(n)
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip() not in ("", "-1")]
    return len(visible) or None


def on_node_gpus(cmd: list[str], env=None, root=None) -> list[str]:
    """``accelerate launch`` on the node's GPUs (:func:`node_gpus`) with the recipe's global batch kept:
    ``--num_processes N`` and ``--gradient_accumulation_steps`` rescaled so that per-device batch x
    accumulation x processes stays what the recipe and the accelerate config give (2 x 4 x 8 = 64, section
    5.1). Unchanged when the count is unknown, equal to the config's, or already on the command line."""
    n = node_gpus(env)
    if n is None or cmd[:2] != ["accelerate", "launch"] or "--num_processes" in cmd or "--config_file" not in cmd:
        return cmd
    import yaml

    root = paths.root() if root is None else Path(root)
    acc = yaml.safe_load((root / cmd[cmd.index("--config_file") + 1]).read_text())
    recipe_path = next(a for a in cmd[cmd.index("-m") + 2 :] if a.endswith((".yaml", ".yml")))
    recipe = yaml.safe_load((root / recipe_path).read_text())
    procs = int(acc.get("num_processes", 1))
    if n == procs:
        return cmd
    per_device, accum = int(recipe["per_device_train_batch_size"]), int(recipe.get("gradient_accumulation_steps", 1))
    global_batch = per_device * accum * procs
    if global_batch % (per_device * n):
        raise ValueError(
            f"{n} GPUs on this node cannot keep {recipe_path}'s global batch {global_batch} "
            f"({per_device} per device x {accum} accumulation x {procs} processes): request a divisor of it"
        )
    at = 2  # accelerate's own options go before the script
    return [
        *cmd[:at],
        "--num_processes",
        str(n),
        *cmd[at:],
        "--gradient_accumulation_steps",
        str(global_batch // (per_device * n)),
    ]


def launch(train_command: str, paper_model: str, profile: str, cfg: dict, seed: int) -> dict:
    """Run one training from the project root, on the GPUs of the node it runs on (:func:`on_node_gpus`);
    returns the record the tables keep: its output folder and, from its summary, each annotator's estimated
    (R- methods) and true reliability (:func:`reliability_metrics`)."""
    cmd = on_node_gpus(launch_command(train_command, paper_model, profile, cfg, seed))
    print(" ".join(cmd))
    subprocess.run(cmd, cwd=paths.root(), check=True)
    return {
        "output_dir": output_dir(profile, cfg, seed),
        **reliability_metrics(paths.root() / output_dir(profile, cfg, seed), robust=from_config(cfg).robust),
    }


def reliability_metrics(folder, robust: bool = True) -> dict:
    """``eta_hat_k`` / ``eta_true_k`` (k = 1, 2, ... in the run's annotator order) from a finished run's
    ``train_summary.json`` (Figure 2's metrics), and their mean and (population) standard deviation over the
    annotators, ``eta_hat_mean`` / ``eta_hat_std`` (Figure 3's); ``eta_hat_*`` only for an R- method (a plain
    one never moves eta), ``eta_true_k`` only where noise was injected."""
    import json

    path = Path(folder) / "train_summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    eta = summary.get("eta") or []
    out = {f"eta_hat_{k}": v for k, v in enumerate(eta, start=1)} if robust else {}
    if robust and eta:  # Figure 3's summary over many annotators (MultiPref)
        mean = sum(eta) / len(eta)
        out.update(eta_hat_mean=mean, eta_hat_std=(sum((v - mean) ** 2 for v in eta) / len(eta)) ** 0.5)
    out.update({f"eta_true_{k}": v for k, v in enumerate(summary.get("eta_true") or [], start=1) if v is not None})
    return out
