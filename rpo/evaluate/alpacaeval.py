"""AlpacaEval 2 (Dubois et al., 2024) through the ``alpaca_eval`` package (0.6.6) itself.

* Raw win rate and its standard error: ``alpaca_eval.metrics.get_winrate`` on the annotations.
* Length-controlled (LC) win rate: ``alpaca_eval.metrics.get_length_controlled_winrate`` itself, with
  only its download replaced. That function fetches ``df_gamed.csv`` (per-instruction difficulty and
  the annotations of two deliberately verbose/concise "gamed" baselines) from the Hugging Face Hub,
  which fails offline. Two paths:

  - **official** (``lc_glm="length_controlled_v1"``): given a local ``df_gamed.csv`` (argument,
    ``$RPO_ALPACAEVAL_DF_GAMED``, or the Hugging Face cache), the download is pointed at that file and
    the number is the official one: GLM ``tanh(std_delta_len) + instruction_difficulty + model``,
    regularised toward the gamed baselines with lambda 0.2, 5-fold CV. Needs the 805 AlpacaEval
    instructions in the dataset's order (the GLM looks difficulty up by row position).
  - **offline** (``lc_glm="length_controlled_minimal"``, alpaca_eval's own registered GLM): the formula
    ``tanh(std_delta_len) + model``, no instruction-difficulty term and no regularisation, so no
    ``df_gamed.csv`` is read (a stub with zero difficulty is handed to the featuriser, whose column
    the minimal formula never uses). Difference from the official number: the per-instruction
    difficulty and the pull toward the gamed baselines are missing; the length term is the same.
    Its ``lc_standard_error`` as alpaca_eval defines it (the spread of per-instruction predictions) is
    0 by construction, because without the difficulty term every prediction is equal; pass
    ``lc_bootstrap`` > 0 for a bootstrap standard error (resampled annotations, GLM refitted).

* Judges: offline, any object with ``preference(instruction, output_1, output_2)`` or any
  ``score(prompt, response)`` callable (see :mod:`rpo.evaluate.judges`); on a cluster, an
  ``alpaca_eval`` annotator config name, ``weighted_alpaca_eval_gpt4_turbo`` by default (needs
  ``OPENAI_API_KEY``), run through ``alpaca_eval.main.evaluate``.

Annotations follow alpaca_eval: ``output_1``/``generator_1`` the reference, ``output_2``/
``generator_2`` the model, ``preference`` in [1, 2] (2 = model better, 1.5 = tie).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from rpo.evaluate import formats
from rpo.evaluate.judges import ALPACAEVAL_ANNOTATOR, as_judge

LC_OFFICIAL = "length_controlled_v1"
LC_OFFLINE = "length_controlled_minimal"
ALPACAEVAL_SIZE = 805
LC_MIN_ANNOTATIONS = 5  # alpaca_eval's GLM cross-validates over 5 folds of instructions
MIN_USABLE = 0.9  # the least share of instructions with a usable preference a score may rest on


def _records(outputs, what: str) -> list[dict]:
    if isinstance(outputs, (str, Path)):
        return formats.read_alpacaeval(outputs)
    if isinstance(outputs, pd.DataFrame):
        outputs = outputs.to_dict(orient="records")
    outputs = list(outputs)
    first = {}
    for i, r in enumerate(outputs):
        if not isinstance(r, dict) or not isinstance(r.get("instruction"), str) or not isinstance(r.get("output"), str):
            raise ValueError(f"{what}[{i}] must be a dict with string 'instruction' and 'output'")
        if r["instruction"] in first:  # judged twice, or one answer standing for two: the win rate moves
            raise ValueError(f"{what}[{i}] repeats the instruction of {what}[{first[r['instruction']]}]")
        first[r["instruction"]] = i
    return outputs


def judge_pairs(model_outputs, reference_outputs, judge, *, progress: bool = True) -> pd.DataFrame:
    """Pairwise annotations from a local judge, one row per reference instruction (in its order).

    ``model_outputs``/``reference_outputs``: AlpacaEval records (list of dicts, DataFrame, or a JSON
    file). Every reference instruction must have a model output (ValueError names the first missing).
    """
    from tqdm.auto import tqdm

    model, ref = _records(model_outputs, "model_outputs"), _records(reference_outputs, "reference_outputs")
    judge = as_judge(judge)
    by_instr = {r["instruction"]: r for r in model}
    missing = [r["instruction"] for r in ref if r["instruction"] not in by_instr]
    if missing:
        raise ValueError(f"model outputs lack {len(missing)} reference instruction(s), first: {missing[0][:80]!r}")
    name = getattr(judge, "name", type(judge).__name__)
    rows = []
    for r in tqdm(ref, desc="annotate", disable=not progress):
        m = by_instr[r["instruction"]]
        pref = float(judge.preference(r["instruction"], r["output"], m["output"]))
        if not 1.0 <= pref <= 2.0:
            raise ValueError(f"judge {name!r} returned preference {pref} outside [1, 2] for {r['instruction'][:60]!r}")
        rows.append(
            {
                "instruction": r["instruction"],
                "output_1": r["output"],
                "generator_1": r.get("generator", "reference"),
                "output_2": m["output"],
                "generator_2": m.get("generator", "model"),
                "annotator": name,
                "preference": pref,
            }
        )
    return pd.DataFrame(rows)


def find_df_gamed(path: Path | str | None = None, *, download: bool = False) -> Path | None:
    """A local ``df_gamed.csv``: ``path``, else ``$RPO_ALPACAEVAL_DF_GAMED``, else the Hugging Face
    cache (fetched from the Hub first only with ``download=True``, e.g. on a cluster); None when
    there is none."""
    path = path or os.environ.get("RPO_ALPACAEVAL_DF_GAMED")
    if path:
        if not Path(path).exists():
            raise ValueError(f"df_gamed file {path} does not exist")
        return Path(path)
    try:
        from huggingface_hub import hf_hub_download

        return Path(
            hf_hub_download("tatsu-lab/alpaca_eval", "df_gamed.csv", repo_type="dataset", local_files_only=not download)
        )
    except Exception:  # not cached (or no network): the offline GLM is used
        return None


@contextlib.contextmanager
def _df_gamed_served(csv_path: Path):
    """Point alpaca_eval's Hub download of ``df_gamed.csv`` at a local file, for this block only."""
    from unittest import mock

    import alpaca_eval.metrics.glm_winrate as glm

    with mock.patch.object(glm, "hf_hub_download", lambda *a, **k: str(csv_path)), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.9 deprecations inside alpaca_eval
        yield glm


