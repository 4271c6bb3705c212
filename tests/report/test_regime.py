"""The regime map's table (rpo.report.regime): from a per-run log with planted values, the issue's columns,
the ceiling trained once per (dial, seed), the paired gain and the recovered share, and bad lines named."""

import csv
import json
import math

import pytest

from rpo.report.regime import COLUMNS, build_regime, load_runs, summarise


def _log(path, extra=()):
    recs = []
    for seed in range(3):
        for noise in (0.1, 0.3):
            base = 0.55 + 0.01 * seed - 0.2 * noise  # DPO loses 0.2 x noise of win rate to the flips
            for method, win in (("DPO", base), ("R-DPO", base + 0.1 * noise), ("DPO+LS", base - 0.01)):
                rec = dict(dial="0.5", noise=noise, noise_model="symmetric", method=method, seed=seed, max_steps=150)
                rec.update(win_rate=win, clean_acc=0.8, witness_auroc=0.9 if method == "DPO" else None)
                if method == "R-DPO":
                    rec.update(eta_hat_1=1 - noise + 0.05, eta_true_1=1 - noise, auroc_w=0.9)
                recs.append(rec)
            if noise == 0.1:  # logged once per (dial, seed), as the benchmark does
                clean = dict(dial="0.5", noise=0.1, noise_model="symmetric", method="DPO (clean labels)", seed=seed)
                recs.append({**clean, "max_steps": 150, "win_rate": 0.55 + 0.01 * seed, "clean_acc": 0.85})
    recs += list(extra)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_summary_has_the_issue_columns_and_the_planted_gains(tmp_path):
    rows = summarise(load_runs(_log(tmp_path / "r.jsonl")))
    at = {(r["noise"], r["method"]): r for r in rows}
    r = at[(0.3, "R-DPO")]
    assert r["n_seeds"] == 3 and r["gain_vs_dpo"] == pytest.approx(0.03) and r["eta_abs_err"] == pytest.approx(0.05)
    # the ceiling is the same run at every noise: damage 0.2 x noise, R-DPO recovers 0.1 / 0.2 of it
    assert at[(0.3, "DPO (clean labels)")]["gain_vs_dpo"] == pytest.approx(0.06)
    assert r["recovered"] == pytest.approx(0.5) and at[(0.1, "R-DPO")]["recovered"] == pytest.approx(0.5)
    assert at[(0.3, "DPO+LS")]["recovered"] == pytest.approx(-0.01 / 0.06)
    assert r["witness_auroc"] == pytest.approx(0.9) and math.isnan(at[(0.3, "DPO")]["auroc_w"])
    assert [r["noise"] for r in rows][:4] == [0.1] * 4  # cells in order


def test_build_writes_csv_markdown_and_a_traceable_entry(tmp_path):
    log = _log(tmp_path / "r.jsonl")
    entry = build_regime(str(log), tmp_path / "results", figures=False, max_steps=150)
    with open(tmp_path / "results" / "regime.csv") as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS and header[:12] == [
        "dial", "noise", "noise_model", "method", "n_seeds", "witness_auroc", "clean_acc", "win_rate",
        "win_rate_lo", "win_rate_hi", "eta_abs_err", "auroc_w",
    ]  # fmt: skip
    assert entry["n_trainings"] == 21 and len(entry["source_sha256"]) == 64 and entry["files"]["md"] == "regime.md"
    md = (tmp_path / "results" / "regime.md").read_text()
    assert "| 0.5 | 0.3 | symmetric | 0.900 |" in md and "0.50 [0.50, 0.50]" in md


def test_trial_runs_of_other_lengths_are_left_out_and_bad_lines_named(tmp_path):
    short = dict(dial="0.5", noise=0.3, noise_model="symmetric", method="DPO", seed=0, max_steps=20, win_rate=0.0)
    log = _log(tmp_path / "r.jsonl", extra=[short])
    assert all(r["win_rate"] > 0 for r in load_runs(log, max_steps=150))
    log.write_text(log.read_text() + '{"dial": "0.5"\n')
    with pytest.raises(ValueError, match=r"r\.jsonl:23"):
        load_runs(log)
