"""Bad input at the trainer's boundary (RobustConfig, the datasets RobustTrainer is given, checkpoints) and
the checkpoint fault: training killed inside the save window resumes from what is left, with eta equal,
bit for bit, to an uninterrupted run's. Most cases build a config or a trainer and never train."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("trl")

import checkpoint_worker as worker  # noqa: E402
import pandas as pd  # noqa: E402
from datasets import Dataset  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import RobustConfig, RobustTrainer  # noqa: E402
from rpo.training.checkpoints import STATE_FILE  # noqa: E402

CPU = dict(use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], disable_tqdm=True, seed=0)
NAN, INF = math.nan, math.inf

# (case id, RobustConfig fields, words the message must hold)
CONFIG_CASES = [
    ("gamma-nan", dict(pref_loss="simpo", gamma=NAN), ["RobustConfig.gamma must be a finite number, got nan"]),
    ("gamma-inf", dict(pref_loss="simpo", gamma=INF), ["RobustConfig.gamma", "inf"]),
    ("cpo-alpha-nan", dict(pref_loss="cpo", cpo_alpha=NAN), ["RobustConfig.cpo_alpha", "nan"]),
    ("cpo-alpha-minus-inf", dict(pref_loss="cpo", cpo_alpha=-INF), ["RobustConfig.cpo_alpha", "-inf"]),
    ("beta-nan", dict(beta=NAN), ["RobustConfig.beta", "nan"]),
    ("beta-inf", dict(beta=INF), ["RobustConfig.beta", "inf"]),
    ("beta-zero", dict(beta=0.0), ["RobustConfig.beta must be > 0, got 0.0"]),
    ("beta-negative", dict(beta=-0.1), ["RobustConfig.beta must be > 0"]),
    ("noise-eps-nan", dict(robust=False, baseline="cdpo", noise_eps=NAN), ["RobustConfig.noise_eps", "nan"]),
    ("eta0-nan", dict(eta0=NAN), ["RobustConfig.eta0", "nan"]),
    ("eta0-half", dict(eta0=0.5), ["eta0 = 0.5 gives a zero M-step gradient", "(0.5, 1)"]),
    ("eta0-half-label-smoothing", dict(robust=False, baseline="ls", eta0=0.5), ["eta0 = 0.5"]),
    ("eta0-string", dict(eta0="0.9"), ["RobustConfig.eta0 must be a finite number, got '0.9'"]),
    ("ema-alpha-nan", dict(ema_alpha=NAN), ["RobustConfig.ema_alpha", "nan"]),
    ("ls-eps-nan", dict(robust=False, baseline="ls", ls_eps=NAN), ["RobustConfig.ls_eps", "nan"]),
    ("prior-strength-inf", dict(eta_update="count", eta_prior_strength=INF), ["RobustConfig.eta_prior_strength"]),
    ("num-annotators-fraction", dict(num_annotators=1.5), ["RobustConfig.num_annotators must be an integer"]),
    ("gamma-without-simpo", dict(pref_loss="dpo", gamma=0.3), ["gamma=0.3 is SimPO's margin", "'dpo' ignores it"]),
    ("learning-rate-nan", dict(learning_rate=NAN), ["RobustConfig.learning_rate", "nan"]),
    ("batch-size-zero", dict(per_device_train_batch_size=0), ["per_device_train_batch_size must be an integer >= 1"]),
    ("accumulation-zero", dict(gradient_accumulation_steps=0), ["gradient_accumulation_steps must be an integer"]),
]


@pytest.mark.parametrize("fields, words", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_refuses_and_names_the_field(tmp_path, fields, words):
    with pytest.raises(ValueError) as e:
        RobustConfig(output_dir=str(tmp_path), **CPU, **fields)
    for word in words:
        assert word in str(e.value), (word, str(e.value))


@pytest.fixture(scope="module")
def tok():
    return build_toy_tokenizer()


def trainer(tok, tmp_path, train, eval_dataset=None, **cfg):
    args = RobustConfig(output_dir=str(tmp_path), **CPU, pref_loss="simpo", beta=2.0, max_steps=1, **cfg)
    model = build_toy_model(0, tokenizer=tok)
    return RobustTrainer(model, args=args, train_dataset=train, eval_dataset=eval_dataset, processing_class=tok)


def data(n=8, **columns):
    base = {
        "prompt": [f"<bos>w{i}:" for i in range(n)],
        "chosen": [f"W{i}" for i in range(n)],
        "rejected": [f"{i}w" for i in range(n)],
    }
    return Dataset.from_dict({**base, **columns})


def chat(role, text):
    return [{"role": role, "content": text}]


# (case id, train dataset, eval dataset, config fields, exception type, words)
DATA_CASES = [
    ("empty", data(0), None, {}, ValueError, ["train dataset: preference data is empty (0 rows)"]),
    (
        "all-identical",
        data(rejected=[f"W{i}" for i in range(8)]),
        None,
        {},
        ValueError,
        ["train dataset: all 8 pair(s) have identical chosen and rejected"],
    ),
    (
        "eval-all-identical",
        data(),
        data(rejected=[f"W{i}" for i in range(8)]),
        {},
        ValueError,
        ["eval dataset: all 8 pair(s)"],
    ),
    (
        "annotator-column-typo",
        data(annotator=["a", "b"] * 4),
        None,
        {"annotator_column": "annotater"},
        ValueError,
        ["annotator_column 'annotater' is not a column", "did you mean 'annotator'"],
    ),
    ("list", [{"prompt": "a", "chosen": "b", "rejected": "c"}], None, {}, TypeError, ["datasets.Dataset", "list"]),
    (
        "dataframe",
        pd.DataFrame({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]}),
        None,
        {},
        TypeError,
        ["got DataFrame"],
    ),
    (
        "eval-dict-entry",
        data(),
        {"held_out": data(0)},
        {},
        ValueError,
        ["eval['held_out'] dataset: preference data is empty"],
    ),
    (
        "eval-ids-vs-names",
        data(annotator=["a", "b"] * 4),
        data(annotator=[0, 1] * 4),
        {},
        ValueError,
        ["eval dataset column 'annotator' holds integer ids", "['a', 'b']"],
    ),
    (
        "completion-by-the-user",
        Dataset.from_dict(
            {
                "prompt": [chat("user", "<bos>ab:")] * 4,
                "chosen": [chat("user", "AB")] * 4,
                "rejected": [chat("assistant", "ba")] * 4,
            }
        ),
        None,
        {},
        ValueError,
        ["column 'chosen', row 0", "role 'user'"],
    ),
    (
        "text-prompt-chat-completions",
        Dataset.from_dict(
            {
                "prompt": ["<bos>ab:"] * 4,
                "chosen": [chat("assistant", "AB")] * 4,
                "rejected": [chat("assistant", "ba")] * 4,
            }
        ),
        None,
        {},
        ValueError,
        ["column 'prompt' holds text but column 'chosen' holds chat"],
    ),
    (
        "truncated-to-nothing",
        data(),
        None,
        {"max_length": 1},
        ValueError,
        ["train dataset: no pair is left", "max_length=1"],
    ),
    (
        "num-annotators-vs-names",
        data(annotator=["a", "b"] * 4),
        None,
        {"num_annotators": 3},
        ValueError,
        ["num_annotators=3 but the column names 2 annotator(s)"],
    ),
]


@pytest.mark.parametrize(
    "train, eval_dataset, fields, error, words", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_trainer_refuses_bad_data_before_any_step(tok, tmp_path, train, eval_dataset, fields, error, words):
    with pytest.raises(error) as e:
        trainer(tok, tmp_path, train, eval_dataset, **fields)
    for word in words:
        assert word in str(e.value), (word, str(e.value))
    assert not list(tmp_path.glob("checkpoint-*"))


# ---- checkpoints that cannot be resumed from ---------------------------------------------------------------
def state_of(tmp_path, text):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir(parents=True)
    for name in ("trainer_state.json", "model.safetensors"):
        (folder / name).write_text("{}")
    (folder / STATE_FILE).write_text(text)
    return folder


@pytest.mark.parametrize(
    "state, words",
    [
        ('{"names": ["all"], "eta": [0.9]', [f"{STATE_FILE}:1: not valid JSON"]),
        ('{"names": ["all"]}', [STATE_FILE, "not a usable RPO state", "'eta'"]),
        ('{"names": ["all"], "eta": [NaN]}', [STATE_FILE, "not a usable RPO state", "nan"]),
        ('{"names": ["x", "y"], "eta": [0.9, 0.8]}', [STATE_FILE, "annotators ['x', 'y'] differ"]),
    ],
    ids=["bad-json", "no-eta", "eta-nan", "other-annotators"],
)
def test_a_bad_rpo_state_is_named(tok, tmp_path, state, words):
    folder = state_of(tmp_path, state)
    with pytest.raises(ValueError) as e:
        trainer(tok, tmp_path, data()).train(resume_from_checkpoint=str(folder))
    for word in words:
        assert word in str(e.value), (word, str(e.value))


def test_an_incomplete_checkpoint_is_refused_naming_what_it_lacks(tok, tmp_path):
    folder = state_of(tmp_path, '{"names": ["all"], "eta": [0.9]}')
    (folder / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"checkpoint-2 is incomplete \(lacks trainer_state\.json\)"):
        trainer(tok, tmp_path, data()).train(resume_from_checkpoint=str(folder))
    with pytest.raises(ValueError, match="no complete checkpoint in output_dir"), pytest.warns(UserWarning):
        trainer(tok, tmp_path, data()).train(resume_from_checkpoint=True)


# ---- the fault: a kill inside the checkpoint window ------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """eta at every checkpoint (save_steps=2, no rotation) and at the end of an uninterrupted run."""
    out = tmp_path_factory.mktemp("full")
    t = worker.make_trainer(str(out))
    t.args.save_total_limit = None  # keep every checkpoint: eta at steps 2 and 4
    t.train()
    at = {int(p.name.split("-")[1]): json.loads((p / STATE_FILE).read_text())["eta"] for p in out.glob("checkpoint-*")}
    return at, t.eta.tolist()


@pytest.mark.slow
@pytest.mark.parametrize(
    "point, resumes_from",
    [("after_model_saved", 2), ("after_rotation", 4)],
    ids=["killed-after-model-saved", "killed-after-rotation"],
)
def test_a_kill_in_the_checkpoint_window_resumes_with_identical_eta(tmp_path, uninterrupted, point, resumes_from):
    eta_at, eta_end = uninterrupted
    out = tmp_path / "run"
    script = Path(worker.__file__)
    killed = subprocess.run([sys.executable, str(script), str(out), point, "4"], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILLed inside the window, as intended
    left = sorted(p.name for p in out.glob("checkpoint-*"))
    # after the model was saved: checkpoint-4 lacks its trainer state, checkpoint-2 is still there; after the
    # rotation: only checkpoint-4, complete (RPO's state went in before anything else)
    assert left == (["checkpoint-2", "checkpoint-4"] if resumes_from == 2 else ["checkpoint-4"])
    restored = json.loads((out / f"checkpoint-{resumes_from}" / STATE_FILE).read_text())
    assert restored["eta"] == eta_at[resumes_from]  # what it resumes from is the uninterrupted run's state
    resumed = worker.make_trainer(str(out))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.train(resume_from_checkpoint=True)
    said = [str(w.message) for w in caught if "incomplete" in str(w.message)]
    if resumes_from == 2:
        assert said and "checkpoint-4 is incomplete" in said[0] and "resuming from checkpoint-2" in said[0]
    else:
        assert not said
    assert resumed.state.global_step == 6
    assert resumed.eta.tolist() == eta_end  # and the end is the uninterrupted run's too: bit for bit


# ---- recipes (flat YAML through TRL's TrlParser) -----------------------------------------------------------------
RECIPE = "model_name_or_path: toy\ndataset_name: d\noutput_dir: out\nuse_cpu: true\nbf16: false\n"


@pytest.mark.parametrize(
    "text, error, words",
    [
        (RECIPE + "eta_0: 0.9\n", ValueError, ["--eta_0"]),
        (RECIPE + "eta0: [0.9\n", ValueError, ["r.yaml:7: not valid YAML"]),
        (RECIPE + "eta0: high\n", ValueError, ["r.yaml", "--eta0", "'high'"]),
        (RECIPE + "eta0: .nan\n", ValueError, ["RobustConfig.eta0 must be a finite number, got nan"]),
        ("- a\n- b\n", ValueError, ["r.yaml: a recipe is a YAML mapping", "list"]),
        (RECIPE + "gamma: 0.2\n", ValueError, ["gamma=0.2 is SimPO's margin"]),
    ],
    ids=["unknown-key", "bad-yaml", "eta0-not-a-number", "eta0-nan", "not-a-mapping", "gamma-for-dpo"],
)
def test_recipe_errors_name_the_recipe(tmp_path, text, error, words):
    from rpo.training.recipes import load_recipe

    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(error) as e:
        load_recipe(tmp_path / "r.yaml")
    for word in words:
        assert word in str(e.value), (word, str(e.value))
