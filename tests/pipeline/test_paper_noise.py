"""The paper profiles' noisy runs (issue 13): every config of every paper profile has a launch command on an
existing recipe (no more NotImplementedError for noise), and the commands ``02_train`` would run train,
offline on local fixtures in the datasets' own formats with the toy model, on the flipped labels, with
``eta_hat_k`` / ``eta_true_k`` read back for the tables. A few seconds per launch."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from rpo import paths
from rpo.pipeline.paper import launch_command, reliability_metrics
from rpo.pipeline.profiles import PROFILES, config, get_profile

FIX = Path(__file__).parent.parent / "fixtures"
PAPER = sorted(p for p in PROFILES if p.startswith("paper-"))
#: what a CPU test box needs on top of a GPU recipe: the toy model, fp32, no bf16, 2 tiny steps
CPU = [
    "--model_name_or_path", "rpo:toy", "--dtype", "float32", "--use_cpu", "true", "--bf16", "false",
    "--activation_checkpointing", "false", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps",
    "1", "--max_steps", "2", "--max_length", "64", "--save_strategy", "no", "--learning_rate", "0.01",
    "--warmup_steps", "0", "--logging_steps", "1",
]  # fmt: skip


@pytest.mark.parametrize("name", PAPER)
def test_every_paper_config_has_a_launch_command_on_an_existing_recipe(name):
    prof = get_profile(name)
    for study in prof.studies:
        for cfg in study.configs:
            cmd = launch_command(prof.train_command, prof.train_params["paper_model"], name, cfg, 0)
            recipe = cmd[cmd.index("rpo.training.launch") + 1]
            assert recipe.endswith(".yaml") and (paths.root() / recipe).exists(), recipe
            i = cmd.index("--noise_layout")
            assert cmd[i + 1 : i + 6] == [cfg["layout"], "--noise_rate", str(cfg["noise"]), "--noise_seed", "0"]


def test_known_noise_baselines_are_told_the_injected_rate():
    prof = get_profile("paper-mistral")
    cmd = launch_command(prof.train_command, "mistral-7b-instruct", prof.name, config(method="cdpo", noise=0.3), 1)
    assert cmd[cmd.index("--noise_eps") + 1] == "0.3"
    clean = launch_command(prof.train_command, "mistral-7b-instruct", prof.name, config(method="cdpo", noise=0.0), 1)
    assert "--noise_eps" not in clean  # the recipe's assumed rate stands


def _run(cmd: list[str], out: Path, *extra: str) -> dict:
    """The recipe and overrides of a profile's command, run in this process with the CPU overrides."""
    from rpo.training.launch import main

    at = cmd.index("rpo.training.launch") + 1  # the recipe (accelerate's own --config_file comes before)
    argv = [str(paths.root() / cmd[at]), *cmd[at + 1 :], *CPU, *extra, "--output_dir", str(out)]
    assert main(argv) == 0, shlex.join(argv)
    return json.loads((out / "train_summary.json").read_text())


