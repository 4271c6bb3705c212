"""``rpo audit`` end to end on the toy model (CPU, one thread): the files, the numbers against known flips,
resuming a killed audit, nothing half-written, bad input, ``--witness``. About a minute in all."""

from __future__ import annotations

import json
import re
import warnings
from html import escape

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("trl")

from rpo.audit import audit, known_flips  # noqa: E402
from rpo.audit import run as run_mod  # noqa: E402
from rpo.audit import witness as witness_mod  # noqa: E402
from rpo.cli import main as rpo_main  # noqa: E402

torch.set_num_threads(1)
HIDDEN = ["is_flipped", "true_eta", "true_chosen", "true_rejected", "true_flip_prob"]
FAST = dict(epochs=2.0, bootstrap=200, progress=False)  # 2 epochs: enough for the case rule


def _jsonl(path, ds):
    path.write_text("".join(json.dumps(r) + "\n" for r in ds.remove_columns(HIDDEN).to_list()))
    return path


@pytest.fixture(scope="module")
def flips():
    return known_flips(240, seed=11)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, flips):
    """``rpo audit data.jsonl --model toy --out OUT`` once for the module: (out folder, exit status)."""
    tmp = tmp_path_factory.mktemp("cli")
    data = _jsonl(tmp / "data.jsonl", flips)
    out = tmp / "out"
    rc = rpo_main(["audit", str(data), "--model", "toy", "--out", str(out), "--epochs", "2", "--quiet"])
    return out, rc


def test_cli_writes_every_output(cli_run, flips):
    out, rc = cli_run
    assert rc == 0
    for name in ("pairs.csv", "annotators.csv", "report.md", "report.html", "summary.json", "w_histogram.png"):
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    pairs = pd.read_csv(out / "pairs.csv")
    assert list(pairs.columns) == ["row", "annotator", "d", "w"]
    assert sorted(pairs["row"]) == list(range(len(flips)))
    assert (np.diff(pairs["w"]) >= 0).all()  # sorted by w ascending
    table = pd.read_csv(out / "annotators.csv")
    assert list(table.columns) == ["annotator", "n", "eta", "eta_low", "eta_high"]
    assert table["n"].sum() == len(flips) and (table["eta_low"] <= table["eta"]).all()
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["n_pairs"] == len(flips) and summary["scoring"] == "cross-fitted, 2 folds" and not summary["warnings"]
    )
    html = (out / "report.html").read_text()
    first = flips[int(pairs["row"][0])]
    assert "data:image/png;base64," in html and escape(first["prompt"]) in html
    assert f"row {int(pairs['row'][0])}" in (out / "report.md").read_text()


def test_the_audit_finds_the_flips_and_orders_the_annotators(cli_run, flips):
    """Known flips at 5% / 20% / 40%: w ranks the flipped labels first and eta follows the truth."""
    from sklearn.metrics import roc_auc_score

    out, _ = cli_run
    pairs = pd.read_csv(out / "pairs.csv").sort_values("row")
    assert roc_auc_score(np.asarray(flips["is_flipped"]), 1 - pairs["w"]) > 0.9
    table = pd.read_csv(out / "annotators.csv").set_index("annotator")
    truth = {
        a: 1 - np.mean([f for f, b in zip(flips["is_flipped"], flips["annotator"]) if b == a]) for a in table.index
    }
    assert table["eta"]["a1"] > table["eta"]["a2"] > table["eta"]["a3"]
    assert max(abs(table["eta"][a] - truth[a]) for a in table.index) < 0.12
    for a in table.index:  # within one annotator w orders pairs as d does
        sub = pairs[pairs["annotator"] == a].sort_values("d", kind="stable")
        assert (np.diff(sub["w"]) >= 0).all()


