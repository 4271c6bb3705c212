"""Old flat module names (``rpo.trainer``, ``rpo.losses``, ...) keep importing, with a DeprecationWarning,
for a while after the move to layer subpackages: each old name is an alias of its new module."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> new module
MOVED = {
    "rpo.checks": "rpo.core.checks",
    "rpo.losses": "rpo.core.losses",
    "rpo.em": "rpo.core.em",
    "rpo.theory": "rpo.core.theory",
    "rpo.derivations": "rpo.core.derivations",
    "rpo.trainer": "rpo.training",
    "rpo.train": "rpo.training.launch",
    "rpo.recipes": "rpo.training.recipes",
    "rpo.world": "rpo.toy.world",
    "rpo.metrics": "rpo.toy.metrics",
    "rpo.study": "rpo.toy.study",
    "rpo.profiles": "rpo.pipeline.profiles",
    "rpo.tables": "rpo.report",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there (the old name will go)",
            DeprecationWarning,
            stacklevel=3,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module):
        pass  # the new module is already executed

    def get_code(self, fullname):
        # `python -m rpo.train ...` (runpy) runs the new module's code as __main__
        warnings.warn(f"python -m {fullname} moved to python -m {self.new}", DeprecationWarning, stacklevel=2)
        return importlib.util.find_spec(self.new).loader.get_code(self.new)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in MOVED:
            return importlib.util.spec_from_loader(name, _AliasLoader(MOVED[name]))
        return None


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
