"""Fixtures of the pipeline tests: the reduced toy study run once per session, locally.

``tests/pipeline/test_reproduce_reduced.py`` checks that run; ``tests/pipeline/test_slurm.py`` compares the
tables of the same grid run through Slurm with its tables, byte for byte (the study is deterministic).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def reduced_toy_run(tmp_path_factory):
    """``(runs_root, outcomes)`` of ``rpo run --profile toy --grid reduced`` (2 local workers, about 2
    minutes on 2 cores), executed the first time a test asks for it."""
    from rpo.pipeline import run_profile

    runs = tmp_path_factory.mktemp("reduced-toy") / "runs"
    return runs, run_profile("toy", grid="reduced", runs_root=runs, jobs=2, progress=False)
