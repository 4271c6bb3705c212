"""Reading copies (results/notebooks/) and the run index (papermill_runs/<profile>/index.md), issue 16.

No kernel runs here: a fake executor writes, for every run of a plan, the metrics a notebook would and an
executed notebook shaped like papermill's (timings, random cell ids, absolute paths, progress bars); the
real executions are covered by tests/pipeline. A few seconds in all.
"""

import json
import random
import uuid
from pathlib import Path

import nbformat
import pytest

from rpo import pipeline
from rpo.pipeline import run_plan
from rpo.pipeline.plan import expand
from rpo.pipeline.profiles import get_profile
from rpo.report import build, update_readme
from rpo.report.build import README_END, README_START
from rpo.report.notebooks import reading_copy, reading_names, write_reading_copies
from rpo.report.runindex import index_markdown, write_index

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def chunks(text: str, salt: int) -> list[str]:
    """``text`` cut into messages as a kernel's flushes might cut it: differently each execution."""
    cut = [0, *sorted(random.Random(salt).sample(range(1, len(text)), salt % 3)), len(text)]
    return [text[a:b] for a, b in zip(cut, cut[1:])]


def executed_notebook(path: Path, run, run_dir: Path, salt: int) -> None:
    """What papermill leaves for ``run``; ``salt`` changes only what varies between two executions."""
    rng = random.Random(salt)
    stamp = f"2026-12-0{1 + salt % 8}T12:{rng.randint(10, 59)}:00.{rng.randint(0, 999999):06d}Z"
    cells = [
        nbformat.v4.new_markdown_cell("# A notebook"),
        nbformat.v4.new_code_cell("x = 1\nmetrics_path = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            f'# Parameters\nrun_id = "{run.id}"\nmetrics_path = "{run_dir.resolve()}/{run.id}.json"\n'
            f'runs_root = "{run_dir.resolve().parent}"\n',
            metadata={"tags": ["injected-parameters"]},
        ),
        nbformat.v4.new_code_cell(
            "train()",
            outputs=[
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"Tokenizing:  50%|█████     | 640/1280 [00:0{salt}<00:00, {1000 + salt}.52 examples/s]\r"
                    f"Tokenizing: 100%|██████████| 1280/1280 [00:01<00:00, {900 + salt}.1 examples/s]\n",
                ),
                nbformat.v4.new_output(
                    "stream",
                    name="stderr",
                    text=f"{Path(pytest.__file__).parent}/x.py:3: FutureWarning: old\n  warnings.warn(\n",
                ),
                *(
                    nbformat.v4.new_output("stream", name="stdout", text=chunk)
                    for chunk in chunks(
                        f"{{'train_runtime': '{7 + salt}.386', 'train_samples_per_second': '{salt}3.1', "
                        "'train_loss': '0.6895'}\nDPO seed 0 {'clean_acc': 0.637}\n"
                        f"saved in {run_dir.resolve()}/{run.id}.json\n",
                        salt,
                    )
                ),
                nbformat.v4.new_output(
                    "execute_result",
                    data={"text/plain": f"<matplotlib.legend.Legend at 0x7f{salt:010x}>"},
                    execution_count=3,
                ),
                nbformat.v4.new_output(
                    "display_data",
                    data={"image/png": PNG, "text/plain": "<Figure size 600x350 with 1 Axes>"},
                ),
            ],
            execution_count=3,
        ),
    ]
    for c in cells:
        c["id"] = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
        if c.cell_type == "code":
            c.metadata["papermill"] = {"duration": rng.random(), "start_time": stamp, "status": "completed"}
            c.metadata["execution"] = {"iopub.execute_input": stamp, "shell.execute_reply": stamp}
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {
        "duration": rng.random(),
        "start_time": stamp,
        "end_time": stamp,
        "input_path": "<in-memory>",
        "output_path": str(run_dir.resolve() / f"{run.id}.tmp.ipynb"),
        "parameters": {**run.params, "metrics_path": f"{run_dir.resolve()}/{run.id}.json"},
        "environment_variables": {},
        "exception": None,
        "version": "2.7.0",
    }
    path.write_text(nbformat.writes(nb))


