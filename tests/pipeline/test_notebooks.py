"""Notebooks are jupytext percent files with exactly one parameters cell of literals, and they run."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_literals(path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} parameters cells"
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: only assignments in the parameters cell"
        ast.literal_eval(node.value)  # raises on anything but a literal
        # papermill's own parser must understand every line (it silently skips lines it cannot parse)
    from papermill.translators import PythonTranslator

    parsed = PythonTranslator.inspect(cells[0])
    assert len(parsed) == len(ast.parse(cells[0].source).body), f"{path.name}: papermill cannot parse a parameter"


def test_derivations_notebook_executes(tmp_path):
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    nb = jupytext.read(ROOT / "notebooks" / "00_derivations.py")
    metrics = tmp_path / "m.json"
    papermill.execute_notebook(
        nb,
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        parameters={"n_labels": 20000, "em_steps": 40, "figure_dir": str(tmp_path), "metrics_path": str(metrics)},
    )
    out = json.loads(metrics.read_text())
    assert out["metrics"]["sympy_vs_pair_losses_max_abs_diff"] < 1e-9 and out["git_commit"]
    assert (tmp_path / "theorem42_em.png").exists()
