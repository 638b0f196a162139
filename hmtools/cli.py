"""The ``hmtools`` command line: a thin Typer layer over the library.

Each command lives in a module of :mod:`hmtools.commands` as a plain function whose options are
``Annotated`` Typer options; this module only lists them. Heavy packages are imported inside the
command bodies so ``hmtools --help`` stays fast. :class:`~hmtools.errors.HMToolsError` is caught
once, here: one line on stderr, exit code 2 for bad input and 1 for failures while running.
Click's usage errors (an unknown option, a missing or malformed value) get the same one line
instead of Click's framed box; ``hmtools`` with no command prints the help and exits with 2.
"""

from __future__ import annotations

import errno
import sqlite3
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
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        app(args=["--help"], prog_name="hmtools", standalone_mode=False)
        sys.exit(2)
    try:
        code = app(args=args, prog_name="hmtools", standalone_mode=False)
    except HMToolsError as e:
        _fail(str(e), e.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except _click_errors() as e:
        _fail(_usage_line(e), e.exit_code)
    except (OSError, sqlite3.OperationalError) as e:
        if not _out_of_space(e):
            raise
        fix = (
            "make the file and its folder writable (or pick another location) and run it again"
            if _read_only(e)
            else "free some space (or pick another disk) and run it again"
        )
        _fail(f"{e}; {fix}", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _out_of_space(e: BaseException) -> bool:
    """A full disk or quota, or a read-only file system, from the OS or from SQLite."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return "disk is full" in str(e) or "readonly database" in str(e)


def _read_only(e: BaseException) -> bool:
    """A read-only file system or a store file SQLite may not write (not a full disk)."""
    return (isinstance(e, OSError) and e.errno == errno.EROFS) or "readonly database" in str(e)


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's error classes: Typer's own (it vendors Click from 0.2x on) and Click's, if present."""
    errors: list[type[Exception]] = [typer.TyperException]
    try:
        import click
    except ImportError:
        return tuple(errors)
    return (*errors, click.ClickException)


def _usage_line(e: Exception) -> str:
    """One line for a usage error: what was wrong, in which command, where to read the options."""
    message = " ".join(e.format_message().split()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    if ctx is None:
        return message
    return f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"


def _fail(message: str, exit_code: int) -> None:
    print(f"hmtools: error: {message}", file=sys.stderr)
    sys.exit(exit_code)
