"""The repository installs itself: pyproject.toml states compatible ranges, requirements.lock the exact tested
set (`make install` and CI install it), environment.yml the same versions for conda; the three agree and the
lock is this environment. `make lock` (.ci/lock.py) rewrites the lock and environment.yml from the venv."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
MAKE_EXTRAS = ("dev", "lab")  # what `make install` installs besides the dependencies


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, str]:
    pins = {}
    for n, line in enumerate((ROOT / "requirements.lock").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][^\s;#]*)", line.strip())
        assert m, f"requirements.lock:{n}: {line!r} is not an exact `name==version` pin"
        assert _canon(m[1]) not in pins, f"requirements.lock:{n}: {m[1]} pinned twice"
        pins[_canon(m[1])] = m[2]
    return pins


def _requirements(*extras: str) -> list[Requirement]:
    project = _project()
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_every_locked_version_satisfies_its_range():
    lock = _lock()
    for req in _requirements(*MAKE_EXTRAS):
        assert _canon(req.name) in lock, f"{req} (pyproject.toml) is not in requirements.lock"
    for req in _requirements(*_project()["optional-dependencies"]):  # cluster's deepspeed may be absent
        locked = lock.get(_canon(req.name))
        if locked is not None:
            assert req.specifier.contains(Version(locked), prereleases=True), (
                f"requirements.lock has {req.name}=={locked}, outside pyproject.toml's {req}"
            )


def test_ranges_are_ranges_and_trl_is_held_to_the_tested_minor():
    reqs = {_canon(r.name): r for r in _requirements(*_project()["optional-dependencies"])}
    assert str(reqs["trl"].specifier) == "<1.17,>=1.16"  # the trainer mirrors TRL 1.16's internals
    assert str(reqs["setuptools"].specifier) == "<82"  # alpaca_eval needs pkg_resources
    exact = [str(r) for r in reqs.values() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not exact, f"exact pins belong in requirements.lock, not pyproject.toml: {exact}"
    unbounded = [str(r) for r in reqs.values() if not any(s.operator in ("<", "<=", "~=") for s in r.specifier)]
    assert not unbounded, f"ranges without an upper bound: {unbounded}"


def test_environment_yml_pins_the_locked_versions():
    lock = _lock()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert pip[-1] == "-e ."
    got = {}
    for entry in pip[:-1]:
        name, _, ver = entry.partition("==")
        got[_canon(name)] = ver
    wanted = {_canon(r.name) for r in _requirements(*MAKE_EXTRAS)}
    assert set(got) == wanted, f"only in environment.yml: {set(got) - wanted}; missing: {wanted - set(got)}"
    wrong = {n: (v, lock[n]) for n, v in got.items() if v != lock[n]}
    assert not wrong, f"environment.yml vs requirements.lock: {wrong}"


def test_the_lock_is_this_environment():
    # run `make lock` after installing or upgrading anything, so that a fresh `make install` gets this set
    lock = _lock()
    assert "rpo" not in lock and "torch" in lock
    differ = {}
    for name, locked in lock.items():
        try:
            here = version(name)
        except PackageNotFoundError:
            here = None
        if here is None or Version(here).public != Version(locked).public:  # torch: 2.13.0+cpu is 2.13.0
            differ[name] = (locked, here)
    assert not differ, f"requirements.lock vs this environment (locked, installed): {differ}"


def test_the_makefile_and_ci_install_from_the_lock():
    make = (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements.lock" in make and "requirements.lock" in make.split("install:")[0]
    assert re.search(r"--no-deps -e \.", make)
    assert "apt-get install" in (ROOT / ".ci" / "run").read_text()


def test_import_rpo_does_not_import_trl():
    # Importing TRL costs ~10 s; the math core and the lazy package init must not pay it.
    import subprocess
    import sys

    code = "import sys, rpo; rpo.pair_losses; assert 'trl' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
