"""The vocabulary of study profiles (:mod:`rpo.pipeline.profiles` builds the profiles from it): the training
config and its defaults, :class:`Study`, :class:`FigureSpec`, :class:`Step`, :class:`SlurmParams`,
:class:`Profile`, and the analysis notebooks every profile runs. Split from ``profiles`` so that profile
builders in other modules (:mod:`rpo.pipeline.paper_profiles`) use the same definitions without an import
cycle; ``rpo.pipeline.profiles`` re-exports every name."""

from __future__ import annotations

from dataclasses import dataclass, field

from rpo.core.methods import from_config
from rpo.toy.study import LABELS

# Every training config carries every key, so equal configs are equal dicts (and train once).
DEFAULTS = {
    "method": "dpo",  # base loss of Table 1: dpo | ipo | simpo | cpo; or cdpo | rdpo (known-noise baselines)
    "robust": False,  # True: the RPO (R-) version of `method` (section 4, Algorithm 1)
    "layout": "single",  # annotators (section 5.4): single | two (annotator 1 clean, annotator 2 at `noise`);
    # none (paper profiles on a dataset with its own annotators, MultiPref: nothing injected)
    "noise": 0.2,  # flip rate of the (noisy) annotator
    "eta0": 0.9,  # initial reliability (paper: 0.9)
    "alpha": 0.1,  # EMA rate of eq. 7 (paper: 0.1)
    "eta_update": "batch",  # batch (eq. 7, Algorithm 1) | epoch (eq. 6 after each epoch)
    "objective": "gibbs",  # gibbs (eq. 5) | weighted (w*L_wl + (1-w)*L_lw)
    # toy / small profiles only (TOY_ONLY, issues 12 and 13); the paper profiles refuse anything but these defaults
    "annotators": None,  # layout "pool" (issue 13): K annotators, reliabilities from the pool's distribution
    "labels": "noisy",  # what the trainer sees: noisy | true (the ceiling) | filtered (flipped pairs removed)
    "dial": "today",  # the toy world: today = WorldConfig() (the committed study's) | "0" .. "1" = dial_world(level)
    "beta": None,  # None: the profile's beta; a number: this config's (the dial studies' DIAL_SETTINGS)
}


#: the config keys only the toy world can honour: a paper config keeps their defaults (rpo.pipeline.paper)
TOY_ONLY = ("annotators", "labels", "dial", "beta")


def config(**overrides) -> dict:
    """A full training config: ``DEFAULTS`` with ``overrides``; unknown keys are an error."""
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known keys: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **overrides}
    from_config(cfg)  # the method must be one of the registry's (ValueError naming it otherwise)
    pool, k = cfg["layout"] == "pool", cfg["annotators"]
    if pool != (k is not None):
        raise ValueError(
            f"annotators=K goes with layout 'pool' and only with it; got layout {cfg['layout']!r}, K {k!r}"
        )
    if pool and not (type(k) is int and 1 <= k <= 256 and cfg["noise"] == 0):
        raise ValueError(
            f"layout 'pool' needs annotators in 1..256 and noise 0 (the pool draws each annotator's rate); "
            f"got annotators={k!r}, noise={cfg['noise']!r}"
        )
    if cfg["labels"] not in LABELS:
        raise ValueError(f"unknown labels {cfg['labels']!r}; expected one of {list(LABELS)}")
    if cfg["dial"] != "today" and not (isinstance(cfg["dial"], str) and 0.0 <= _level(cfg["dial"]) <= 1.0):
        raise ValueError(f"dial must be 'today' or a level in [0, 1] as a string, e.g. '0.5'; got {cfg['dial']!r}")
    return cfg


def _level(dial: str) -> float:
    try:
        return float(dial)
    except ValueError:
        return float("nan")


def row_label(cfg: dict) -> str:
    """A config's row in the tables: the method's display name, and which labels it trained on."""
    return from_config(cfg).label + LABELS[cfg.get("labels", "noisy")]


@dataclass(frozen=True)
class FigureSpec:
    """A line plot of a study: mean and 95% t-interval over seeds of each ``y`` against ``x``.

    ``x`` is a column of the tidy frame (config key or metric); ``y`` one metric or several (drawn as
    separate series); ``hue`` splits series by a column (e.g. "label"); ``col`` facets by a column.
    """

    x: str
    y: tuple[str, ...]
    hue: str | None = None
    col: str | None = None
    diagonal: bool = False  # draw y = x (e.g. estimated eta against true eta)
    xlabel: str | None = None
    ylabel: str | None = None


