"""A real Jupyter server on localhost, as `make lab` starts it (issue 16): Jupytext's contents manager serves
every ``notebooks/*.py`` as a notebook, and a kernel started through the server runs a notebook's parameters
cell and its first computing cells, with cells taken from the server, not from disk.

The server gets a random free port, a token, no browser, a temporary copy of notebooks/ as its root and
empty user-level Jupyter folders (so a reader's ~/.jupyter cannot change what is tested); the extensions
come from the virtualenv, as for `make lab`. Cheap notebooks only: ``00_derivations`` (its imports and the
sympy log-odds of Table 1, a few seconds) and ``03_ablations`` against an empty runs folder (the Table 3
analogue with every cell "not run"). About 20-40 s, most of it the server's start and the imports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
START_TIMEOUT_S = 120  # the server with JupyterLab's extensions, on 2 busy cores
CELL_TIMEOUT_S = 180  # a cell that imports torch and sympy for the first time

pytest.importorskip("jupyter_server")
websocket = pytest.importorskip("websocket")  # websocket-client (the `lab` extra)
jupytext = pytest.importorskip("jupytext")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``jupyter server``: REST calls with the token, and its log for failure messages."""

    def __init__(self, url: str, token: str, root: Path, log: Path, proc: subprocess.Popen):
        self.url, self.token, self.root, self.log, self.proc = url, token, root, log, proc

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        req = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
        return json.loads(data) if data else None

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jupyter")
    root = tmp / "notebooks"
    root.mkdir()
    for p in NOTEBOOKS + [ROOT / "notebooks" / "jupytext.toml"]:
        shutil.copy(p, root / p.name)
    (tmp / "empty_runs").mkdir()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "user_config"),  # not the reader's ~/.jupyter
        "JUPYTER_DATA_DIR": str(tmp / "user_data"),  # no user-level kernelspec shadowing the venv's
        "JUPYTER_RUNTIME_DIR": str(tmp / "rt"),
        "JUPYTER_CONFIG_PATH": str(ROOT / ".jupyter"),  # the repository's settings, as `make lab`
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    port, token = _free_port(), uuid.uuid4().hex
    log = tmp / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
    ]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=fh, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", token, root, log, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter server exited with {proc.returncode}:\n{srv.log_tail()}")
            try:
                srv.api("GET", "/api/status", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter server did not answer within {START_TIMEOUT_S} s:\n{srv.log_tail()}")
                time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_contents_api_serves_every_notebook_as_a_notebook(server):
    listing = {c["name"]: c["type"] for c in server.api("GET", "/api/contents")["content"]}
    assert NOTEBOOKS and all(listing.get(p.name) == "notebook" for p in NOTEBOOKS), listing
    for path in NOTEBOOKS:
        model = server.api("GET", f"/api/contents/{path.name}")
        assert model["type"] == "notebook" and model["format"] == "json", (path.name, model["type"])
        served = [(c["cell_type"], c["source"]) for c in model["content"]["cells"]]
        local = [(c.cell_type, c.source) for c in jupytext.read(path).cells]
        assert served == local, f"{path.name}: the server's cells differ from the percent file's"
        tags = [c["metadata"].get("tags", []) for c in model["content"]["cells"]]
        assert sum("parameters" in t for t in tags) == 1, path.name
        assert model["content"]["metadata"]["kernelspec"]["name"] == "python3", path.name


class Kernel:
    """A kernel started through the server's REST API, driven over its websocket (Jupyter's JSON protocol)."""

    def __init__(self, server: Server):
        self.server = server
        self.id = server.api("POST", "/api/kernels", {"name": "python3"})["id"]
        self.session = uuid.uuid4().hex
        ws_url = server.url.replace("http://", "ws://") + f"/api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {server.token}"], timeout=CELL_TIMEOUT_S
        )
        self.request("kernel_info_request", {}, channel="shell")  # answered once the kernel is up

    def request(self, msg_type: str, content: dict, channel: str = "shell", timeout: float = CELL_TIMEOUT_S):
        """Send one request; return (its reply's content, its iopub outputs) once the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "session": self.session,
            "username": "test",
            "version": "5.3",
            "date": datetime.now(timezone.utc).isoformat(),
        }
        msg = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": channel}
        self.ws.send(json.dumps(msg))
        reply, outputs, idle = None, [], False
        deadline = time.monotonic() + timeout
        while reply is None or (msg_type == "execute_request" and not idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{msg_type} not answered in {timeout} s; outputs so far: {outputs}")
            self.ws.settimeout(left)
            m = json.loads(self.ws.recv())
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = m["header"]["msg_type"]
            if m["channel"] == "shell" and kind == msg_type.replace("_request", "_reply"):
                reply = m["content"]
            elif m["channel"] == "iopub" and kind == "status":
                idle = m["content"]["execution_state"] == "idle"
            elif m["channel"] == "iopub" and kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"type": kind, **m["content"]})
        return reply, outputs

    def run(self, code: str, what: str) -> list[dict]:
        """Execute ``code``; fail naming ``what`` (notebook and cell) on an error."""
        reply, outputs = self.request(
            "execute_request",
            {"code": code, "silent": False, "store_history": True, "allow_stdin": False, "stop_on_error": True},
        )
        errors = [o for o in outputs if o["type"] == "error"]
        assert reply["status"] == "ok" and not errors, f"{what} failed: {reply} {errors}"
        return outputs

    def close(self):
        try:
            self.ws.close()
        finally:
            self.server.api("DELETE", f"/api/kernels/{self.id}")


def _cells(server: Server, name: str, first_computing: int):
    """The served notebook's parameters cell and the ``first_computing`` code cells after it."""
    cells = server.api("GET", f"/api/contents/{name}")["content"]["cells"]
    i = next(k for k, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    after = [c for c in cells[i + 1 :] if c["cell_type"] == "code"][:first_computing]
    assert len(after) == first_computing, name
    return cells[i]["source"], [c["source"] for c in after]


@pytest.fixture()
def kernel(server):
    k = Kernel(server)
    yield k
    k.close()


def test_kernel_started_through_the_server_runs_the_first_cells(server, kernel):
    # the python3 kernel is the virtualenv's interpreter, and it starts beside the notebook
    out = kernel.run("import os, sys; print(sys.executable); print(os.getcwd())", "probe")
    exe, cwd = "".join(o["text"] for o in out if o["type"] == "stream").split()
    assert Path(exe).parent.absolute() == Path(sys.executable).parent.absolute() or (
        Path(exe).resolve().parent == Path(sys.executable).resolve().parent
    )

    # 00_derivations: parameters as written, then its imports and the log-odds of every loss of Table 1
    params, computing = _cells(server, "00_derivations.py", 2)
    kernel.run(params, "00_derivations parameters cell")
    kernel.run("n_labels = 2000  # edited by hand, as a reader would", "00_derivations parameter edit")
    kernel.run(computing[0], "00_derivations imports")
    out = kernel.run(computing[1], "00_derivations log-odds cell")
    printed = "".join(o.get("text", "") for o in out)
    assert "dpo" in printed and "log-odds of eq. 2" in printed, printed

    # 03_ablations against an empty runs folder: the Table 3 analogue, every cell "not run", no error
    params, computing = _cells(server, "03_ablations.py", 1)
    kernel.run(params, "03_ablations parameters cell")
    kernel.run(f"runs_root = {str(server.root.parent / 'empty_runs')!r}", "03_ablations parameter edit")
    out = kernel.run(computing[0], "03_ablations first cell")
    shown = "".join(o.get("data", {}).get("text/markdown", "") for o in out)
    assert "eta0" in shown and "Table 3" in shown, out
