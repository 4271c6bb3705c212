"""``pip install .`` works outside the lock: the package (a plain, non-editable install of a copy of its
sources) goes into a fresh virtualenv that already holds another torch than requirements.lock's, pip
resolves the rest from pyproject.toml's ranges, and the installed package imports and runs from a folder
outside the checkout, finding the project through ``RPO_HOME`` (or the current folder).

Cache-friendly: pip's cache (and this machine's local wheel folders) serve the wheels; every step has a
time limit. Several minutes the first time (torch 2.14's PyPI wheel brings its CUDA libraries)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OTHER_TORCH = "2.14.1"  # not the lock's 2.13.0, inside pyproject.toml's range
STEP_TIMEOUT_S = 900


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=STEP_TIMEOUT_S, **kw)
    assert out.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out


def test_pip_install_into_a_fresh_venv_with_another_torch(tmp_path):
    import tomllib

    torch_req = next(
        Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if Requirement(r).name == "torch"
    )
    locked = next(line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("torch=="))
    assert Version(OTHER_TORCH) != Version(locked.split("==")[1]) and torch_req.specifier.contains(OTHER_TORCH)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RPO_HOME", "PYTHONHOME")}
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env)  # no --system-site-packages: nothing leaks in
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--no-compile", f"torch=={OTHER_TORCH}"], env=env)

    src = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rpo", src / "rpo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([py, "-m", "pip", "install", "-q", "--no-compile", "."], cwd=src, env=env)
    _run([py, "-m", "pip", "check"], env=env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, torch, rpo, rpo.core, rpo.data\n"
        "from rpo import paths\n"
        "from rpo.core.em import e_step\n"
        f"assert torch.__version__.startswith({OTHER_TORCH!r}), torch.__version__\n"
        f"assert rpo.__file__.startswith({str(venv)!r}), rpo.__file__\n"
        "w = e_step(torch.zeros(2), torch.zeros(2), torch.full((2,), 0.9))  # equal losses: w is the prior eta\n"
        "assert torch.allclose(w, torch.full((2,), 0.9)), w\n"
        "print(paths.root())\n"
    )
    with_home = _run([py, "-c", code], cwd=elsewhere, env={**env, "RPO_HOME": str(ROOT)})
    assert Path(with_home.stdout.strip()) == ROOT.resolve()
    without = _run([py, "-c", code], cwd=elsewhere, env=env)
    assert Path(without.stdout.strip()) == elsewhere.resolve()  # an installed package: the current folder
    cli = _run([venv / "bin" / "rpo", "--help"], cwd=elsewhere, env={**env, "RPO_HOME": str(ROOT)})
    assert "run" in cli.stdout and "tables" in cli.stdout
