"""Write every paper recipe (``recipes/<model>/<method>.yaml``) from one table of settings.

The 16 paper recipes differ only in model, dataset and method, so they are generated here rather than
kept by hand: a setting changed in one place changes everywhere, and ``tests/test_recipes.py`` fails
if a committed recipe drifts from what this script writes. Run from anywhere:

    .venv/bin/python recipes/generate.py          # rewrite the files
    .venv/bin/python recipes/generate.py --check  # exit 1 if any file differs

Where each value comes from is written next to it in the YAML. "Paper" is section 5.1 ("Implementation
details") of the RPO paper; "SimPO" is princeton-nlp/SimPO, ``training_configs/*-instruct-simpo*.yaml``
at commit 3e9c4cc (the configs published with the datasets the paper trains on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from anywhere, installed or not

from rpo.core.methods import METHODS as REGISTRY  # noqa: E402  (the one method registry)
from rpo.io import atomic_write_text  # noqa: E402

# model folder -> (Hub model, Hub dataset, SimPO config file, SimPO beta, SimPO gamma/beta)
MODELS = {
    "mistral-7b-instruct": dict(
        model="mistralai/Mistral-7B-Instruct-v0.2",
        dataset="princeton-nlp/mistral-instruct-ultrafeedback",
        simpo_file="training_configs/mistral-7b-instruct-simpo.yaml",
        simpo_beta=2.5,
        gamma_beta_ratio=0.1,
    ),
    "llama-3-8b-instruct": dict(
        model="meta-llama/Meta-Llama-3-8B-Instruct",
        dataset="princeton-nlp/llama3-ultrafeedback-armorm",
        # the -v2 config is the one SimPO trained on llama3-ultrafeedback-armorm (the paper's dataset)
        simpo_file="training_configs/llama-3-8b-instruct-simpo-v2.yaml",
        simpo_beta=10.0,
        gamma_beta_ratio=0.3,
    ),
}

# Further recipe sets (issue 13), each for a few methods of the registry. Keys beyond MODELS': `methods`,
# `splits`, `loader` (what reads the dataset), `noise` (write the noise keys), `single_gpu` (one GPU, no
# DeepSpeed: per-device batch x accumulation = 64), `dtype`.
SETS = {
    # Table 3 of the final paper: MultiPref (227 human annotators, one eta each), DPO vs R-DPO
    "mistral-7b-instruct-multipref": dict(
        MODELS["mistral-7b-instruct"],
        dataset="allenai/multipref",
        methods=("dpo", "r-dpo"),
        splits=("train", "train"),  # MultiPref has one split; the recipes evaluate nothing during training
        loader="rpo.data.multipref.load_multipref (one pair per non-tie annotation, annotator = evaluator)",
        dataset_loader="multipref",
    ),
    "llama-3-8b-instruct-multipref": dict(
        MODELS["llama-3-8b-instruct"],
        dataset="allenai/multipref",
        methods=("dpo", "r-dpo"),
        splits=("train", "train"),
        loader="rpo.data.multipref.load_multipref (one pair per non-tie annotation, annotator = evaluator)",
        dataset_loader="multipref",
    ),
    # Section 5.4 (Figure 2): Qwen2.5-0.5B-Instruct on noisy copies of UltraFeedback, one or two annotators
    "qwen2.5-0.5b-instruct": dict(
        model="Qwen/Qwen2.5-0.5B-Instruct",
        dataset="HuggingFaceH4/ultrafeedback_binarized",
        methods=("dpo", "r-dpo"),
        splits=("train_prefs", "test_prefs"),
        dataset_loader="ultrafeedback",
        noise=True,
        single_gpu=True,
        dtype="float32",
    ),
}

HOLDER_GAMMA = 2.0  # Fujisawa et al. 2025, section 5: "We set beta = 0.1 and gamma = 2.0"
NOISE_EPS = 0.1  # assumed flip rate for cDPO / rDPO: the datasets' true rate is unknown
TITLES = {"dpo": "DPO (eq. 1)", "ipo": "IPO", "simpo": "SimPO", "cpo": "CPO"}

# Paper: beta = 0.01 "for DPO and its variants". Applied to all four losses, SimPO and CPO included.
BETA = 0.01
NUM_GPUS = 8
PER_DEVICE = 2  # memory plan (docs/memory_plan.md): 2 pairs per GPU fit 40 GB with checkpointing
GRAD_ACCUM = 4  # 2 x 4 x 8 GPUs = 64 = the paper's global batch


def fmt(x: float) -> str:
    """YAML float that PyYAML reads back as a float (it needs a dot: ``5e-7`` would be a string)."""
    s = repr(float(x))
    if "e" in s and "." not in s.split("e")[0]:
        m, e = s.split("e")
        s = f"{m}.0e{e}"
    return s


def recipe(model_key: str, method: str) -> str:
    m = {**MODELS, **SETS}[model_key]
    entry = REGISTRY[method]
    if entry.baseline in ("cdpo", "rdpo"):
        return baseline_recipe(model_key, method)
    robust, base, name = entry.robust, entry.loss, entry.label
    smoothed, holder = entry.baseline == "ls", entry.baseline == "holder"
    gamma = m.get("gamma_beta_ratio", 0.0) * BETA  # only read for SimPO (the sets without it have no SimPO recipe)
    L = []
    add = L.append
    add(f"# {name} on {m['model']} ({m['dataset']}): the RPO paper's setting, section 5.1.")
    if holder:
        what = "Hölder-DPO (Fujisawa et al. 2025, arXiv 2505.17859, Prob. (12)), through the same RobustTrainer"
    elif smoothed:
        what = f"Label-smoothed {TITLES[base]} (the final paper's 'w/ LS' baseline), through the same RobustTrainer"
    elif robust:
        what = f"Robust {TITLES[base]} (Algorithm 1, eqs. 4-7)"
    else:
        what = f"Plain {TITLES[base]} baseline (Table 1), through the same RobustTrainer"
    add(f"# {what}.")
    if m.get("single_gpu"):
        add("# Launch on one GPU (a 0.5B model needs no sharding), from the repository root:")
        add(f"#   python -m rpo.training.launch recipes/{model_key}/{method}.yaml")
    else:
        add("# Launch on 8 GPUs (8 x 40 GB in the paper), from the repository root:")
        add(
            f"#   accelerate launch --config_file recipes/accelerate/zero3.yaml -m rpo.training.launch recipes/{model_key}/{method}.yaml"
        )
    add("# Any key can be overridden on the command line after the recipe, e.g. `--learning_rate 3.0e-7`.")
    add("# Generated by recipes/generate.py: edit that file and rerun it, not this one.")
    add("")
    L += head(m)
    add(f"pref_loss: {base}")
    add(f"robust: {'true' if robust else 'false'}")
    if smoothed:
        add("baseline: ls")
        add(
            "# Label smoothing: eq. 5 with w fixed at 1 - ls_eps instead of the E-step's posterior (rpo.core.objectives)."
        )
        add("# The final paper does not state its rate; ls_eps: null is 1 - eta0 = 0.1, RPO's objective at")
        add("# initialisation, so the comparison with the R- recipe isolates what the E-step adds.")
        add("ls_eps: null")
        add("eta0: 0.9  # only sets the default rate 1 - eta0")
        add("objective: gibbs  # the same M-step objective as the R- recipes")
    if holder:
        add("baseline: holder")
        add(f"holder_gamma: {fmt(HOLDER_GAMMA)}  # Hölder-DPO's default (its section 5: 'gamma = 2.0')")
        add("# Hölder-DPO's own runs used beta 0.1; here the RPO paper's beta, as for its other DPO variants.")
    add(f"beta: {BETA}  # paper: beta = 0.01 'for DPO and its variants' (applied to all four losses)")
    if base == "simpo":
        add(
            f"gamma: {fmt(gamma)}  # SimPO margin = SimPO's gamma/beta ratio {m['gamma_beta_ratio']} ({m['simpo_file']})"
            f" x the paper's beta {BETA};"
        )
        add(
            f"#   SimPO's own run used beta {m['simpo_beta']}, gamma {m['simpo_beta'] * m['gamma_beta_ratio']:g}: SimPO's README says"
            " the ratio is the quantity that transfers across beta"
        )
    if base == "cpo":
        add("cpo_alpha: 1.0  # Table 1: the NLL term -log pi(y_w|x) has weight 1 (also TRL's CPOConfig default)")
    if robust:
        add("eta0: 0.9  # paper: initial reliability 0.9 (Table 3's best)")
        add("ema_alpha: 0.1  # paper: 'decay rate alpha = 0.1' (Table 3's best EMA momentum, eq. 7)")
        add("# Choice: per-batch EMA updates (Algorithm 1, eq. 7). The paper's text says eta was 'updated via the")
        add("# E-step after the training epoch was complete', but with one epoch that update would never be used,")
        add("# and Table 3 shows results moving with the EMA alpha, which only acts under per-batch updates.")
        add("# `eta_update: epoch` gives the text's version (full E-step, eq. 6, at each epoch end).")
        add("eta_update: batch")
        add("objective: gibbs  # eq. 5 as written")
    if m.get("noise"):
        add("")
        add("# ---- noise (rpo.training.noisy.RecipeArguments): section 5.4's noisy copies of the training split ----")
        add("# The dataset's own (GPT-4) labels are the truth; the paper-qwen05 profile passes the layout, rate and")
        add(
            "# seed of each run. single: one annotator at noise_rate; two: two full copies, a1 clean, a2 at noise_rate."
        )
        add("noise_layout: single")
        add("noise_rate: 0.0")
        add("noise_kind: symmetric  # bt needs reward margins, which the loader does not give")
        add("noise_seed: 0")
    L += common_tail(model_key, method)
    return "\n".join(L) + "\n"


def baseline_recipe(model_key: str, method: str) -> str:
    m = MODELS[model_key]
    baseline = REGISTRY[method].baseline
    title = {
        "cdpo": "cDPO (conservative DPO: fixed weights w = 1 - eps)",
        "rdpo": "rDPO (Chowdhury et al. 2024: unbiased DPO under a known flip rate eps; not RPO's R-DPO)",
    }[baseline]
    L = [
        f"# {title} on {m['model']} ({m['dataset']}).",
        "# A known-noise baseline beyond the paper's Table 2, same settings as the paper's DPO recipe.",
        "# Launch on 8 GPUs (8 x 40 GB in the paper), from the repository root:",
        f"#   accelerate launch --config_file recipes/accelerate/zero3.yaml -m rpo.training.launch recipes/{model_key}/{method}.yaml",
        "# Any key can be overridden on the command line after the recipe, e.g. `--noise_eps 0.2`.",
        "# Generated by recipes/generate.py: edit that file and rerun it, not this one.",
        "",
    ]
    L += head(m)
    L += [
        "pref_loss: dpo",
        "robust: false",
        f"baseline: {baseline}",
        f"noise_eps: {NOISE_EPS}  # assumed: the flip rate of these AI-labelled datasets is unknown",
        f"beta: {BETA}  # paper: beta = 0.01 for DPO",
    ]
    L += common_tail(model_key, method)
    return "\n".join(L) + "\n"


def head(m: dict) -> list[str]:
    train, test = m.get("splits", ("train", "test"))
    loader = m.get("loader", "rpo.data.loaders.load_ultrafeedback")
    dtype = (
        "dtype: float32  # fp32 master weights without DeepSpeed (bf16 weights would lose lr-5e-7 updates); bf16 compute"
        if m.get("dtype") == "float32"
        else "dtype: bfloat16  # weights loaded in bf16 (alignment-handbook practice); DeepSpeed keeps fp32 master copies"
    )
    return [
        "# ---- model (trl.ModelConfig) ----",
        f"model_name_or_path: {m['model']}",
        dtype,
        "attn_implementation: sdpa  # SimPO used flash_attention_2 (needs the flash-attn package); sdpa needs nothing extra",
        "",
        f"# ---- data (trl.ScriptArguments); loaded by {loader} ----",
        f"dataset_name: {m['dataset']}",
        f"dataset_train_split: {train}",
        f"dataset_test_split: {test}",
        *(
            [f"dataset_loader: {m['dataset_loader']}  # also reads a local copy in the dataset's own layout"]
            if m.get("dataset_loader")
            else []
        ),
        "",
        "# ---- method (rpo.training.RobustConfig) ----",
    ]


def common_tail(model_key: str, method: str) -> list[str]:
    single = {**MODELS, **SETS}[model_key].get("single_gpu", False)
    per_device, accum, gpus = (8, 8, 1) if single else (PER_DEVICE, GRAD_ACCUM, NUM_GPUS)
    L = []
    add = L.append
    add("")
    add("# ---- optimisation ----")
    add("num_train_epochs: 1  # paper")
    add("optim: adamw_torch  # paper: AdamW; SimPO: adamw_torch")
    add(f"learning_rate: {fmt(5e-7)}  # paper: peak lr 5e-7")
    add("lr_scheduler_type: cosine  # paper")
    add("warmup_steps: 0.1  # a ratio when < 1 (transformers 5); SimPO: warmup_ratio 0.1")
    if single:
        add(f"per_device_train_batch_size: {per_device}  # one GPU; the fused LM head keeps (B, T, V) logits out")
    else:
        add(f"per_device_train_batch_size: {per_device}  # SimPO: 2; memory plan: fits 40 GB with checkpointing")
    add(
        f"gradient_accumulation_steps: {accum}  # {per_device} x {accum} x {gpus} GPU{'s' if gpus > 1 else ''} = "
        f"{per_device * accum * gpus} = paper's global batch"
    )
    add("per_device_eval_batch_size: 4  # SimPO")
    add(
        "max_length: 2048  # SimPO (prompt + completion). SimPO's max_prompt_length 1800 has no DPOConfig field in TRL 1.16"
    )
    add("truncation_mode: keep_start  # TRL default")
    add("bf16: true  # SimPO; A800s support bf16")
    add("activation_checkpointing: true  # SimPO: gradient_checkpointing (renamed in transformers 5); see memory plan")
    add("activation_checkpointing_kwargs:")
    add("  use_reentrant: false  # SimPO")
    add("seed: 42  # SimPO")
    add("")
    add("# ---- bookkeeping ----")
    add(f"output_dir: outputs/{model_key}/{method}")
    add("logging_steps: 5  # SimPO")
    add("save_strategy: epoch")
    add("save_only_model: false  # keep optimizer and RPO state (eta) so a run can resume")
    add("report_to: none")
    return L


def all_recipes() -> dict[Path, str]:
    out = {HERE / k / REGISTRY[m].recipe: recipe(k, m) for k in MODELS for m in REGISTRY}
    out.update({HERE / k / REGISTRY[m].recipe: recipe(k, m) for k, spec in SETS.items() for m in spec["methods"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if a file differs")
    args = ap.parse_args(argv)
    stale = []
    for path, text in all_recipes().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            atomic_write_text(path, text)
    for p in stale:
        print(("differs: " if args.check else "wrote: ") + str(p.relative_to(HERE.parent)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
