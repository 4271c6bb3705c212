"""The cluster path, checked on CPU: every recipe parses into the real config classes with the paper's
settings, the accelerate configs launch what they claim (through accelerate's own launch code), the
DeepSpeed ZeRO-3 file is complete once the Trainer fills its "auto" values (and DeepSpeed's own config
class accepts it when deepspeed is installed), and ``python -m rpo.train`` trains a toy R-DPO end to end.
"""

from __future__ import annotations

import importlib.util
import json
import re
import types
from pathlib import Path

import pytest
import yaml

from rpo import paths
from rpo.core.methods import METHODS
from rpo.training.recipes import PAPER_MODELS, list_recipes, load_recipe, recipe_path

RECIPES_DIR = paths.recipes()
BASELINES = tuple(k for k, m in METHODS.items() if m.baseline)

ROOT = RECIPES_DIR.parent
ACCEL = RECIPES_DIR / "accelerate"
CPU = ["--use_cpu", "true"]  # transformers refuses bf16 without a GPU unless use_cpu is set
PAPER = [(m, meth) for m in PAPER_MODELS for meth in METHODS]
HUB = {
    "mistral-7b-instruct": ("mistralai/Mistral-7B-Instruct-v0.2", "princeton-nlp/mistral-instruct-ultrafeedback"),
    "llama-3-8b-instruct": ("meta-llama/Meta-Llama-3-8B-Instruct", "princeton-nlp/llama3-ultrafeedback-armorm"),
}
GAMMA_BETA_RATIO = {"mistral-7b-instruct": 0.1, "llama-3-8b-instruct": 0.3}  # SimPO's training_configs


