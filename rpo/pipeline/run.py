"""``rpo run``: expand a profile into its plan and execute it, locally or on Slurm."""

from __future__ import annotations

from rpo import paths
from rpo.pipeline.execute import check_kernel, run_plan
from rpo.pipeline.plan import expand
from rpo.pipeline.profiles import get_profile
from rpo.pipeline.slurm import run_slurm, with_overrides


def run_profile(
    profile: str,
    *,
    seeds: int | None = None,
    jobs: int | None = None,
    only: str | None = None,
    grid: str = "full",
    runs_root=None,
    notebooks_dir=None,
    kernel_name: str = "python3",
    slurm: bool = False,
    slurm_params: dict | None = None,
    progress: bool = True,
    force: bool = False,
) -> list[dict]:
    """``rpo run``: expand the profile and execute (locally, or on Slurm with ``slurm=True``; each job asks
    for the profile's ``slurm`` request with ``slurm_params`` overriding it, see :func:`with_overrides`)."""
    prof = get_profile(profile, grid)
    plan = expand(prof, seeds=seeds, only=only, grid=grid)
    run_dir = paths.run_dir(prof.name, grid, runs_root)
    check_kernel(kernel_name)
    if slurm:
        return run_slurm(
            plan,
            run_dir,
            params=with_overrides(prof.slurm, **(slurm_params or {})),
            notebooks_dir=notebooks_dir,
            kernel_name=kernel_name,
            progress=progress,
            force=force,
        )
    if any(v is not None for v in (slurm_params or {}).values()):
        raise ValueError(f"Slurm parameters {sorted(slurm_params)} given without slurm=True (--slurm)")
    return run_plan(
        plan,
        run_dir,
        jobs=jobs or prof.jobs,
        notebooks_dir=notebooks_dir,
        kernel_name=kernel_name,
        progress=progress,
        force=force,
    )
