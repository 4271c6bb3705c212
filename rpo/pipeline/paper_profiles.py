"""Paper profiles beyond Table 2 (issue 13): section 5.4 on Qwen2.5-0.5B-Instruct (``paper-qwen05``) and the
final paper's MultiPref experiment (``paper-multipref-mistral``, ``paper-multipref-llama3``: its Table 3 and
Figure 3). Like every paper profile they run on a GPU cluster: ``02_train`` launches
``rpo.training.launch`` on the recipe of each config's method (``recipes/<model>/<method>.yaml``, written by
``recipes/generate.py``) with the config's settings as overrides (:func:`rpo.pipeline.paper.launch_command`).

* ``paper-qwen05`` (Figure 2): R-DPO on noisy copies of UltraFeedback (``HuggingFaceH4/ultrafeedback_binarized``,
  its GPT-4 labels the truth), one annotator at noise 0-0.4 and two (``a1`` clean, ``a2`` at the noise);
  ``eta_hat_k`` / ``eta_true_k`` come from each run's ``train_summary.json``. One GPU per run.
* ``paper-multipref-*`` (Table 3, Figure 3): DPO and R-DPO on MultiPref's own human labels (one eta per
  annotator: ``layout="none"``, nothing injected), and R-DPO at eta0 in {0.80, 0.90, 0.95, 0.99} for the mean
  and spread of the estimated eta (``eta_hat_mean`` / ``eta_hat_std`` over annotators).
"""

from __future__ import annotations

from rpo.pipeline.spec import Profile, SlurmParams, Study, analysis_steps, config, figure2_study

PAPER_TRAIN = {"beta": 0.01, "lr": 5e-7, "epochs": 1, "global_batch_size": 64}  # section 5.1
ZERO3 = "accelerate launch --config_file recipes/accelerate/zero3.yaml -m rpo.training.launch {recipe}"


def qwen05(grid: str = "full") -> Profile:
    """Section 5.4: Qwen2.5-0.5B-Instruct, R-DPO, single and two-annotator noisy copies (Figure 2)."""
    reduced = grid == "reduced"
    noise = (0.0, 0.2) if reduced else (0.0, 0.1, 0.2, 0.3, 0.4)
    fig2 = tuple(config(method="dpo", robust=True, layout=lay, noise=n) for lay in ("single", "two") for n in noise)
    study = figure2_study(
        "figure2",
        "Figure 2: estimated eta against true reliability (Qwen2.5-0.5B-Instruct, noisy UltraFeedback copies)",
        fig2,
        1 if reduced else 3,
    )
    return Profile(
        name="paper-qwen05",
        model="paper",
        train_notebook="02_train",
        train_params={"profile": "paper-qwen05", "paper_model": "qwen2.5-0.5b-instruct", **PAPER_TRAIN},
        studies=(study,),
        steps=analysis_steps("paper-qwen05", grid),
        configs_per_run=1,
        threads_per_job=8,
        jobs=1,
        train_command="python -m rpo.training.launch {recipe}",  # one GPU: a 0.5B model needs no sharding
        slurm=SlurmParams(time_min=8 * 60, cpus_per_task=8, gpus_per_node=1),
    )


def multipref(name: str, model: str, grid: str = "full") -> Profile:
    """The final paper's Table 3 and Figure 3: MultiPref (227 annotators) x ``model``, DPO vs R-DPO."""
    reduced = grid == "reduced"
    own = dict(method="dpo", layout="none", noise=0.0)  # MultiPref's own labels and annotators
    table3 = Study(
        "table3_multipref",
        "Table 3 (final paper): MultiPref, DPO vs R-DPO (mean ± 95% CI over seeds)",
        tuple(config(**own, robust=r) for r in (False, True)),
        1 if reduced else 3,
        rows=("label",),
        metrics=("lc_win_rate", "win_rate"),
        gains=True,
    )
    eta0s = (0.9,) if reduced else (0.8, 0.9, 0.95, 0.99)
    figure3 = Study(
        "figure3_multipref",
        "Figure 3 (final paper): mean and spread of the estimated eta over MultiPref's annotators, per eta0",
        tuple(config(**own, robust=True, eta0=e) for e in eta0s),
        1,
        rows=("eta0",),
        metrics=("eta_hat_mean", "eta_hat_std"),
    )
    return Profile(
        name=name,
        model="paper",
        train_notebook="02_train",
        train_params={"profile": name, "paper_model": model, **PAPER_TRAIN},
        studies=(table3, figure3),
        steps=analysis_steps(name, grid),
        configs_per_run=1,
        threads_per_job=8,
        jobs=1,
        train_command=ZERO3,
        slurm=SlurmParams(time_min=24 * 60, cpus_per_task=32, gpus_per_node=8),
    )


PAPER_PROFILES = {
    "paper-qwen05": qwen05,
    "paper-multipref-mistral": lambda grid="full": multipref(
        "paper-multipref-mistral", "mistral-7b-instruct-multipref", grid
    ),
    "paper-multipref-llama3": lambda grid="full": multipref(
        "paper-multipref-llama3", "llama-3-8b-instruct-multipref", grid
    ),
}
