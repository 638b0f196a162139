#!/usr/bin/env bash
# Install hmtools and everything it needs into ./.venv (idempotent).
#   bash scripts/setup.sh          the package with all extras (pipeline, app, train)
#   bash scripts/setup.sh --dev    also the test tools, Debian's chromium for the browser tests,
#                                  and the small real detector weights the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1
PY=${PYTHON:-python3}
# a C compiler and Python's headers build hmtools._rle, the compiled mask encoder (without them the
# install goes on with the NumPy encoder; the tests (--dev) expect the compiled one)
has_cc() { command -v cc >/dev/null 2>&1 && "$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; }
if [ "$dev" = 1 ] && ! has_cc; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev python3-dev >/dev/null
  else
    echo "setup: no C compiler or Python headers; install gcc and python3-dev to build the compiled mask encoder" >&2
  fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip_q() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
pip_q --upgrade pip
if [ "$dev" = 1 ]; then pip_q -e '.[dev]'; else pip_q -e '.[all]'; fi
# mediapipe 0.10.14 carries the offline person detector/segmenter of the lite backend; its declared
# dependencies (opencv-contrib, jax) clash with opencv-headless, so install it without them.
pip_q --no-deps 'mediapipe==0.10.14' absl-py attrs flatbuffers 'protobuf>=4.25.3,<5' sounddevice
.venv/bin/python -c "import hmtools, torch, cv2" || { echo "setup: import check failed" >&2; exit 1; }
if [ "$dev" = 1 ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
      echo "setup: chromium not found; install Debian's chromium for the browser tests (apt-get install chromium)" >&2
    fi
  fi
  [ -x scripts/fetch_test_weights.sh ] && bash scripts/fetch_test_weights.sh
fi
echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