def length_controlled(annotations: pd.DataFrame, *, df_gamed: Path | str | None = None) -> dict:
    """alpaca_eval's ``get_length_controlled_winrate`` without the download (see the module docstring):
    the official GLM when ``df_gamed`` (a local ``df_gamed.csv``) is given, the minimal GLM otherwise.
    Returns alpaca_eval's metrics plus ``lc_glm``."""
    # alpaca_eval reads the instruction's position from the index (difficulty is looked up by it), so
    # the index is kept: a bootstrap resample carries each row's original position
    df = annotations
    if not pd.api.types.is_integer_dtype(df.index):
        raise ValueError("annotations must be indexed by instruction position (0..n-1)")
    for col in ("preference", "output_1", "output_2", "generator_1", "generator_2"):
        if col not in df.columns:
            raise ValueError(f"annotations lack column {col!r}")
    if len(df) < LC_MIN_ANNOTATIONS:
        raise ValueError(
            f"the length-controlled GLM (5-fold CV) needs at least {LC_MIN_ANNOTATIONS} annotations, got {len(df)}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if df_gamed is not None:
            glm_name, csv = LC_OFFICIAL, Path(df_gamed)
            n_known = pd.read_csv(csv, usecols=["index"])["index"].nunique()
            if df.index.max() >= n_known:
                raise ValueError(
                    f"annotation position {df.index.max()} but {csv} knows {n_known} instructions; "
                    "the official LC needs AlpacaEval's 805 instructions in the dataset's order"
                )
        else:
            glm_name, csv = LC_OFFLINE, Path(tmp) / "df_gamed_stub.csv"
            stub = pd.DataFrame(
                {"model": "stub", "index": np.arange(df.index.max() + 1), "instruction_difficulty": 0.0}
            )
            stub.to_csv(csv, index=False)
        with _df_gamed_served(csv) as glm:
            out = glm.get_length_controlled_winrate(
                df,
                glm_name=glm_name,
                save_weights_dir=None,
                is_add_glm_preference_inplace=False,
                is_warn_extreme_changes=False,
            )
            out["lc_extreme_change"] = bool(
                glm.get_is_extreme_changes(out["win_rate"], out["length_controlled_winrate"])
            )
    out["lc_glm"] = glm_name
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}


def lc_bootstrap(
    annotations: pd.DataFrame, *, rounds: int = 50, seed: int = 0, df_gamed: Path | str | None = None
) -> np.ndarray:
    """LC win rates refitted on ``rounds`` resamplings of the annotations (for a standard error)."""
    rng = np.random.default_rng(seed)
    df = annotations.reset_index(drop=True)
    out = []
    for _ in range(rounds):
        sample = df.iloc[rng.integers(0, len(df), len(df))]  # keeps each row's position as its index
        out.append(length_controlled(sample, df_gamed=df_gamed)["length_controlled_winrate"])
    return np.asarray(out)


