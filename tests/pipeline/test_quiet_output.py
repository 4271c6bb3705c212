"""`rpo run`'s output: one progress bar with an ETA, a line per failure, nothing from the kernels (issue 16).

Two real kernel executions of a tiny notebook (~2-4 s each). ``capfd`` captures at the file-descriptor
level, so it also sees what the kernel processes write to the terminal (ipykernel's transport warning did).
"""

import re

from rpo.pipeline import Plan, Run, run_plan
from rpo.pipeline.execute import kernel_config
from rpo.pipeline.profiles import Profile

TINY_NB = """# %% tags=["parameters"]
x = 1
fail = False

# %%
print("cell output goes into the notebook, not the terminal", x)
assert not fail, "asked to fail"
"""


def test_kernels_use_ipc_transport():
    assert kernel_config().KernelManager.transport == "ipc"


def test_run_prints_one_bar_with_eta_and_only_failures(tmp_path, capfd):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "tiny.py").write_text(TINY_NB)
    good, bad = Run("tiny", {"x": 3}), Run("tiny", {"x": 4, "fail": True})
    plan = Plan(Profile("quiet", "toy", "tiny", {}, ()), {}, runs=[good, bad])
    res = run_plan(plan, tmp_path / "runs", notebooks_dir=nbs, progress=True)
    assert sorted(r["status"] for r in res) == ["done", "failed"]
    out, err = capfd.readouterr()
    # stdout: one line per failure (tqdm's bar.write), nothing else
    assert out.splitlines() == [
        f"FAILED {bad.id}: PapermillExecutionError: AssertionError: asked to fail "
        f"(see {tmp_path / 'runs' / bad.id}.failed.json)"
    ], out
    # stderr: only the bar, redrawn in place, with elapsed<remaining once a run finished
    assert "without encryption" not in err and "IPKernelApp" not in err, err
    assert "cell output" not in err + out  # papermill's log_output stays off
    frames = [f for f in re.split(r"[\r\n]+", err) if f.strip()]
    assert frames and all(f.startswith("rpo run quiet") for f in frames), frames
    assert any(re.search(r"50%.*1/2 \[\d\d:\d\d<\d\d:\d\d", f) for f in frames), frames
