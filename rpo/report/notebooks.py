"""Reading copies: the committed study's executed notebooks in ``results/notebooks/``, one per run, so a
reader sees every notebook with its outputs and figures without running anything (issue 16). They are the
one exception to "executed notebooks live in ``papermill_runs/`` only".

Names (stable as long as the profile is): a notebook executed once per study keeps its name
(``00_derivations.ipynb``); a training run is named after the study that first asks for its first
configuration, numbered in plan order (``02_train-table2-1.ipynb`` ... ``02_train-table2-6``,
``02_train-table3-1`` ...); the run index and ``manifest.json`` (``notebooks``) say which cells each feeds.

A copy is the executed notebook with what varies between two executions of the same run removed, so the
same runs give the same bytes: papermill's and nbclient's timings, cell ids (fresh random ones each
execution), the absolute folders of this checkout (run folder, root, site-packages, home), memory
addresses in reprs (``at 0x7f...``), progress bars (their rates and times), printed timings
(``'train_runtime': ...``), and how a cell's printed text was cut into messages (each cell's stdout
and stderr are joined into one output each). The injected ``metrics_path`` is emptied, so re-running a copy can
never overwrite a run's metrics.

Copies are written only when every run of the profile's full grid is done (a fresh clone without runs,
or a partial study, leaves the committed copies alone); then ``results/notebooks/`` holds exactly them.
"""

from __future__ import annotations

import re
import site
from pathlib import Path

from rpo import paths
from rpo.io import atomic_write_text, read_json
from rpo.pipeline.plan import expand, run_files, status
from rpo.pipeline.profiles import Profile
from rpo.pipeline.provenance import config_hash
from rpo.report.collect import _plan

FOLDER = "notebooks"  # below results/
_ADDRESS = re.compile(r" at 0x[0-9a-f]{6,16}")
# a tqdm bar ("Tokenizing:  50%|█████     | 640/1280 [00:00<00:00, 1311.52 examples/s]"): rates and times vary
_BAR = re.compile(r"\[(\d+:)?\d\d:\d\d(<[^\]]*)?, [^\]]*\]\s*$")
# timings in a printed dict, e.g. the Trainer's last log line: 'train_runtime': '7.386'
_TIMING = re.compile(r"'(\w*(?:runtime|per_second))': '?[0-9.e+-]+'?")
_DROPPED_CELL_METADATA = ("papermill", "execution", "ExecuteTime")


def reading_names(profile: Profile, runs) -> dict[str, str]:
    """``{run id: reading-copy stem}`` for ``runs``, ``(run id, notebook, parameters)`` triples: the runs of
    one study (see the module doc). Derived from the parameters alone, so the runs' order does not matter
    and a run id that changes with the code keeps its name."""
    first_study: dict[str, str] = {}
    order: dict[str, int] = {}  # config hash -> position in the profile's study order (the plan packs so)
    for study in profile.studies:
        for cfg in study.configs:
            first_study.setdefault(config_hash(cfg), study.name)
            order.setdefault(config_hash(cfg), len(order))
    runs = sorted(runs, key=lambda r: (order.get(_first_config(r[2]), len(order)), r[0]))
    per_notebook = {nb: sum(r[1] == nb for r in runs) for nb in {r[1] for r in runs}}
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    for rid, notebook, params in runs:
        if params.get("configs"):
            key = f"{notebook}-{first_study.get(_first_config(params), 'other')}"
        elif per_notebook[notebook] == 1:
            names[rid] = notebook
            continue
        else:
            key = notebook
        counts[key] = counts.get(key, 0) + 1
        names[rid] = f"{key}-{counts[key]}"
    return names


def _first_config(params: dict) -> str | None:
    configs = params.get("configs") or []
    return config_hash(configs[0]) if configs else None


def study_runs(profile: Profile, run_dir) -> tuple[list[tuple[str, str, dict]], list[str]]:
    """``(runs, not_done)``: the runs the study in ``run_dir`` consists of, as ``(run id, notebook,
    parameters)``, and the ids among them that are not done. The ids are those the last ``rpo run``
    expected (plan.json), else the profile's plan for the code as it is now."""
    run_dir = Path(run_dir)
    plan = _plan(run_dir)
    known = {r["id"]: (r["notebook"], r["params"]) for r in plan.get("runs", [])}
    if "expected_run_ids" in plan:
        ids = list(plan["expected_run_ids"])
    else:
        ids = [r.id for r in expand(profile).runs]
        known.update({r.id: (r.notebook, r.params) for r in expand(profile).runs})
    runs, not_done = [], []
    for rid in ids:
        if status(run_dir, rid) != "done":
            not_done.append(rid)
            continue
        if rid not in known:  # outside an --only subset of the last rpo run: its record has what ran
            rec = read_json(run_files(run_dir, rid)["json"])
            known[rid] = ((rec.get("pipeline") or {}).get("notebook") or rid.rsplit("-", 1)[0], rec.get("params") or {})
        runs.append((rid, *known[rid]))
    return runs, not_done


