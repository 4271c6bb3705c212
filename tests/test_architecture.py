"""The architecture as tests: layers import one way, no import cycle between files, small files, few
flat modules, the math core pure torch, and the old flat names still importing (with a warning)."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rpo"

# layer -> the rpo layers it may import (besides itself); the base modules (io, paths, models) are below all
BASE = {"io", "paths", "models", "_deprecated"}
ALLOWED = {
    "core": set(),
    "data": {"core", "io", "paths"},
    "training": {"core", "data", "io", "paths", "models"},
    "evaluate": {"io", "paths", "models"},
    "toy": {"core", "data", "training", "evaluate", "io", "paths", "models"},
    "audit": {"core", "data", "training", "io", "paths", "models"},  # issue 14, a layer beside toy
    "pipeline": {"core", "data", "training", "toy", "evaluate", "audit", "io", "paths", "models"},
    "report": {"core", "pipeline", "io", "paths"},
    "io": set(),
    "paths": set(),
    "models": {"paths"},
    "_deprecated": set(),
    "cli": None,
    "__init__": {"core", "_deprecated", "training"},
    "__main__": {"cli"},  # None: anything
}
THIRD_PARTY_IN_CORE = {"torch", "numpy", "scipy", "sympy"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module imported anywhere in the file (lazy imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _rpo_edges(module: str) -> set[str]:
    targets = set()
    for name in _imports(MODULES[module]):
        if name.split(".")[0] != "rpo" or name == "rpo":
            continue
        while name not in MODULES:  # `from rpo.x import y` where y is a name: the module is rpo.x
            name = name.rsplit(".", 1)[0]
        if name != "rpo":
            targets.add(name)
    return targets


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_import_one_way(module):
    layer = _layer(module)
    allowed = ALLOWED[layer]
    if allowed is None:
        return
    for target in _rpo_edges(module):
        other = _layer(target)
        assert other == layer or other in allowed, f"{module} (layer {layer}) imports {target} (layer {other})"


def test_math_core_is_pure_torch():
    for module, path in MODULES.items():
        if _layer(module) != "core":
            continue
        for name in _imports(path):
            top = name.split(".")[0]
            assert top == "rpo" or top in THIRD_PARTY_IN_CORE or top in sys.stdlib_module_names, (module, name)


def test_no_import_cycle_between_files():
    graph = {m: {t for t in _rpo_edges(m) if t != m} for m in MODULES}
    # a package's __init__ re-exporting its submodules is not a cycle with them
    graph = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t) :] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_files_are_small_and_few_are_flat():
    long = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files over 400 lines: {long}"
    flat = sorted(p.name for p in PKG.glob("*.py"))
    assert len(flat) <= 8, flat


def test_old_flat_names_still_import_with_a_warning():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import rpo.losses\nexcept DeprecationWarning as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "rpo.losses moved to rpo.core.losses" in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from rpo.em import e_step as old
        from rpo.pipeline.profiles import get_profile
        from rpo.profiles import get_profile as old_profile
    from rpo.core.em import e_step

    assert old is e_step and old_profile is get_profile


def test_public_api():
    import rpo

    for name in (
        "RobustConfig",
        "RobustTrainer",
        "e_step",
        "e_step_and_loss",
        "pair_losses",
        "ema_update",
        "full_update",
        "init_eta",
        "ReliabilityTracker",
        "METHODS",
    ):
        assert getattr(rpo, name) is not None


def test_test_files_have_unique_basenames():
    # pytest's default import mode puts each test folder on sys.path: two test_x.py would collide
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