@dataclass(frozen=True)
class Study:
    """One table (and optionally a figure) of results/.

    rows: tidy-frame columns that index the table's rows ("label" is the method's display name).
    columns: optional column pivoted into table columns (e.g. "noise"); else one column per metric.
    gains: add, under each R-method, the paired (same seed) difference R-X minus X, highlighted.
    recovery: ``(base, ceiling, methods)`` row labels: add, per method, the share of the noise damage it
        recovers, (method - base) / (ceiling - base), paired by seed (:mod:`rpo.report.recovery`).
    """

    name: str
    title: str
    configs: tuple[dict, ...]
    seeds: int
    rows: tuple[str, ...]
    metrics: tuple[str, ...]
    columns: str | None = None
    gains: bool = False
    recovery: tuple[str, str, tuple[str, ...]] | None = None
    figure: FigureSpec | None = None
    digits: int = 3


def figure2_study(name: str, title: str, configs, seeds: int) -> Study:
    """Figure 2 (section 5.4): estimated against true eta per layout and noise rate, one plot per layout; the
    toy profiles' (both witness levels) and paper-qwen05's."""
    return Study(
        name,
        title,
        tuple(configs),
        seeds,
        rows=("layout", "noise"),
        metrics=("eta_hat_1", "eta_true_1", "eta_hat_2", "eta_true_2"),
        figure=FigureSpec(
            x="noise",
            y=("eta_hat_1", "eta_true_1", "eta_hat_2", "eta_true_2"),
            col="layout",
            xlabel="noise rate of the noisy annotator",
            ylabel="reliability eta",
        ),
    )


@dataclass(frozen=True)
class Step:
    """A notebook executed once per profile (no config grid), e.g. the derivations or an analysis."""

    notebook: str  # stem in notebooks/, e.g. "00_derivations"
    params: dict = field(default_factory=dict)
    stage: int = 0  # stages run in order; runs within a stage run in parallel
    reads_runs: bool = False  # reads earlier stages' runs: re-executed whenever one of them executed


@dataclass(frozen=True)
class SlurmParams:
    """What ``rpo run --slurm`` asks Slurm for, per job (one notebook execution); ``rpo run`` flags override.
    ``gpus_per_node=0`` requests no GPU (no ``--gpus-per-node`` line); ``sbatch_flags`` are extra
    ``#SBATCH --key=value`` lines (a ``None`` value: a bare ``--key``), e.g. ``(("constraint", "a100"),)``."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    sbatch_flags: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    model: str  # rpo.models.load_model name: toy | small | paper
    train_notebook: str  # the notebook that trains a list of configs, e.g. "02_train"
    train_params: dict  # literals passed to every training run (steps, beta, lr, ...)
    studies: tuple[Study, ...]
    steps: tuple[Step, ...] = ()
    train_stage: int = 1
    configs_per_run: int = 1  # configs (each with all its seeds) trained per notebook execution
    threads_per_job: int = 1  # torch threads per worker (tiny models: 1; see shared/notes/stack.md)
    jobs: int = 2  # default parallel workers
    timeout_s: int | None = None  # per-cell papermill timeout
    # Paper profiles train through accelerate + DeepSpeed ZeRO-3 (recipes/, rpo/train.py). The training
    # notebook formats and runs this command per config instead of training in-process.
    train_command: str | None = None
    slurm: SlurmParams = SlurmParams()  # the request of each job under `rpo run --slurm`
    # (log, max_steps): a benchmark's committed per-run log that `rpo tables` summarises into results/
    # (rpo.report.regime), the runs of that training length
    regime: tuple[str, int] | None = None


def analysis_steps(profile: str, grid: str) -> tuple[Step, ...]:
    # 03-05 read the training runs (stage 1) of the same grid and present them; 06_tables is `rpo tables`.
    # Only the full grid writes figures into the committed results/ (cwd is notebooks/); a reduced run
    # (CI's) must leave them alone.
    figures = "../results" if grid == "full" else ""
    return (
        Step("00_derivations", {"figure_dir": figures}, stage=0),
        Step("01_data", {"profile": profile, "figure_dir": figures}, stage=0),
        Step("03_ablations", {"profile": profile, "grid": grid}, stage=2, reads_runs=True),
        Step("04_reliability", {"profile": profile, "grid": grid}, stage=2, reads_runs=True),
        Step("05_evaluate", {"profile": profile, "grid": grid}, stage=2, reads_runs=True),
    ) + (audit_steps(grid) + (Step("08_regime", stage=0),) if profile == "toy" else ())


def audit_steps(grid: str) -> tuple[Step, ...]:
    """``07_audit`` (issue 14): ``rpo audit`` on the learnable set with known flips, from the untrained toy model;
    about 40 s on one core (the reduced grid audits 300 pairs instead of 600)."""
    figures = "../results" if grid == "full" else ""
    params = {"figure_dir": figures} if grid == "full" else {"figure_dir": figures, "n_pairs": 300}
    return (Step("07_audit", params, stage=0),)
