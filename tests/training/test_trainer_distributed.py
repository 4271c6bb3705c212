"""eta's trajectory does not depend on how the global batch is split (issue 3): one process with
gradient accumulation 2 and two processes (torchrun, gloo on CPU) with accumulation 1 see the same
8-pair global batches, so they must produce the same eta after every optimizer step, on every rank.
About 20 s (two Python processes import TRL at once)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
WORKER = Path(__file__).with_name("dist_worker.py")
ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "HF_HUB_OFFLINE": "1",
    "TQDM_DISABLE": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: int = 240) -> None:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None and shutil.which("torchrun") is None,
    reason="torchrun not installed",
)
def test_two_processes_match_one_process_with_grad_accumulation(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    launch = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(WORKER),
        str(two),
        "1",
    ]
    # The two runs use the machine's two cores one after the other; the 2-process one is itself parallel.
    _run([sys.executable, str(WORKER), str(one), "2"])
    _run(launch)
    single = json.loads((one / "eta_rank0.json").read_text())
    ranks = [json.loads((two / f"eta_rank{r}.json").read_text()) for r in (0, 1)]
    assert single["world"] == 1 and single["grad_accum"] == 2
    assert all(r["world"] == 2 and r["grad_accum"] == 1 for r in ranks)
    assert ranks[0]["etas"] == ranks[1]["etas"], "ranks disagree on eta"
    assert len(single["etas"]) == len(ranks[0]["etas"]) == 4
    for step, (a, b) in enumerate(zip(single["etas"], ranks[0]["etas"]), start=1):
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-6, f"eta differs at step {step}: {a} vs {b}"
    assert single["etas"][-1] != single["etas"][0] != [0.9] * 3  # eta really moved, per annotator
    # the full E-step sharded over two ranks returns every pair once, in dataset order
    assert len(ranks[0]["w"]) == len(single["w"]) == 32 and ranks[0]["w"] == ranks[1]["w"]
    assert max(abs(x - y) for x, y in zip(single["w"], ranks[0]["w"])) < 1e-5
    # fit_reliability sharded: the same exact-EM eta on both ranks, and as one process finds it
    assert ranks[0]["refit"] == ranks[1]["refit"] and ranks[0]["refit"] != ranks[0]["etas"][-1]
    assert max(abs(x - y) for x, y in zip(single["refit"], ranks[0]["refit"])) < 1e-5
