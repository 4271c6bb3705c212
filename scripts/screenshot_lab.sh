#!/usr/bin/env bash
# A headless-Chromium screenshot of JupyterLab with one notebook open: what a reader sees after `make lab`
# (issue 16). Starts JupyterLab as `make lab` does (the repository's .jupyter/ settings, root notebooks/),
# on 127.0.0.1 with a free port and a token, with empty user-level Jupyter folders; opens
# /lab/tree/<notebook>, lets the page render, saves the PNG and stops the server.
#
#   scripts/screenshot_lab.sh [NOTEBOOK] [OUT.png] [WIDTHxHEIGHT]   # defaults: 02_train.py lab.png 1400x1000
#
# Needs `make install` and Chromium (Debian: apt-get install chromium). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
NB=${1:-02_train.py}
OUT=$(realpath -m "${2:-lab.png}")
SIZE=${3:-1400x1000}
PY=.venv/bin/python
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "no chromium on PATH (Debian: apt-get install chromium)" >&2; exit 2; }
[ -f "notebooks/$NB" ] || { echo "no notebooks/$NB" >&2; exit 2; }

PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=$($PY -c 'import secrets; print(secrets.token_hex(16))')
TMP=$(mktemp -d)
JUPYTER_CONFIG_PATH="$PWD/.jupyter" JUPYTER_CONFIG_DIR="$TMP/config" JUPYTER_RUNTIME_DIR="$TMP/runtime" \
    .venv/bin/jupyter lab --ServerApp.root_dir=notebooks --no-browser --ServerApp.ip=127.0.0.1 \
    --ServerApp.port="$PORT" --ServerApp.port_retries=0 --IdentityProvider.token="$TOKEN" --allow-root \
    >"$TMP/lab.log" 2>&1 &
LAB=$!
trap 'kill "$LAB" 2>/dev/null || true; wait "$LAB" 2>/dev/null || true; rm -rf "$TMP"' EXIT

for _ in $(seq 240); do  # up to 120 s for the server
    curl -fsS -H "Authorization: token $TOKEN" "http://127.0.0.1:$PORT/api/status" >/dev/null 2>&1 && break
    kill -0 "$LAB" 2>/dev/null || { cat "$TMP/lab.log" >&2; exit 1; }
    sleep 0.5
done

# --virtual-time-budget lets the page's scripts run (and the notebook render) before the capture
timeout 180 "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$TMP/chromium" --window-size="${SIZE/x/,}" --virtual-time-budget=45000 \
    --screenshot="$OUT" "http://127.0.0.1:$PORT/lab/tree/$NB?token=$TOKEN" >"$TMP/chromium.log" 2>&1 \
    || { tail -20 "$TMP/chromium.log" >&2; exit 1; }
echo "wrote $OUT"