def _generator():
    spec = importlib.util.spec_from_file_location("recipes_generate", RECIPES_DIR / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_recipes_exist_and_match_generator():
    assert sorted(
        p.relative_to(RECIPES_DIR).as_posix() for p in list_recipes() if p.parent.name in PAPER_MODELS
    ) == sorted(f"{m}/{meth}.yaml" for m, meth in PAPER)
    assert _generator().main(["--check"]) == 0, "a committed recipe differs from recipes/generate.py's output"


@pytest.mark.parametrize("path", list_recipes(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recipe_parses_into_real_classes(path):
    from trl import ModelConfig, ScriptArguments

    from rpo.training import RobustConfig
    from rpo.training.noisy import RecipeArguments

    script, cfg, model = load_recipe(path, CPU)
    assert type(script) is RecipeArguments and isinstance(script, ScriptArguments)  # + the noise settings
    assert type(cfg) is RobustConfig and type(model) is ModelConfig
    entry = METHODS[path.stem]  # every recipe is named after its entry of the method registry
    assert (cfg.pref_loss, cfg.robust, cfg.baseline) == (entry.loss, entry.robust, entry.baseline)
    assert cfg.method == entry
    if entry.baseline:
        assert 0 < cfg.noise_eps < 0.5
    header = path.read_text().splitlines()[:6]
    launch = [line for line in header if "rpo.training.launch" in line]
    assert launch, f"{path}: no launch command in the header comment"
    assert f"recipes/{path.parent.name}/{path.name}" in launch[0]
    for cfg_file in re.findall(r"--config_file (\S+)", "\n".join(header)):
        assert (ROOT / cfg_file).exists(), f"{path}: launch command names missing {cfg_file}"


@pytest.mark.parametrize("model_key,method", PAPER, ids=[f"{m}/{x}" for m, x in PAPER])
def test_paper_settings(model_key, method):
    script, cfg, model = load_recipe(recipe_path(model_key, method), CPU)
    raw = yaml.safe_load(recipe_path(model_key, method).read_text())
    assert (model.model_name_or_path, script.dataset_name) == HUB[model_key]
    # section 5.1
    assert cfg.num_train_epochs == 1 and cfg.optim == "adamw_torch" and cfg.lr_scheduler_type == "cosine"
    assert cfg.learning_rate == 5e-7 and cfg.beta == 0.01
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * 8 == 64
    assert raw["bf16"] is True and cfg.gradient_checkpointing and cfg.max_length == 2048 and cfg.warmup_steps == 0.1
    assert isinstance(raw["learning_rate"], float), "YAML 5e-7 without a dot is a string in PyYAML"
    if cfg.robust:
        assert (cfg.eta0, cfg.ema_alpha, cfg.eta_update, cfg.objective) == (0.9, 0.1, "batch", "gibbs")
    assert cfg.gamma == pytest.approx(GAMMA_BETA_RATIO[model_key] * 0.01 if cfg.pref_loss == "simpo" else 0.0)
    assert cfg.cpo_alpha == 1.0


def test_override_and_errors(tmp_path):
    _, cfg, _ = load_recipe(recipe_path("mistral-7b-instruct", "r-dpo"), [*CPU, "--eta0", "0.75", "--seed", "3"])
    assert (cfg.eta0, cfg.seed) == (0.75, 3)
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_path("mistral-7b-instruct", "r-dpo").read_text() + "eta_zero: 0.9\n")
    with pytest.raises(ValueError, match="eta_zero"):
        load_recipe(bad, CPU)
    with pytest.raises(ValueError, match="eta0"):  # RobustConfig's own check reaches the user
        load_recipe(recipe_path("mistral-7b-instruct", "r-dpo"), [*CPU, "--eta0", "0.3"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="r-kto"):
        recipe_path("mistral-7b-instruct", "r-kto")


# ---------------------------------------------------------------------------------------- accelerate


def _launch_args(config_file: Path):
    """What ``accelerate launch --config_file ...`` resolves, through accelerate's own code."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--config_file", str(config_file), "-m", "rpo.training.launch", "recipes/mistral-7b-instruct/r-dpo.yaml"]
    )
    args, defaults, mp_from_config = _validate_launch_command(args)
    return args, defaults, mp_from_config


def test_zero3_accelerate_config(monkeypatch):
    raw = yaml.safe_load((ACCEL / "zero3.yaml").read_text())
    assert raw["distributed_type"] == "DEEPSPEED" and raw["num_processes"] == 8 and raw["num_machines"] == 1
    ds_file = raw["deepspeed_config"]["deepspeed_config_file"]
    assert (ROOT / ds_file).resolve() == (ACCEL / "ds_zero3.json").resolve()
    # with a deepspeed_config_file, accelerate refuses these keys in its own yaml
    clash = {
        "mixed_precision",
        "zero_stage",
        "gradient_accumulation_steps",
        "gradient_clipping",
        "offload_optimizer_device",
        "offload_param_device",
        "zero3_save_16bit_model",
    }
    assert not clash & (set(raw["deepspeed_config"]) | ({"mixed_precision"} & set(raw)))

    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    monkeypatch.chdir(ROOT)  # the yaml's paths are relative to the repository root
    args, defaults, mp_from_config = _launch_args(ACCEL / "zero3.yaml")
    assert args.use_deepspeed and args.num_processes == 8
    args.deepspeed_fields_from_accelerate_config = ",".join(
        list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
    )
    _, env = prepare_deepspeed_cmd_env(args)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    plugin = DeepSpeedPlugin()  # raises if the yaml and the json disagree (accelerate's own checks)
    assert plugin.zero_stage == 3 and plugin.zero3_init_flag


def test_ddp_accelerate_config():
    args, _, _ = _launch_args(ACCEL / "ddp.yaml")
    assert args.multi_gpu and not args.use_deepspeed
    assert args.num_processes == 8 and args.mixed_precision == "bf16"


# ----------------------------------------------------------------------------------------- deepspeed


def _fill_auto(cfg, world_size=8, hidden_size=4096) -> dict:
    """ds_zero3.json with its "auto" values filled by the HF Trainer's rules
    (transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig), written out so this runs without
    deepspeed; test_ds_config_accepted_by_deepspeed checks it against the real class where it can."""
    ds = json.loads((ACCEL / "ds_zero3.json").read_text())
    z = ds["zero_optimization"]
    fills = {
        ("train_micro_batch_size_per_gpu",): cfg.per_device_train_batch_size,
        ("gradient_accumulation_steps",): cfg.gradient_accumulation_steps,
        ("train_batch_size",): world_size * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps,
        ("gradient_clipping",): cfg.max_grad_norm,
        ("bf16", "enabled"): True,  # recipe's bf16 (parsed use_cpu)
        ("zero_optimization", "reduce_bucket_size"): hidden_size * hidden_size,
        ("zero_optimization", "stage3_prefetch_bucket_size"): int(0.9 * hidden_size * hidden_size),
        ("zero_optimization", "stage3_param_persistence_threshold"): 10 * hidden_size,
    }
    for keys, value in fills.items():
        node = ds
        for k in keys[:-1]:
            node = node[k]
        if node.get(keys[-1]) == "auto":
            node[keys[-1]] = value
    assert z is ds["zero_optimization"]
    return ds


def _hf_filled(cfg, world_size=8, hidden_size=4096, steps=1000) -> dict:
    """The same, by transformers' own HfTrainerDeepSpeedConfig (needs deepspeed installed)."""
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    keys = (
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "learning_rate",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "weight_decay",
        "save_on_each_node",
        "fp16",
        "fp16_full_eval",
        "bf16",
        "bf16_full_eval",
    )
    args = types.SimpleNamespace(
        world_size=world_size, get_warmup_steps=cfg.get_warmup_steps, **{k: getattr(cfg, k) for k in keys}
    )
    args.bf16 = True
    try:  # the constructor registers a global zero-3 flag in transformers: never leak it to other tests
        hf = HfTrainerDeepSpeedConfig(json.loads((ACCEL / "ds_zero3.json").read_text()))
        hf.trainer_config_process(args)
        model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=hidden_size))
        hf.trainer_config_finalize(args, model, steps)
        return hf.config
    finally:
        unset_hf_deepspeed_config()


def test_ds_zero3_json_required_keys():
    ds = json.loads((ACCEL / "ds_zero3.json").read_text())
    z = ds["zero_optimization"]
    assert z["stage"] == 3
    assert z["offload_optimizer"]["device"] == "none" and z["offload_param"]["device"] == "none"
    assert z["stage3_gather_16bit_weights_on_model_save"] is True  # else save_model writes empty shards
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert ds[key] == "auto", f"{key} must come from the recipe, not be fixed in the json"
    assert ds["bf16"]["enabled"] == "auto" and "fp16" not in ds
    assert "optimizer" not in ds and "scheduler" not in ds  # AdamW and cosine come from the recipe (HF Trainer)

    _, cfg, _ = load_recipe(recipe_path("llama-3-8b-instruct", "r-dpo"), CPU)
    filled = _fill_auto(cfg)
    assert "auto" not in json.dumps(filled)
    assert (
        filled["train_batch_size"],
        filled["train_micro_batch_size_per_gpu"],
        filled["gradient_accumulation_steps"],
        filled["bf16"]["enabled"],
    ) == (64, 2, 4, True)
    assert filled["zero_optimization"]["reduce_bucket_size"] == 4096 * 4096


@pytest.mark.parametrize("model_key", PAPER_MODELS)
def test_ds_config_accepted_by_deepspeed(model_key, monkeypatch):
    pytest.importorskip("deepspeed", reason="deepspeed is the optional `cluster` extra")
    import deepspeed.runtime.config as dsc

    _, cfg, _ = load_recipe(recipe_path(model_key, "r-dpo"), CPU)
    filled = _hf_filled(cfg)
    assert filled == _fill_auto(cfg), "the written-out fill rules no longer match transformers'"
    monkeypatch.setattr(dsc.dist, "get_rank", lambda *a, **k: 0)  # no process group on a CPU test box

    class EightRanks:
        def get_data_parallel_world_size(self):
            return 8

    ds = dsc.DeepSpeedConfig(filled, mpu=EightRanks())  # deepspeed's own validation (pydantic + batch check)
    assert ds.zero_optimization_stage == 3 and ds.zero_enabled
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps) == (64, 2, 4)
    assert ds.zero_config.gather_16bit_weights_on_model_save and ds.bfloat16_config.enabled
    bad = dict(filled, train_batch_size=128)  # a global batch that 2 x 4 x 8 cannot make
    with pytest.raises(AssertionError):
        dsc.DeepSpeedConfig(bad, mpu=EightRanks())


