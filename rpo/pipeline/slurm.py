"""The Slurm backend of ``rpo run --slurm``: each pending run one submitit job, stage by stage. The paper
profiles' training notebook itself launches ``accelerate launch`` (ZeRO-3) per config inside its job."""

from __future__ import annotations

from pathlib import Path

from rpo.io import atomic_write_json
from rpo.pipeline.execute import _worker, execute
from rpo.pipeline.plan import Plan, status


def run_slurm(
    plan: Plan, run_dir, *, notebooks_dir=None, kernel_name: str = "python3", force: bool = False, **slurm_params
) -> list[dict]:
    """Send the plan's pending runs to a Slurm queue with submitit, one job per run, stage by stage.
    The paper profiles' training notebook itself launches ``accelerate launch`` (ZeRO-3) per config."""
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError(
            "the --slurm backend needs submitit: `pip install rpo[cluster]` (or `pip install submitit==1.5.4`)"
        ) from e
    from tqdm.auto import tqdm

    from rpo import paths

    notebooks_dir = paths.notebooks() if notebooks_dir is None else notebooks_dir
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / "plan.json", plan.to_json())
    executor = submitit.AutoExecutor(folder=run_dir / "slurm")
    executor.update_parameters(**{"timeout_min": 24 * 60, "gpus_per_node": 8, "cpus_per_task": 32, **slurm_params})
    results = []
    todo = [r for r in plan.runs if force or status(run_dir, r.id) != "done"]
    for stage in sorted({r.stage for r in todo}):
        batch = [r for r in todo if r.stage == stage]
        jobs = [
            executor.submit(
                _worker,
                (r, run_dir, notebooks_dir, kernel_name, plan.profile.timeout_s, plan.profile.threads_per_job, execute),
            )
            for r in batch
        ]
        for job in tqdm(jobs, desc=f"slurm stage {stage}", unit="run"):
            results.append(job.result())
    return results
