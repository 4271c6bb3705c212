"""`rpo run`'s output: one progress bar with an ETA, a line per failure, nothing from the kernels (issue 16).

Three real kernel executions of a tiny notebook, two at a time (~10 s in all). ``capfd`` captures at the file-descriptor
level, so it also sees what the kernel processes write to the terminal (ipykernel's transport warning did).
"""

import re
import shutil
import tempfile
from pathlib import Path

from rpo.pipeline import Plan, Run, run_plan
from rpo.pipeline.execute import kernel_config
from rpo.pipeline.profiles import Profile

TINY_NB = """# %% tags=["parameters"]
x = 1
fail = False

# %%
print("cell output goes into the notebook, not the terminal", x)
assert not fail, "asked to fail"

# %%
# what the kernel application logs goes to the terminal (e.g. "KeyboardInterrupt caught in kernel." when
# the kernel manager interrupts a busy kernel at shutdown): only critical messages may pass
from ipykernel.kernelapp import IPKernelApp

IPKernelApp.instance().log.error("kernel application error message")  # its handler writes to the terminal
"""


def test_kernels_use_ipc_transport_with_their_own_sockets():
    a, b = kernel_config().KernelManager, kernel_config().KernelManager
    assert a.transport == b.transport == "ipc" and a.ip != b.ip and Path(a.ip).is_absolute()
    assert kernel_config().NotebookClient.extra_arguments == ["--IPKernelApp.log_level=CRITICAL"]


def test_run_prints_one_bar_with_eta_and_only_failures(tmp_path, capfd, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "tiny.py").write_text(TINY_NB)
    runtime = Path(tempfile.mkdtemp(prefix="rt-"))  # short: a Unix socket path has ~100 characters
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))  # inherited by the workers
    good, bad, other = Run("tiny", {"x": 3}), Run("tiny", {"x": 4, "fail": True}), Run("tiny", {"x": 5})
    plan = Plan(Profile("quiet", "toy", "tiny", {}, ()), {}, runs=[good, bad, other])
    # two kernels at a time beside the same notebook: each on its own sockets (a shared default name
    # once made them read each other's messages: "Invalid Signature")
    res = run_plan(plan, tmp_path / "runs", notebooks_dir=nbs, progress=True, jobs=2)
    assert sorted(r["status"] for r in res) == ["done", "done", "failed"], res
    assert sorted(p.name for p in nbs.iterdir()) == ["tiny.py"]  # no socket left beside the notebook
    assert not list(runtime.glob("rpo-kernel-*"))  # nor in the runtime folder
    shutil.rmtree(runtime)
    out, err = capfd.readouterr()
    # stdout: one line per failure (tqdm's bar.write), nothing else
    assert out.splitlines() == [
        f"FAILED {bad.id}: PapermillExecutionError: AssertionError: asked to fail "
        f"(see {tmp_path / 'runs' / bad.id}.failed.json)"
    ], out
    # stderr: only the bar, redrawn in place, with elapsed<remaining once a run finished
    assert "without encryption" not in err and "IPKernelApp" not in err, err
    assert "kernel application error message" not in err + out
    assert "cell output" not in err + out  # papermill's log_output stays off
    frames = [f for f in re.split(r"[\r\n]+", err) if f.strip()]
    assert frames and all(f.startswith("rpo run quiet") for f in frames), frames
    assert any(re.search(r"33%.*1/3 \[\d\d:\d\d<\d\d:\d\d", f) for f in frames), frames
