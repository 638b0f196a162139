"""The ``hmtools`` command line: a thin Typer layer over the library.

Each command lives in a module of :mod:`hmtools.commands` as a plain function whose options are
``Annotated`` Typer options; this module only lists them. Heavy packages are imported inside the
command bodies so ``hmtools --help`` stays fast. :class:`~hmtools.errors.HMToolsError` is caught
once, here: one line on stderr, exit code 2 for bad input and 1 for failures while running.
"""

from __future__ import annotations

import sys

import typer

from hmtools.commands import annotate as _annotate
from hmtools.commands import build as _build
from hmtools.commands import dataset as _dataset
from hmtools.commands import exchange as _exchange
from hmtools.commands import store as _store
from hmtools.commands import train as _train
from hmtools.errors import HMToolsError

app = typer.Typer(
    name="hmtools",
    help="Human-centric foreground masks for action quality assessment: build, correct, export, train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("inspect")(_dataset.inspect)
app.command("extract-frames")(_dataset.extract_frames)
app.command("stats")(_store.stats)
app.command("validate")(_store.validate)
app.command("build-masks")(_build.build_masks)
app.command("preview")(_build.preview)
app.command("annotate")(_annotate.annotate)
app.command("export")(_exchange.export)
app.command("import")(_exchange.import_masks)
app.command("train")(_train.train)
app.command("eval")(_train.evaluate)
app.command("explain")(_train.explain)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exits the process with the command's exit code."""
    try:
        app(args=argv, prog_name="hmtools", standalone_mode=True)
    except HMToolsError as e:
        print(f"hmtools: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
