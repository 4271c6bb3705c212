"""CI's run of the study: every notebook of the toy profile, on the reduced grid, through papermill, and
the tables regenerated from exactly those runs (issue 6). About 2 minutes on 2 cores."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_reduced_toy_study_regenerates_every_table(tmp_path, reduced_toy_run):
    from rpo.pipeline import run_dir_of
    from rpo.pipeline.profiles import get_profile
    from rpo.report import build

    runs, results = reduced_toy_run  # tests/pipeline/conftest.py: run once, shared with test_slurm.py
    failed = [r for r in results if r["status"] != "done"]
    assert not failed, failed
    notebooks = {
        json.loads(p.read_text())["pipeline"]["notebook"]
        for p in run_dir_of("toy", "reduced", runs).glob("*.json")
        if p.name != "plan.json"
    }
    assert notebooks == {
        "00_derivations",
        "01_data",
        "02_train",
        "03_ablations",
        "04_reliability",
        "05_evaluate",
        "07_audit",
        "08_regime",
    }

    manifest = build("toy", grid="reduced", runs_root=runs, results_dir=tmp_path / "results")
    profile = get_profile("toy", "reduced")
    for study in profile.studies:
        assert (tmp_path / "results" / f"{study.name}.md").exists()
    # issue 12's ceilings and controls: the noise damage row and the recovered share are in both Table 2s
    for name in ("table2", "table2_informative"):
        text = (tmp_path / "results" / f"{name}.md").read_text()
        assert (
            "noise damage (DPO (clean labels) − DPO)" in text and "share of the noise damage recovered: R-DPO" in text
        )
    assert manifest["regime"]["files"]["csv"] == "regime.csv"  # the map, from the committed benchmark log
    cells = [c for t in manifest["tables"].values() for c in t["cells"]]
    assert cells and all(c["n"] == c["n_expected"] and c["n_failed"] == 0 for c in cells)
    # every number traces to runs that exist in this folder, with their commit and package versions
    run_ids = {rid for c in cells for rid in c["run_ids"]}
    assert run_ids <= set(manifest["runs"])
    assert all((run_dir_of("toy", "reduced", runs) / f"{rid}.ipynb").exists() for rid in run_ids)
