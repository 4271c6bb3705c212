"""Tables from synthetic metrics JSONs: t-intervals, paired RPO gains, missing runs, manifest, files."""

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from rpo import pipeline
from rpo.pipeline import config_hash, run_id, write_metrics
from rpo.pipeline.profiles import FigureSpec, Profile, Study, config, get_profile
from rpo.report import build, collect_runs, format_cell, t_interval

DPO, RDPO, IPO, RIPO = (
    config(method="dpo"),
    config(method="dpo", robust=True),
    config(method="ipo"),
    config(method="ipo", robust=True),
)
SEEDS = 4
RNG = np.random.default_rng(0)
# per-seed values: R-DPO = DPO + planted gain + small noise, so the paired gain is known
BASE = {s: 0.6 + 0.05 * RNG.standard_normal() for s in range(SEEDS)}
GAIN = {s: 0.04 + 0.005 * RNG.standard_normal() for s in range(SEEDS)}


def value(cfg, seed):
    v = BASE[seed] + (GAIN[seed] if cfg["robust"] else 0.0)
    return v - 0.1 * (cfg["method"] == "ipo")


def profile():
    t2 = Study(
        "t2", "Table 2 test", (DPO, RDPO, IPO, RIPO), SEEDS, rows=("label",), metrics=("acc", "auroc"), gains=True
    )
    sweep = Study(
        "sweep",
        "Sweep test",
        (DPO, RDPO, config(method="dpo", noise=0.4), config(method="dpo", robust=True, noise=0.4)),
        2,
        rows=("noise",),
        columns="label",
        metrics=("acc",),
        figure=FigureSpec(x="noise", y=("acc",), hue="label"),
    )
    return Profile("syn", "toy", "02_train", {}, (t2, sweep))


def write_run(run_dir, cfgs, *, fail=False, done=True):
    """A run as the pipeline leaves it: metrics JSON + ipynb (done), or a failure record."""
    params = {"configs": [{**c, "seeds": list(range(SEEDS))} for c in cfgs]}
    rid = run_id("02_train", params)
    p = pipeline.run_files(run_dir, rid)
    run_dir.mkdir(parents=True, exist_ok=True)
    if fail:
        pipeline.atomic_write_json(
            p["failed"],
            {
                "run_id": rid,
                "params": params,
                "error_type": "RuntimeError",
                "git_commit": "abc",
                "package_versions": {},
            },
        )
        return rid
    recs = [
        {
            "config": {**c, "seed": s},
            "metrics": {"acc": value(c, s), "auroc": 0.8 if c["robust"] else None, "curve": [1, 2]},
        }
        for c in cfgs
        for s in range(SEEDS)
    ]
    write_metrics(p["json"], params, recs)
    if done:
        p["ipynb"].write_text("{}")
    return rid


def test_t_interval_matches_scipy():
    x = [0.61, 0.64, 0.58, 0.66, 0.60]
    mean, half = t_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x)) and half == pytest.approx((hi - lo) / 2)
    assert math.isnan(t_interval([0.5])[1]) and math.isnan(t_interval([])[0])


def test_format_cell_says_what_is_missing():
    c = {"mean": 0.5, "half": 0.01, "n": 3, "n_expected": 5, "n_failed": 2, "n_not_run": 0, "n_nan": 0}
    assert format_cell(c) == "missing (2/5 seeds failed)"
    assert format_cell({**c, "n_failed": 1, "n_not_run": 1}) == "missing (2/5 seeds: 1 failed, 1 not run)"
    assert format_cell({**c, "n": 5}) == "0.500 ± 0.010"
    assert format_cell({**c, "n": 5, "mean": 0.031}, sign=True) == "+0.031 ± 0.010"
    assert format_cell({**c, "n": 5, "n_nan": 5}) == "n/a"


