#!/usr/bin/env bash
# Install everything the tests need, run the project checks, then the test suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
export GRADIO_ANALYTICS_ENABLED=False YOLO_OFFLINE=true YOLO_AUTOINSTALL=false
exec .venv/bin/python -m pytest "$@"
