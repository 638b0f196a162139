"""docs/cli.md is generated from the Typer app and must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "hmtools.cli",
            "utils",
            "docs",
            "--name",
            "hmtools",
            "--title",
            "hmtools command reference",
            "--output",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == current, "docs/cli.md is stale: run scripts/gen_cli_docs.sh"
