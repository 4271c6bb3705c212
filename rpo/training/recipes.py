"""Training recipes: flat YAML files (alignment-handbook style) read by TRL's ``TrlParser``.

A recipe holds the keys of three dataclasses at one level:

* :class:`rpo.training.noisy.RecipeArguments` (``trl.ScriptArguments`` plus the noise settings): the
  dataset (``dataset_name``, ``dataset_train_split``, ...) and the noise injected into its training split
  (``noise_layout``, ``noise_rate``, ``noise_kind``, ``noise_seed``, ``noise_annotators``, section 5.4);
* :class:`rpo.training.RobustConfig` (a ``trl.DPOConfig``): the method and every optimisation setting;
* ``trl.ModelConfig``: the model (``model_name_or_path``, ``dtype``, ``attn_implementation``, LoRA).

The paper's 16 recipes live in ``recipes/<model>/<method>.yaml`` (written by ``recipes/generate.py``);
``recipes/accelerate/`` holds the launcher configs. TRL is imported lazily (~10 s).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Sequence

from rpo import paths
from rpo.core.methods import METHODS

PAPER_MODELS = ("mistral-7b-instruct", "llama-3-8b-instruct")
#: recipe stems: one per entry of the method registry (rpo.core.methods)
RECIPE_METHODS = tuple(METHODS)


def recipe_path(model: str, method: str) -> Path:
    """``recipes/<model>/<method>.yaml``; ValueError naming the bad argument if it does not exist."""
    folder = paths.recipes()
    path = folder / model / f"{method}.yaml"
    if not path.exists():
        models = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "accelerate")
        if model not in models:
            raise ValueError(f"no recipes for model {model!r}; have {models}")
        have = sorted(p.stem for p in (folder / model).glob("*.yaml"))
        raise ValueError(f"no recipe {method!r} for {model}; have {have}")
    return path


def list_recipes() -> list[Path]:
    """Every training recipe under ``recipes/`` (the launcher configs in ``recipes/accelerate`` excluded)."""
    return sorted(p for p in paths.recipes().glob("*/*.yaml") if p.parent.name != "accelerate")


def recipe_parser(config_cls=None):
    """A ``TrlParser`` over ``(RecipeArguments, config_cls, ModelConfig)``; ``config_cls`` defaults to
    :class:`rpo.training.RobustConfig`."""
    from trl import ModelConfig, TrlParser

    from rpo.training.noisy import RecipeArguments

    if config_cls is None:
        from rpo.training.config import RobustConfig as config_cls
    return TrlParser((RecipeArguments, config_cls, ModelConfig))


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Accept ``recipe.yaml [--key value ...]`` as well as TRL's ``--config recipe.yaml ...``."""
    argv = list(argv)
    if argv and argv[0].endswith((".yaml", ".yml")) and "--config" not in argv:
        argv = ["--config", argv[0], *argv[1:]]
    return argv


def load_recipe(path: str | Path, overrides: Sequence[str] = (), *, config_cls=None):
    """Parse a recipe into ``(script_args, training_args, model_args)``.

    ``overrides`` are command-line style (``["--learning_rate", "1e-6"]``) and win over the file. An
    unknown key in the file raises ValueError naming it (TrlParser's check); a missing file raises
    FileNotFoundError naming the path. On a machine without a GPU, pass ``["--use_cpu", "true"]`` to
    parse a ``bf16: true`` recipe (transformers refuses bf16 without a GPU otherwise).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"recipe not found: {path}")
    _check_yaml(path)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parsed = recipe_parser(config_cls).parse_args_and_config(["--config", str(path), *overrides])
    except SystemExit:  # argparse's way to refuse a value (e.g. eta0: high): a ValueError naming the recipe
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise ValueError(f"{path}: {lines[-1] if lines else 'refused by the argument parser'}") from None
    sys.stderr.write(err.getvalue())  # what the parser said on the way (warnings) is not swallowed
    return tuple(parsed)


def _check_yaml(path: Path) -> None:
    """The recipe is a YAML mapping; bad YAML is a ValueError naming the file and line (not yaml's frames)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of keys to values, got {type(data).__name__}")