def fake_execute_with(salt: int):
    def fake_execute(run, run_dir, notebooks_dir, kernel_name, timeout_s):
        p = pipeline.run_files(run_dir, run.id)
        recs = [
            {"config": {**{k: v for k, v in c.items() if k != "seeds"}, "seed": s}, "metrics": {"clean_acc": 0.7}}
            for c in run.params.get("configs", [])
            for s in c["seeds"]
        ]
        pipeline.write_metrics(p["json"], run.params, recs)
        rec = json.loads(p["json"].read_text())
        rec["pipeline"] = {"notebook": run.notebook, "seconds": 1.5}
        p["json"].write_text(json.dumps(rec))
        executed_notebook(p["ipynb"], run, Path(run_dir), salt)
        return {"id": run.id, "status": "done", "seconds": 0.0, "error": None}

    return fake_execute


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The toy profile's full plan, every run done by the fake executor: (runs root, run folder, plan)."""
    root = tmp_path_factory.mktemp("runs")
    plan = expand(get_profile("toy"))
    run_dir = root / "toy"
    run_plan(plan, run_dir, execute_fn=fake_execute_with(1), progress=False)
    return root, run_dir, plan


def test_a_rerun_gives_the_same_reading_copy_without_the_volatile_parts(tmp_path, toy_runs):
    _, run_dir, plan = toy_runs
    run = next(r for r in plan.runs if r.notebook == "02_train")
    copies = []
    for salt in (1, 2):
        where = tmp_path / f"clone{salt}" / "papermill_runs" / "toy"  # another checkout, another execution
        where.mkdir(parents=True)
        executed_notebook(where / "x.ipynb", run, where, salt)
        copies.append(reading_copy(where / "x.ipynb", where, "02_train-table2-1", run.id))
    assert copies[0] == copies[1]
    text = copies[0]
    for gone in ("/tmp", str(tmp_path), "examples/s", "7.386", "0x7f", "start_time", "iopub", "<in-memory>"):
        assert gone not in text, gone
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells] == ["cell-0", "cell-1", "cell-2", "cell-3"]
    assert nb.metadata.rpo == {"reading_copy": "02_train-table2-1", "run_id": run.id, "executed": "papermill_runs/toy"}
    injected = nb.cells[2].source
    assert 'metrics_path = ""' in injected and 'runs_root = "papermill_runs"' in injected
    assert f'run_id = "{run.id}"' in injected
    outs = nb.cells[3].outputs
    assert [o.output_type for o in outs] == ["stream", "stream", "execute_result", "display_data"]  # bars gone
    assert outs[0].text == "<site-packages>/pytest/x.py:3: FutureWarning: old\n  warnings.warn(\n"
    assert "'train_runtime': …" in outs[1].text and "'train_loss': '0.6895'" in outs[1].text
    assert f"saved in papermill_runs/toy/{run.id}.json" in outs[1].text
    assert outs[3].data["image/png"] == PNG and nb.cells[1].metadata.tags == ["parameters"]