def test_library_result_and_the_cache_make_a_rerun_free(tmp_path, flips, monkeypatch):
    public = flips.remove_columns(HIDDEN).select(range(120))
    first = audit(public, model="toy", out=tmp_path, **FAST)
    pairs, annotators, summary = first  # unpacks as (pairs, annotators, summary)
    assert len(pairs) == 120 and summary["n_annotators"] == 3

    def no_training(*a, **k):
        raise AssertionError("retrained although every fold was scored")

    monkeypatch.setattr(witness_mod, "train_witness", no_training)
    monkeypatch.setattr(run_mod, "_load_models", no_training)
    again = audit(public, model="toy", out=tmp_path, **FAST)
    pd.testing.assert_frame_equal(again.pairs, first.pairs)
    # another setting is another key: it would train
    with pytest.raises(AssertionError, match="retrained"):
        audit(public, model="toy", out=tmp_path, **dict(FAST, epochs=1.0))


def test_a_killed_audit_resumes_where_it_stopped(tmp_path, flips, monkeypatch):
    """Killed while training fold 2: the rerun trains fold 2 only, and gives what an uninterrupted run gives."""
    public = flips.remove_columns(HIDDEN).select(range(120))
    whole = audit(public, model="toy", out=tmp_path / "whole", **FAST)
    real = witness_mod.train_witness
    calls = []

    def dies_on_second(*a, **k):
        calls.append(a[4].name)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(witness_mod, "train_witness", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        audit(public, model="toy", out=tmp_path / "killed", **FAST)
    assert calls == ["fold-0", "fold-1"] and not (tmp_path / "killed" / "pairs.csv").exists()
    calls.clear()
    resumed = audit(public, model="toy", out=tmp_path / "killed", **FAST)
    assert calls == ["fold-1"]
    assert np.allclose(resumed.pairs["d"], whole.pairs["d"], atol=1e-5)
    assert resumed.pairs["row"].tolist() == whole.pairs["row"].tolist()


def test_training_resumes_from_its_checkpoint(tmp_path, flips, monkeypatch):
    """Killed inside a fold's training after a checkpoint: the rerun continues from that checkpoint."""
    from transformers import TrainerCallback

    public = flips.remove_columns(HIDDEN).select(range(120))
    real_make = witness_mod.make_trainer

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt(f"killed after saving step {state.global_step}")

    def make_killing(*a, **k):
        t = real_make(*a, **k)
        t.add_callback(Kill())
        return t

    monkeypatch.setattr(witness_mod, "make_trainer", make_killing)
    with pytest.raises(KeyboardInterrupt, match="killed after saving"):
        audit(public, model="toy", out=tmp_path, **FAST)
    checkpoints = list(tmp_path.glob(".work/*/fold-0/train/checkpoint-*"))
    assert len(checkpoints) == 1
    monkeypatch.setattr(witness_mod, "make_trainer", real_make)
    resumed_from = []
    from rpo.training import RobustTrainer

    original = RobustTrainer.train

    def spy(self, resume_from_checkpoint=None, **kw):
        resumed_from.append(resume_from_checkpoint)
        return original(self, resume_from_checkpoint=resume_from_checkpoint, **kw)

    monkeypatch.setattr(RobustTrainer, "train", spy)
    res = audit(public, model="toy", out=tmp_path, **FAST)
    assert resumed_from[0] == str(checkpoints[0]) and resumed_from[1] is None
    assert len(res.pairs) == 120 and (tmp_path / "pairs.csv").exists()


def test_a_failure_leaves_the_previous_outputs_intact(tmp_path, flips, monkeypatch):
    public = flips.remove_columns(HIDDEN).select(range(60))
    audit(public, model="toy", out=tmp_path, **dict(FAST, epochs=0.5))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    from rpo.audit import report

    def broken(*a, **k):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(report, "render_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        audit(public, model="toy", out=tmp_path, **dict(FAST, epochs=0.5, top=5))
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before


def test_witness_mode_scores_in_sample_and_warns(tmp_path, flips):
    from rpo.models import load_model

    model, _ = load_model("toy", seed=3)
    model.save_pretrained(tmp_path / "policy")  # a toy model: no tokenizer needed
    public = flips.remove_columns(HIDDEN).select(range(40))
    with pytest.warns(UserWarning, match="in-sample scores are optimistic"):
        res = audit(public, model="toy", witness_dir=str(tmp_path / "policy"), out=tmp_path / "o", **FAST)
    assert res.summary["scoring"] == "in-sample" and res.summary["warnings"]
    assert "optimistic" in (tmp_path / "o" / "report.md").read_text()
    # the same policy as witness and as reference: DPO's log-odds are 0 for every pair, w = eta0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = audit(public, model=str(tmp_path / "policy"), witness_dir=str(tmp_path / "policy"), **FAST)
    assert np.allclose(same.pairs["d"], 0, atol=1e-4) and np.allclose(same.pairs["w"], 0.9, atol=1e-3)


def test_chat_data_and_small_chunks(tmp_path, monkeypatch):
    rows = known_flips(48, seed=2).remove_columns(HIDDEN).to_list()
    chat = [
        {
            "prompt": [{"role": "user", "content": r["prompt"].removeprefix("<bos>")}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
            "annotator": r["annotator"],
        }
        for r in rows
    ]
    monkeypatch.setattr(witness_mod, "CHUNK", 7)
    res = audit(chat, model="toy", out=tmp_path, **dict(FAST, epochs=0.5))
    assert len(res.pairs) == 48 and np.isfinite(res.pairs["w"]).all()
    chunks = list(tmp_path.glob(".work/*/fold-*/scores/chunk-*.json"))
    assert len(chunks) == 2 * int(np.ceil(24 / 7))
    assert "user: " in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "rows, extra, pattern",
    [
        ([{"prompt": "a", "chosen": "b"}], [], r"data.jsonl: missing column\(s\) \['rejected'\]"),
        (
            [{"prompt": "a", "chosen": "b", "rejected": "c"}, {"prompt": "a", "chosen": "", "rejected": "c"}],
            [],
            r"data.jsonl: column 'chosen', row 1: empty string \(line 2",
        ),
        (
            [{"prompt": "a", "chosen": "b", "rejected": "c"}],
            ["--annotator-column", "rater"],
            r"'rater' is not a column",
        ),
        (
            [{"prompt": "a", "chosen": "b", "rejected": "c", "annotator": 0.5}],
            [],
            r"column 'annotator', row 0: expected str or int, got float",
        ),
        ([{"prompt": "a", "chosen": "b", "rejected": "c"}], ["--loss", "simpo", "--ref", "toy"], "reference-free"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_in_out(tmp_path, capsys, rows, extra, pattern):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    rc = rpo_main(["audit", str(data), "--model", "toy", "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rpo audit: error: ")
    assert re.search(pattern, err), err
    assert not out.exists()


def test_model_folders_are_checked_before_anything(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 50257}))
    out = tmp_path / "out"
    for model, pattern in ((tmp_path / "gpt", "has no tokenizer"), (tmp_path / "none", "not a model folder")):
        assert rpo_main(["audit", str(data), "--model", str(model), "--out", str(out)]) == 2
        assert pattern in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        rpo_main(["audit", str(data), "--model", "toy", "--witness", str(tmp_path / "empty"), "--out", str(out)]) == 2
    )
    assert "no config.json" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("loss", ["ipo", "simpo", "cpo"])
def test_every_base_loss_gives_a_witness(tmp_path, flips, loss):
    public = flips.remove_columns(HIDDEN).select(range(48))
    res = audit(public, model="toy", loss=loss, **dict(FAST, epochs=0.5))
    assert res.summary["witness"] == f"R-{loss.upper()}" and np.isfinite(res.pairs["d"]).all()
    assert (res.pairs["d"] != 0).any()
