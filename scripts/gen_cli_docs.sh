#!/usr/bin/env bash
# Regenerate docs/cli.md from the Typer app (never edit docs/cli.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m typer hmtools.cli utils docs --name hmtools --title "hmtools command reference" --output docs/cli.md