def _h4(folder: Path, n: int) -> Path:
    """Invented rows in HuggingFaceH4/ultrafeedback_binarized's layout (split train_prefs)."""
    folder.mkdir(parents=True)
    rows = []
    for i in range(n):
        q = f"What is {i} plus {i}?"
        good, bad = str(2 * i), str(2 * i + 1)
        rows.append(
            {
                "prompt": q,
                "prompt_id": f"h{i:03d}",
                "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                "score_chosen": 8.0,
                "score_rejected": 3.0,
            }
        )
    (folder / "train_prefs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.slow
def test_qwen05_two_annotator_run_trains_on_flipped_labels(tmp_path):
    prof = get_profile("paper-qwen05")
    cfg = next(c for c in prof.studies[0].configs if c["layout"] == "two" and c["noise"] == 0.4)
    cmd = launch_command(prof.train_command, "qwen2.5-0.5b-instruct", prof.name, cfg, 2)
    assert cmd[:3] == ["python", "-m", "rpo.training.launch"]
    data = _h4(tmp_path / "h4", 16)
    summary = _run(cmd, tmp_path / "run", "--dataset_name", str(data), "--dataset_loader", "ultrafeedback")
    truth = json.loads((tmp_path / "run" / "noise_truth.json").read_text())
    assert (truth["noise_layout"], truth["noise_rate"], truth["noise_seed"]) == ("two", 0.4, 2)
    assert truth["n_rows"] == 32 and truth["n_flipped"] > 0 and summary["annotators"] == ["a1", "a2"]
    m = reliability_metrics(tmp_path / "run")
    assert m["eta_true_1"] == 1.0 and m["eta_true_2"] == truth["eta_true"]["a2"] < 1.0
    assert {"eta_hat_1", "eta_hat_2", "eta_hat_mean", "eta_hat_std"} <= set(m)


@pytest.mark.slow
def test_paper_mistral_noisy_cell_and_multipref_cell_launch(tmp_path):
    prof = get_profile("paper-mistral")
    cfg = config(method="dpo", robust=True, layout="single", noise=0.2)
    cmd = launch_command(prof.train_command, "mistral-7b-instruct", prof.name, cfg, 0)
    assert cmd[:2] == ["accelerate", "launch"]
    uf = FIX / "ultrafeedback" / "mistral-instruct-ultrafeedback"
    summary = _run(cmd, tmp_path / "uf", "--dataset_name", str(uf), "--dataset_loader", "ultrafeedback")
    assert summary["annotators"] == ["a1"] and summary["eta_true"] is not None

    mp = get_profile("paper-multipref-llama3")
    cfg = mp.studies[0].configs[1]  # R-DPO on MultiPref's own annotators: nothing injected
    assert (cfg["robust"], cfg["layout"]) == (True, "none")
    cmd = launch_command(mp.train_command, "llama-3-8b-instruct-multipref", mp.name, cfg, 0)
    summary = _run(cmd, tmp_path / "mp", "--dataset_name", str(FIX / "multipref"))  # auto: the recipe names it
    assert summary["annotators"] == ["ex01", "ex02", "nw01", "nw02", "nw03"] and summary["eta_true"] is None
    assert not (tmp_path / "mp" / "noise_truth.json").exists()
    m = reliability_metrics(tmp_path / "mp")
    assert len([k for k in m if k.startswith("eta_hat_") and k[8:].isdigit()]) == 5 and "eta_true_1" not in m


def test_the_new_recipe_sets():
    from rpo.training.recipes import load_recipe

    cpu = ["--use_cpu", "true"]
    script, cfg, model = load_recipe(paths.recipes() / "qwen2.5-0.5b-instruct" / "r-dpo.yaml", cpu)
    assert model.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct" and model.dtype == "float32"
    assert (script.dataset_name, script.dataset_train_split) == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    assert (script.noise_layout, script.noise_rate, script.dataset_loader) == ("single", 0.0, "ultrafeedback")
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 64 and cfg.robust
    for folder in ("mistral-7b-instruct-multipref", "llama-3-8b-instruct-multipref"):
        assert sorted(p.stem for p in (paths.recipes() / folder).glob("*.yaml")) == ["dpo", "r-dpo"]
        script, cfg, _ = load_recipe(paths.recipes() / folder / "r-dpo.yaml", cpu)
        assert (script.dataset_name, script.dataset_loader, script.noise_layout) == (
            "allenai/multipref",
            "multipref",
            "none",
        )
        assert cfg.annotator_column == "annotator" and (cfg.eta0, cfg.ema_alpha) == (0.9, 0.1)


@pytest.mark.parametrize(
    "toy_only",
    [{"labels": "true"}, {"dial": "0.5"}, {"beta": 1.0}, {"layout": "pool", "annotators": 8, "noise": 0.0}],
)
def test_paper_launch_refuses_toy_world_settings(toy_only):
    prof = get_profile("paper-mistral")
    with pytest.raises(ValueError, match="toy-world settings"):
        launch_command(prof.train_command, "mistral-7b-instruct", prof.name, config(**{"noise": 0.2, **toy_only}), 0)
