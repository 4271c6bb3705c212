"""Noisy copies on the paper path (section 5.4): the recipe's noise settings, their refusals, the
relabelling with the truth kept aside, and ``rpo.training.launch`` end to end on a local UltraFeedback
fixture in the Hub's format with the toy model (a few seconds)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

pytest.importorskip("trl")

from rpo import paths  # noqa: E402
from rpo.training.noisy import TRUTH_FILE, TRUTH_ROWS_FILE, inject_noise  # noqa: E402
from rpo.training.recipes import load_recipe, recipe_path  # noqa: E402

CPU = ["--use_cpu", "true"]
SMOL = paths.recipes() / "smollm2-135m" / "r-dpo.yaml"


def uf_rows(n: int) -> list[dict]:
    """Invented rows in princeton-nlp/mistral-instruct-ultrafeedback's layout (as tests/fixtures/ultrafeedback)."""
    out = []
    for i in range(n):
        q = f"What is {i} plus {i}?"
        good, bad = f"{2 * i}", f"{2 * i + 1}"
        out.append(
            {
                "prompt_id": f"q{i:03d}",
                "prompt": q,
                "all_generated_responses": [good, bad],
                "all_rm_scores": [0.9, 0.1],
                "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
                "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
            }
        )
    return out


def write_uf(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in uf_rows(n)))
    return folder


def noise(**kw):
    base = dict(noise_layout="single", noise_rate=0.0, noise_kind="symmetric", noise_seed=0, noise_annotators=None)
    return types.SimpleNamespace(**{**base, "noise_pool_seed": 0, **kw})


@pytest.mark.parametrize(
    "override, word",
    [
        (["--noise_layout", "three"], "noise_layout"),
        (["--noise_rate", "0.2"], "needs a noise_layout"),
        (["--noise_layout", "single", "--noise_rate", "0.7"], "noise_rate"),
        (["--noise_layout", "pool"], "noise_annotators"),
        (["--noise_layout", "pool", "--noise_annotators", "8", "--noise_rate", "0.1"], "leave noise_rate at 0"),
        (["--noise_layout", "two", "--noise_annotators", "8"], "for noise_layout 'pool'"),
        (["--noise_layout", "single", "--noise_kind", "bt", "--noise_rate", "0.5"], "bt"),
        (["--noise_kind", "uniform"], "noise_kind"),
        (["--dataset_loader", "hub"], "dataset_loader"),
    ],
)
def test_a_recipe_refuses_noise_it_cannot_honour(override, word):
    with pytest.raises(ValueError, match=word):
        load_recipe(recipe_path("mistral-7b-instruct", "r-dpo"), [*CPU, *override])


def test_recipe_noise_settings_parse():
    script, _, _ = load_recipe(
        recipe_path("mistral-7b-instruct", "r-dpo"),
        [*CPU, "--noise_layout", "two", "--noise_rate", "0.3", "--noise_seed", "4"],
    )
    assert (script.noise_layout, script.noise_rate, script.noise_seed, script.noise_kind) == (
        "two",
        0.3,
        4,
        "symmetric",
    )
    default, _, _ = load_recipe(recipe_path("mistral-7b-instruct", "r-dpo"), CPU)
    assert default.noise_layout == "none" and default.dataset_loader == "auto"


def test_inject_noise_keeps_the_truth_aside():
    from datasets import Dataset

    from rpo.data.loaders import normalize_ultrafeedback

    clean = Dataset.from_list(normalize_ultrafeedback(uf_rows(200)))
    public, truth, rows = inject_noise(clean, noise(noise_layout="two", noise_rate=0.3, noise_seed=2))
    assert len(public) == 400 and not [c for c in public.column_names if c.startswith("true_") or c == "is_flipped"]
    assert truth["annotators"] == ["a1", "a2"] and truth["eta_true"]["a1"] == 1.0
    assert 0.6 < truth["eta_true"]["a2"] < 0.8 and truth["n_flipped"] == sum(r["is_flipped"] for r in rows)
    # the trainer's labels are the flipped ones: a flipped row's chosen is the clean row's rejected
    for r in rows:
        orig = clean[r["row"] % 200]
        got = public[r["row"]]
        assert got["chosen"] == (orig["rejected"] if r["is_flipped"] else orig["chosen"])
    same, none_truth, _ = inject_noise(clean, noise(noise_layout="none"))
    assert same is clean and none_truth is None


def test_inject_noise_refusals():
    from datasets import Dataset

    from rpo.data.loaders import normalize_ultrafeedback

    clean = Dataset.from_list(normalize_ultrafeedback(uf_rows(6)))
    with pytest.raises(ValueError, match="already has an 'annotator' column"):
        inject_noise(clean.add_column("annotator", ["x"] * 6), noise(noise_rate=0.2))
    with pytest.raises(ValueError, match="true_margin"):
        inject_noise(clean, noise(noise_rate=0.2, noise_kind="bt"))
    with pytest.raises(ValueError, match="annotator_column='rater'"):
        inject_noise(clean, noise(noise_rate=0.2), annotator_column="rater")
    with pytest.raises(ValueError, match="larger than the data"):
        inject_noise(clean, noise(noise_layout="pool", noise_annotators=7))


def _launch(tmp_path, data: Path, *extra: str) -> Path:
    from rpo.training.launch import main

    out = tmp_path / "run"
    common = ["--model_name_or_path", "rpo:toy", "--use_peft", "false", "--dataset_name", str(data)]
    common += ["--dataset_loader", "ultrafeedback", "--output_dir", str(out), "--max_length", "64"]
    common += ["--per_device_train_batch_size", "8", "--max_steps", "3", "--ema_alpha", "0.5", "--logging_steps", "1"]
    assert main([str(SMOL), *common, *extra]) == 0
    return out


@pytest.mark.slow
def test_launch_trains_on_noisy_copies_and_writes_the_truth(tmp_path):
    data = write_uf(tmp_path / "uf", 24)
    out = _launch(tmp_path, data, "--noise_layout", "two", "--noise_rate", "0.4", "--noise_seed", "3")
    truth = json.loads((out / TRUTH_FILE).read_text())
    rows = [json.loads(line) for line in (out / TRUTH_ROWS_FILE).read_text().splitlines()]
    assert truth["noise_layout"] == "two" and truth["n_rows"] == len(rows) == 48 and truth["n_flipped"] > 0
    assert json.loads((out / "annotators.json").read_text())["names"] == ["a1", "a2"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["annotators"] == ["a1", "a2"] and summary["eta_true"] == [1.0, truth["eta_true"]["a2"]]
    assert summary["eta"] != [0.9, 0.9] and len(summary["eta_trajectory"]) == 3

    clean = _launch(tmp_path, data)  # the same folder, no noise: the stale truth is removed
    assert not (clean / TRUTH_FILE).exists()
    assert json.loads((clean / "train_summary.json").read_text())["eta_true"] is None
