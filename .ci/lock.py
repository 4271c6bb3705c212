"""Write requirements.lock from the virtualenv it runs in (``make lock``), and environment.yml from it.

The lock is ``pip freeze --exclude-editable`` without rpo itself, pip and wheel, with setuptools (a runtime
dependency: alpaca_eval imports pkg_resources), every ``name @ url`` entry as ``name==version``, and torch
without its local build label (``2.13.0+cpu`` -> ``2.13.0``: the same release's CPU build here, its CUDA
build on a GPU node; the Makefile installs torch first). environment.yml pins pyproject.toml's dependencies
and the extras ``make install`` installs (dev, lab) at their locked versions.
``tests/pipeline/test_packaging.py`` checks the three against each other and the running environment."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DROP = {"rpo", "pip", "wheel"}
HEADER = """\
# The exact, tested environment of `make install` and CI (pip freeze of the project's .venv, written by
# `make lock`; pyproject.toml states the compatible ranges, tests/pipeline/test_packaging.py checks both).
# Installed by the Makefile as: torch first (this file's version; its CPU wheel where one is offered), then
#   pip install --no-deps -r requirements.lock   and   pip install --no-deps -e .
# torch is locked without its build label: here the 2.13.0+cpu wheel, on a GPU node the CUDA build.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_lines(freeze: str) -> list[str]:
    out = {}
    for line in freeze.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if " @ " in line:  # installed from a file or URL: lock the version it is
            name = line.split(" @ ", 1)[0].strip()
            line = f"{name}=={version(name)}"
        name, _, ver = line.partition("==")
        if canonical(name) in DROP:
            continue
        if canonical(name) == "torch":
            ver = ver.split("+", 1)[0]
        out[canonical(name)] = f"{name}=={ver}"
    out.setdefault("setuptools", f"setuptools=={version('setuptools')}")
    return [out[k] for k in sorted(out)]


ENV_HEADER = """\
# Conda environment for a cluster: pyproject.toml's dependencies and the dev and lab extras at the versions
# of requirements.lock (written with it by `make lock`; tests/pipeline/test_packaging.py checks the three agree).
# CPU machines: `make install` instead. Cluster: conda env create -f environment.yml (a GPU node gets the
# CUDA build of the locked torch from PyPI), then pip install -e ".[cluster]" for DeepSpeed.
name: rpo
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - make
  - pip:
"""
MAKE_EXTRAS = ("dev", "lab")  # the extras `make install` installs


def _req_name(req: str) -> str:
    return canonical(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


def environment_yml(lines: list[str]) -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in MAKE_EXTRAS:
        wanted += project["optional-dependencies"][extra]
    locked = {canonical(line.split("==")[0]): line.split("==")[1] for line in lines}
    names, seen = [], set()
    for req in wanted:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        if _req_name(req) not in seen:
            seen.add(_req_name(req))
            names.append(f"      - {name}=={locked[_req_name(req)]}")
    return ENV_HEADER + "\n".join(names + ["      - -e ."]) + "\n"


def main() -> int:
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True, check=True
    ).stdout
    lines = locked_lines(freeze)
    (ROOT / "requirements.lock").write_text(HEADER + "\n".join(lines) + "\n")
    (ROOT / "environment.yml").write_text(environment_yml(lines))
    print(f"wrote {len(lines)} pins to {ROOT / 'requirements.lock'} and environment.yml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
