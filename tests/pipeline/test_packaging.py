"""The repository installs itself: environment.yml and pyproject.toml pin the same set."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    for sep in ("==", ">=", "<=", "<", ">", "~=", "["):
        req = req.split(sep)[0]
    return req.strip().lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    assert got == wanted, (
        f"only in environment.yml: {set(got.items()) - set(wanted.items())}; "
        f"only in pyproject: {set(wanted.items()) - set(got.items())}"
    )
    assert "python=3.11" in env["dependencies"]


def test_trl_and_torch_are_pinned_exactly():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "trl==1.16.0" in deps and "torch==2.13.0" in deps
    assert "setuptools<82" in deps  # alpaca_eval needs pkg_resources


def test_import_rpo_does_not_import_trl():
    # Importing TRL costs ~10 s; the math core and the lazy package init must not pay it.
    import subprocess
    import sys

    code = "import sys, rpo; rpo.pair_losses; assert 'trl' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