def _replacements(run_dir: Path) -> list[tuple[str, str]]:
    """(absolute folder, what a copy says instead), longest first so a folder inside another wins."""
    pairs = {}
    for folder, short in (
        (Path(run_dir), f"papermill_runs/{Path(run_dir).name}"),
        (Path(run_dir).parent, "papermill_runs"),  # the injected runs_root
        (paths.root(), "."),
        *((Path(p), "<site-packages>") for p in site.getsitepackages()),
        (Path.home(), "~"),
    ):
        for form in (folder.absolute(), folder.resolve()):
            pairs.setdefault(str(form), short)
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def _scrub(text: str, pairs) -> str:
    for long, short in pairs:
        text = text.replace(long, short)
    return _TIMING.sub(r"'\1': …", _ADDRESS.sub(" at 0x…", text))


def _without_bars(text: str) -> str:
    """A stream's text without its progress-bar lines (each redraw ends in a carriage return)."""
    return "".join(line for line in re.split(r"(?<=[\r\n])", text) if not _BAR.search(line.rstrip("\r\n")))


def _merged_streams(outputs: list) -> list:
    """A cell's outputs with all its stdout in one output and all its stderr in another, each where its
    first chunk was: how the kernel splits a stream into messages, and interleaves stdout with stderr,
    depends on when its buffers were flushed, not on what the cell computed."""
    merged, streams = [], {}
    for out in outputs:
        if out.get("output_type") != "stream":
            merged.append(out)
        elif out.get("name") in streams:
            streams[out["name"]]["text"] += out.get("text", "")
        else:
            streams[out.get("name")] = {**out, "text": out.get("text", "")}
            merged.append(streams[out.get("name")])
    return merged


def _output(out: dict, pairs) -> dict | None:
    """One output of a reading copy, or None to leave it out (a stream of progress bars only)."""
    if out.get("output_type") == "stream":
        text = _without_bars(out.get("text", ""))
        if not text.strip():
            return None
        out = {**out, "text": text}
    return _scrub_value(out, pairs)


def _scrub_value(value, pairs):
    """Every string inside an output (text, markdown, html, tracebacks), images excepted."""
    if isinstance(value, str):
        return _scrub(value, pairs)
    if isinstance(value, list):
        return [_scrub_value(v, pairs) for v in value]
    if isinstance(value, dict):
        return {k: v if k.startswith("image/") else _scrub_value(v, pairs) for k, v in value.items()}
    return value


def reading_copy(ipynb, run_dir, name: str, run_id: str) -> str:
    """The text of the reading copy of ``ipynb`` (an executed run of ``run_dir``), in nbformat's layout."""
    import nbformat

    path = Path(ipynb)
    try:
        nb = nbformat.reads(path.read_text(), as_version=4)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds for a file that is not a notebook
        raise ValueError(f"{path}: not a readable notebook ({type(e).__name__}: {e})") from e
    pairs = _replacements(Path(run_dir))
    meta = nb.setdefault("metadata", {})
    params = (meta.pop("papermill", None) or {}).get("parameters")
    if params is not None:
        meta["papermill"] = {"parameters": _scrub_value(params, pairs)}
    meta["rpo"] = {"reading_copy": name, "run_id": run_id, "executed": f"papermill_runs/{Path(run_dir).name}"}
    for i, cell in enumerate(nb.get("cells", [])):
        cell["id"] = f"cell-{i}"  # nbformat asks for ids; a fresh random one per execution is noise
        md = cell.setdefault("metadata", {})
        for key in _DROPPED_CELL_METADATA:
            md.pop(key, None)
        source = cell.get("source", "")
        if "injected-parameters" in md.get("tags", []):
            source = re.sub(
                r"^metrics_path = .*$",
                'metrics_path = ""  # emptied in this reading copy: re-running it writes no metrics',
                source,
                flags=re.M,
            )
        cell["source"] = _scrub(source, pairs)
        if "outputs" in cell:
            outputs = (_output(o, pairs) for o in _merged_streams(cell["outputs"]))
            cell["outputs"] = [o for o in outputs if o is not None]
    return nbformat.writes(
        nbformat.from_dict(nb)
    )  # one-space indent, sorted keys, UTF-8, lines split as Jupyter writes them


def write_reading_copies(profile: Profile, run_dir, results_dir) -> dict | None:
    """Write ``results_dir/notebooks/<name>.ipynb`` for every run of the study in ``run_dir`` (the caller
    passes the full grid's: :func:`rpo.report.build.build` does so only for it) and remove other ``.ipynb``
    there; return ``{name: {"run_id", "notebook", "file"}}``. Returns None, touching nothing, unless every
    run of the study is done (see the module doc)."""
    run_dir, out = Path(run_dir), Path(results_dir) / FOLDER
    runs, not_done = study_runs(profile, run_dir)
    if not runs or not_done:
        return None
    names = reading_names(profile, runs)
    written = {}
    for rid, notebook, _ in runs:
        name = names[rid]
        text = reading_copy(run_files(run_dir, rid)["ipynb"], run_dir, name, rid)
        written[name] = {"run_id": rid, "notebook": notebook, "file": f"{FOLDER}/{name}.ipynb"}
        if not (out / f"{name}.ipynb").exists() or (out / f"{name}.ipynb").read_text() != text:
            atomic_write_text(out / f"{name}.ipynb", text)
    for stale in sorted(out.glob("*.ipynb")):
        if stale.stem not in written:
            stale.unlink()
    return dict(sorted(written.items()))