def test_tables_from_synthetic_runs_with_missing_ones(tmp_path):
    runs = tmp_path / "runs" / "syn"
    r_dpo = write_run(runs, [DPO, RDPO])
    r_ipo = write_run(runs, [IPO])
    r_ripo = write_run(runs, [RIPO], fail=True)  # failed: all 4 seeds of R-IPO missing
    write_run(runs, [config(method="dpo", noise=0.4)], done=False)  # killed: metrics but no .ipynb
    # R-DPO at noise 0.4 never ran at all
    found, runinfo = collect_runs(runs)
    assert set(found["status"]) == {"ok", "failed"} and "curve" not in found.columns  # lists are not tabled
    assert runinfo[r_ripo]["status"] == "failed"
    res = tmp_path / "results"
    manifest = build(profile(), runs_root=tmp_path / "runs", results_dir=res)

    md = (res / "t2.md").read_text()
    rows = {
        line.split("|")[1].strip(" *"): [c.strip(" *") for c in line.split("|")[2:-1]]
        for line in md.splitlines()
        if line.startswith("| ") and "label" not in line
    }
    dpo = [value(DPO, s) for s in range(SEEDS)]
    m, h = t_interval(dpo)
    assert rows["DPO"][0] == f"{m:.3f} ± {h:.3f}"
    assert rows["DPO"][1] == "n/a"  # reported as None by the run
    gains = [value(RDPO, s) - value(DPO, s) for s in range(SEEDS)]
    gm, gh = t_interval(gains)  # paired by seed: a much tighter interval
    assert rows["RPO gain (R-DPO − DPO)"][0] == f"{gm:+.3f} ± {gh:.3f}"
    assert gh < t_interval([value(RDPO, s) for s in range(SEEDS)])[1]
    assert rows["R-IPO"] == ["missing (4/4 seeds failed)"] * 2
    assert rows["RPO gain (R-IPO − IPO)"][0] == "missing (4/4 seeds failed)"
    assert "**RPO gain (R-DPO − DPO)**" in md  # highlighted

    lines = list(csv.DictReader(open(res / "sweep.csv")))
    at04 = {r["column"]: r for r in lines if r["noise"] == "0.4"}
    assert at04["DPO"]["text"] == "missing (2/2 seeds not run)"  # the killed run does not count
    assert at04["R-DPO"]["text"] == "missing (2/2 seeds not run)"
    at02 = {r["column"]: r for r in lines if r["noise"] == "0.2"}
    assert float(at02["R-DPO"]["mean"]) == pytest.approx(np.mean([value(RDPO, s) for s in range(2)]), abs=1e-5)

    tex = (res / "t2.tex").read_text()
    assert r"\textbf{RPO gain (R-DPO $-$ DPO)}" in tex and r"$\pm$" in tex and "\\toprule" in tex
    assert (res / "sweep.png").stat().st_size > 1000 and (res / "sweep.svg").exists()

    cell = next(c for c in manifest["tables"]["t2"]["cells"] if c["row"]["label"] == "DPO" and c["column"] == "acc")
    assert cell["run_ids"] == [r_dpo] and cell["config_hashes"] == [config_hash(DPO)]
    assert cell["n"] == SEEDS and cell["mean"] == pytest.approx(m)
    assert cell["git_commits"] == [pipeline.git_commit()]
    gain = next(c for c in manifest["tables"]["t2"]["cells"] if c["gain"] and "R-IPO" in c["row"]["label"])
    assert set(gain["run_ids"]) == {r_ipo, r_ripo}  # both sides of the pair are traced
    assert manifest["runs"][r_dpo]["package_versions"]["torch"].startswith("2.13")
    on_disk = json.loads((res / "manifest.json").read_text())
    assert on_disk["tables"]["t2"]["files"]["md"] == "t2.md"

    before = {p.name: p.read_bytes() for p in res.iterdir() if p.suffix in (".md", ".csv", ".tex", ".json", ".svg")}
    build(profile(), runs_root=tmp_path / "runs", results_dir=res)
    after = {p.name: p.read_bytes() for p in res.iterdir() if p.suffix in (".md", ".csv", ".tex", ".json", ".svg")}
    assert before == after  # no timestamps: same runs, same bytes


def test_toy_profile_tables_with_no_runs_mark_everything_missing(tmp_path):
    manifest = build("toy", grid="reduced", runs_root=tmp_path, results_dir=tmp_path / "res", figures=False)
    names = {s.name for s in get_profile("toy", "reduced").studies}
    assert set(manifest["tables"]) == names
    for name, table in manifest["tables"].items():
        assert table["cells"], name
        assert all(c["n"] == 0 and c["text"].startswith("missing") for c in table["cells"]), name
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / "res" / f"{name}.{ext}").exists()


def test_bad_metrics_json_is_named(tmp_path):
    run_dir = tmp_path / "p"
    run_dir.mkdir()
    (run_dir / "02_train-x.json").write_text("{not json")
    (run_dir / "02_train-x.ipynb").write_text("{}")
    found, runs = collect_runs(run_dir)  # a corrupt run counts as missing (and is executed again), named
    assert found.empty and runs["02_train-x"]["status"] == "corrupt"
    assert "02_train-x.json:1: not valid JSON" in runs["02_train-x"]["error"]