def test_reading_names_are_stable_and_say_what_a_training_run_feeds():
    prof = get_profile("toy")
    runs = [(r.id, r.notebook, r.params) for r in expand(prof).runs]
    names = reading_names(prof, runs)
    assert names == reading_names(prof, list(reversed(runs)))  # order-free
    assert len(set(names.values())) == len(runs)
    steps = sorted(n for n in names.values() if not n.startswith("02_train"))
    assert steps == [
        "00_derivations",
        "01_data",
        "03_ablations",
        "04_reliability",
        "05_evaluate",
        "07_audit",
        "08_regime",
    ]
    trains = sorted(n for n in names.values() if n.startswith("02_train"))
    # Table 2 comes first, so its configs fill runs table2-1 ... table2-k on their own
    k = -(-len(prof.studies[0].configs) // prof.configs_per_run)
    assert f"02_train-table2-{k}" in trains and f"02_train-table2-{k + 1}" not in trains
    assert all(n.rsplit("-", 1)[0] in {f"02_train-{s.name}" for s in prof.studies} for n in trains)
    # Table 2's configs, two per run, in the profile's order: DPO and DPO+LS first
    first = next(p for rid, nb, p in runs if names[rid] == "02_train-table2-1")
    assert [(c["method"], c["robust"]) for c in first["configs"]] == [("dpo", False), ("dpo-ls", False)]


def test_copies_only_for_a_complete_study_and_never_wiped_by_missing_runs(tmp_path, toy_runs):
    _, run_dir, plan = toy_runs
    res = tmp_path / "results"
    written = write_reading_copies(get_profile("toy"), run_dir, res)
    assert written and len(written) == len(plan.runs)
    files = sorted(p.name for p in (res / "notebooks").iterdir())
    assert files == sorted(f"{n}.ipynb" for n in written)
    before = {p.name: p.read_bytes() for p in (res / "notebooks").iterdir()}
    assert write_reading_copies(get_profile("toy"), run_dir, res) == written  # same runs, same bytes
    assert {p.name: p.read_bytes() for p in (res / "notebooks").iterdir()} == before
    # a fresh clone: no runs at all; a partial study: one run missing. Neither touches the copies.
    assert write_reading_copies(get_profile("toy"), tmp_path / "no_runs" / "toy", res) is None
    partial = tmp_path / "partial" / "toy"
    run_plan(plan, partial, execute_fn=fake_execute_with(1), progress=False)
    pipeline.run_files(partial, plan.runs[-1].id)["ipynb"].unlink()
    assert write_reading_copies(get_profile("toy"), partial, res) is None
    assert {p.name: p.read_bytes() for p in (res / "notebooks").iterdir()} == before
    (res / "notebooks" / "02_train-old-name.ipynb").write_text("{}")  # a name the scheme no longer gives
    write_reading_copies(get_profile("toy"), run_dir, res)
    assert not (res / "notebooks" / "02_train-old-name.ipynb").exists()


def test_tables_write_copies_and_the_readme_links_them_next_to_each_table(tmp_path, toy_runs):
    root, _, _ = toy_runs
    res = tmp_path / "results"
    manifest = build("toy", runs_root=root, results_dir=res, figures=False)
    copies = manifest["notebooks"]
    assert copies["02_train-table2-1"]["file"] == "notebooks/02_train-table2-1.ipynb"
    assert json.loads((res / "manifest.json").read_text())["notebooks"] == copies
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\n{README_END}\n")
    assert update_readme(readme, manifest, res)
    block = readme.read_text()
    table2 = block[block.index("Table 2 analogue") : block.index("Table 3 analogue")]
    assert "[02_train-table2-1](results/notebooks/02_train-table2-1.ipynb)" in table2
    assert "02_train-table3" not in table2
    head = block[: block.index("Table 2 analogue")]
    assert "[00_derivations](results/notebooks/00_derivations.ipynb)" in head
    # the reduced grid (CI's) never writes copies, and a build without runs keeps the committed ones
    build("toy", grid="reduced", runs_root=root, results_dir=tmp_path / "ci", figures=False)
    assert not (tmp_path / "ci" / "notebooks").exists()
    before = {p.name: p.read_bytes() for p in (res / "notebooks").iterdir()}
    again = build("toy", runs_root=tmp_path / "fresh_clone", results_dir=res, figures=False, force=True)
    assert again["notebooks"] == copies  # still names the copies on disk, which are untouched
    assert {p.name: p.read_bytes() for p in (res / "notebooks").iterdir()} == before


def test_run_index_lists_every_run_with_what_it_feeds(tmp_path, toy_runs):
    root, run_dir, plan = toy_runs
    text = index_markdown("toy", "full", root)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(plan.runs) and all("| done |" in r for r in rows)
    table2 = next(r for r in rows if "results/notebooks/02_train-table2-1.ipynb" in r)
    assert "DPO ×3; DPO+LS ×3" in table2 and "table2: DPO, DPO+LS" in table2 and "noise_sweep: 0.2 · DPO" in table2
    assert "| 2 |" in table2  # seconds: 1.5 rounded
    assert any("03_ablations" in r and "reads the training runs" in r for r in rows)
    assert write_index("toy", "full", root) == run_dir / "index.md" and (run_dir / "index.md").read_text() == text
    # a folder with a failure and runs of an older plan: counted, not listed as the plan's
    failed = plan.runs[-1]
    pipeline.run_files(run_dir, failed.id)["ipynb"].rename(run_dir / "kept.ipynb")
    (run_dir / f"{failed.id}.failed.json").write_text(json.dumps({"run_id": failed.id, "seconds": 3.0}))
    try:
        text = index_markdown("toy", "full", root)
        assert f"| `{failed.id}` |" in text and "1 failed" in text
    finally:
        (run_dir / "kept.ipynb").rename(pipeline.run_files(run_dir, failed.id)["ipynb"])
        (run_dir / f"{failed.id}.failed.json").unlink()