def evaluate_alpacaeval(
    answers,
    reference_answers,
    judge=ALPACAEVAL_ANNOTATOR,
    *,
    df_gamed=None,
    download_df_gamed: bool = False,
    output_dir: Path | str | None = None,
    lc_bootstrap_rounds: int = 0,
    seed: int = 0,
    max_instances: int | None = None,
    progress: bool = True,
    alpaca_eval_kwargs: dict | None = None,
    min_usable: float = MIN_USABLE,
) -> dict:
    """AlpacaEval 2 metrics of ``answers`` against ``reference_answers``.

    Args:
        answers, reference_answers: AlpacaEval records (list of dicts, DataFrame, or JSON file path).
        judge: an alpaca_eval annotator config name (cluster: needs an API key), a judge object with
            ``preference``, or a ``score(prompt, response)`` callable (offline).
        df_gamed: a local ``df_gamed.csv`` for the official LC (else found by :func:`find_df_gamed`,
            else the offline minimal GLM); ``download_df_gamed=True`` lets it come from the Hub.
        output_dir: where ``annotations.json`` and ``metrics.json`` are written (atomically).
        lc_bootstrap_rounds: > 0 adds ``lc_standard_error_bootstrap``.
        alpaca_eval_kwargs: extra arguments for ``alpaca_eval.main.evaluate`` when ``judge`` is a config
            name (e.g. ``Annotator``, ``caching_path``).
        min_usable: the least share of reference instructions with a usable preference (an annotator
            may leave one unparsed, NaN); below it ValueError, since the win rate would rest on too few.
    Returns a dict: ``win_rate``, ``standard_error``, ``length_controlled_winrate``,
    ``lc_standard_error``, ``discrete_win_rate``, ``n_wins``, ``n_wins_base``, ``n_draws``, ``n_total``,
    ``avg_length``, ``lc_glm``, ``lc_extreme_change``, ``annotator``, ``generator``. With fewer than
    5 annotations the GLM cannot be fitted: LC is NaN and ``lc_glm`` None.
    """
    model, ref = _records(answers, "answers"), _records(reference_answers, "reference_answers")
    if max_instances is not None:
        ref = ref[:max_instances]
    if isinstance(judge, str):
        annotations = _annotate_with_alpaca_eval(model, ref, judge, output_dir, **(alpaca_eval_kwargs or {}))
        annotator = judge
    else:
        annotations = judge_pairs(model, ref, judge, progress=progress)
        annotator = annotations["annotator"].iloc[0]
    n_usable = int(pd.to_numeric(annotations["preference"], errors="coerce").notna().sum())
    if n_usable < min_usable * len(ref):
        raise ValueError(
            f"only {n_usable} of {len(ref)} instructions have a usable preference from {annotator!r}, below "
            f"min_usable={min_usable:g}; the win rate would rest on too few. Re-annotate, or lower --min-usable"
        )
    df_gamed = find_df_gamed(df_gamed, download=download_df_gamed)
    if df_gamed is not None and len(annotations) != ALPACAEVAL_SIZE:
        logging.warning(
            "df_gamed.csv found but %d annotations (not AlpacaEval's %d): offline GLM used",
            len(annotations),
            ALPACAEVAL_SIZE,
        )
        df_gamed = None
    if len(annotations) >= LC_MIN_ANNOTATIONS:
        metrics = length_controlled(annotations, df_gamed=df_gamed)
    else:  # too few for the GLM: raw win rate only, LC reported as missing
        from alpaca_eval.metrics import get_winrate

        logging.warning("%d annotations: too few for the length-controlled GLM, LC left NaN", len(annotations))
        metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in get_winrate(annotations).items()}
        metrics.update(
            length_controlled_winrate=float("nan"), lc_standard_error=float("nan"), lc_glm=None, lc_extreme_change=False
        )
    if lc_bootstrap_rounds > 0:
        boot = lc_bootstrap(annotations, rounds=lc_bootstrap_rounds, seed=seed, df_gamed=df_gamed)
        metrics["lc_standard_error_bootstrap"] = float(boot.std(ddof=1))
    metrics.update(
        avg_length=float(annotations["output_2"].str.len().mean()),
        annotator=annotator,
        generator=str(annotations["generator_2"].iloc[0]),
    )
    if output_dir is not None:
        output_dir = Path(output_dir)
        formats.write_json(output_dir / "annotations.json", annotations.to_dict(orient="records"))
        formats.write_json(output_dir / "metrics.json", metrics)
    return metrics


def _annotate_with_alpaca_eval(
    model: list[dict], ref: list[dict], annotators_config: str, output_dir, **kwargs
) -> pd.DataFrame:
    """alpaca_eval's own annotator (e.g. ``weighted_alpaca_eval_gpt4_turbo``); needs its API key."""
    from alpaca_eval import main as ae_main

    by_instr = {r["instruction"]: r for r in model}
    missing = [r["instruction"] for r in ref if r["instruction"] not in by_instr]
    if missing:
        raise ValueError(f"answers lack {len(missing)} reference instruction(s), first: {missing[0][:80]!r}")
    model_df = pd.DataFrame([by_instr[r["instruction"]] for r in ref])
    _, annotations = ae_main.evaluate(
        model_outputs=model_df,
        reference_outputs=pd.DataFrame(ref),
        annotators_config=annotators_config,
        output_path=output_dir,
        precomputed_leaderboard=None,
        is_return_instead_of_print=True,
        fn_metric="get_winrate",
        sort_by="win_rate",
        is_cache_leaderboard=False,
        **kwargs,
    )
    return pd.DataFrame(annotations).reset_index(drop=True)