# ------------------------------------------------------------------------------------ rpo.train e2e


@pytest.mark.slow
def test_rpo_train_module_end_to_end(tmp_path):
    """``python -m rpo.train``'s main() on the SmolLM2 recipe with the toy model swapped in: 2 steps."""
    from rpo.training.launch import main

    rows = [
        {
            "prompt": [{"role": "user", "content": f"add {i} {i + 1}"}],
            "chosen": [{"role": "assistant", "content": str(2 * i + 1)}],
            "rejected": [{"role": "assistant", "content": str(2 * i)}],
        }
        for i in range(8)
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    rc = main(
        [
            str(RECIPES_DIR / "smollm2-135m" / "r-dpo.yaml"),
            "--model_name_or_path",
            "rpo:toy",
            "--use_peft",
            "false",
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--per_device_train_batch_size",
            "4",
            "--max_steps",
            "2",
            "--max_length",
            "64",
            "--ema_alpha",
            "0.5",
        ]
    )
    assert rc == 0
    from safetensors.torch import load_file

    from rpo.models import build_toy_model

    trained = load_file(out / "model.safetensors")
    init = build_toy_model(seed=42).state_dict()  # the recipe's seed
    assert any(not (trained[k] == init[k]).all() for k in trained), "2 steps changed no parameter"
    state = json.loads((out / "annotators.json").read_text())
    assert state["names"] == ["all"]  # no annotator column: one virtual annotator (K = 1)


# --------------------------------------------------------------------------------------- memory plan


def _memory_plan():
    spec = importlib.util.spec_from_file_location("memory_plan", ROOT / "benchmarks" / "memory_plan.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_memory_plan_counts_and_doc_up_to_date():
    mp = _memory_plan()
    # published parameter counts of the two models (their model cards / safetensors index)
    assert mp.count_params("Mistral-7B-Instruct-v0.2")[0] == 7_241_732_096
    assert mp.count_params("Meta-Llama-3-8B-Instruct")[0] == 8_030_261_248
    assert mp.main(["--check"]) == 0, "docs/memory_plan.md is stale: rerun benchmarks/memory_plan.py"


@pytest.mark.parametrize(
    "model_key,arch",
    [("mistral-7b-instruct", "Mistral-7B-Instruct-v0.2"), ("llama-3-8b-instruct", "Meta-Llama-3-8B-Instruct")],
)
def test_recipes_fit_the_memory_plan(model_key, arch):
    """The recipes' micro-batch, max_length and checkpointing are what the plan says fits 40 GB."""
    mp = _memory_plan()
    _, cfg, _ = load_recipe(recipe_path(model_key, "r-dpo"), CPU)
    assert (cfg.max_length, cfg.per_device_train_batch_size) == (mp.MAX_LENGTH, mp.MICRO_BATCH)
    assert cfg.gradient_checkpointing
    assert mp.largest_micro_batch(arch, mp.ARCHS[arch], ckpt=True) >= cfg.per_device_train_batch_size
    p = mp.plan(arch, mp.ARCHS[arch])
    assert mp.per_gpu_total(p, ckpt=True, reference=True) / mp.GiB <= mp.GPU_GiB
    assert mp.per_gpu_total(p, ckpt=False, reference=False) / mp.GiB > mp.GPU_GiB  # why checkpointing is on


# ------------------------------------------------------------------------------------- GPU benchmark


@pytest.mark.slow
def test_gpu_throughput_dry_run(tmp_path, monkeypatch):
    """benchmarks/gpu_throughput.py's whole code path on CPU with tiny sizes (the GPU run is not a test)."""
    monkeypatch.delenv("OUT", raising=False)
    spec = importlib.util.spec_from_file_location("gpu_throughput", ROOT / "benchmarks" / "gpu_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert (
        bench.main(
            ["--dry-run", "--archs", "SmolLM2-135M", "--rounds", "1", "--steps", "2", "--out-dir", str(tmp_path)]
        )
        == 0
    )
    res = json.loads((tmp_path / "gpu_throughput-dry-run.json").read_text())
    s = res["archs"]["SmolLM2-135M"]
    assert len(s["rounds"]) == 1 and s["ratio_median"] > 0
    assert s["tokens_per_step"] >= 2 * 2 * (16 + 16)  # 2 pairs, chosen + rejected, prompt + completion
    assert s["DPO"]["mfu"] is None  # no peak FLOP/s on CPU
    assert (tmp_path / "gpu_throughput-dry-run.md").read_text().count("SmolLM2-135M") == 1
    # the real architecture, not the dry run's tiny one, is what the GPU run builds
    import torch
    from transformers import AutoModelForCausalLM

    for name, published in (("SmolLM2-135M", 134_515_008), ("Qwen2.5-0.5B", 494_032_768)):
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(bench.build_config(name, dry_run=False))
        assert bench.flop_params(model) == published, name


# ------------------------------------------------------------- accelerate launch, 2 processes, gloo


def _noisy_pairs(path: Path, n: int = 32) -> Path:
    """Two annotators: "a" labels correctly, "b" flips every other label (text pairs for the toy tokenizer)."""
    rows = []
    for i in range(n):
        good, bad = f"{i}+{i}={2 * i}", f"{i}+{i}={2 * i + 1}"
        ann = "ab"[i % 2]
        flip = ann == "b" and i % 4 == 1
        rows.append(
            {"prompt": f"Q{i}: ", "chosen": bad if flip else good, "rejected": good if flip else bad, "annotator": ann}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_accelerate_two_processes_match_one_process(tmp_path):
    """Issue 7's CPU check, through the real cluster entry: ``accelerate launch`` (2 processes, gloo) of
    ``-m rpo.train`` with accumulation 1 gives the same eta trajectory as one process with accumulation 2,
    and both ranks hold the same eta (rpo.train checks that itself and records it). About 30 s."""
    import os
    import shutil
    import subprocess
    import sys

    data = _noisy_pairs(tmp_path / "pairs.jsonl")
    common = [
        str(RECIPES_DIR / "smollm2-135m" / "r-dpo.yaml"),
        "--model_name_or_path",
        "rpo:toy",
        "--use_peft",
        "false",
        "--dataset_name",
        str(data),
        "--max_steps",
        "4",
        "--max_length",
        "64",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "0.01",
        "--warmup_steps",
        "0",
        "--ema_alpha",
        "0.5",
        "--logging_steps",
        "1",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "PYTHONPATH": str(ROOT),
    }
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed next to this Python")
    runs = {
        "one": [sys.executable, "-m", "rpo.training.launch", *common, "--gradient_accumulation_steps", "2"],
        "two": [
            accelerate,
            "launch",
            "--config_file",
            str(ACCEL / "cpu2.yaml"),
            "--main_process_port",
            "0",
            "-m",
            "rpo.training.launch",
            *common,
            "--gradient_accumulation_steps",
            "1",
        ],
    }
    summaries = {}
    for name, cmd in runs.items():
        out = tmp_path / name
        proc = subprocess.run(
            [*cmd, "--output_dir", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, f"{name}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        summaries[name] = json.loads((out / "train_summary.json").read_text())
    one, two = summaries["one"], summaries["two"]
    assert (one["world_size"], one["gradient_accumulation_steps"]) == (1, 2)
    assert (two["world_size"], two["gradient_accumulation_steps"]) == (2, 1)
    assert two["eta_per_rank"][0] == two["eta_per_rank"][1], "ranks disagree on eta"
    assert one["annotators"] == two["annotators"] == ["a", "b"]
    assert len(one["eta_trajectory"]) == len(two["eta_trajectory"]) == 4
    for step, (x, y) in enumerate(zip(one["eta_trajectory"], two["eta_trajectory"]), start=1):
        assert max(abs(u - v) for u, v in zip(x, y)) < 1e-6, f"eta differs at step {step}: {x} vs {y}"
    assert one["eta_trajectory"][-1] != [0.9, 0.9], "eta never moved: the comparison would be vacuous"
