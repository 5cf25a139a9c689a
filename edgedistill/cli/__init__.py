"""`edgedistill` command line: thin typer commands over the Python API (`edgedistill.api`).

Domain errors (`EdgedistillError`) print one red line on stderr and exit with code 2.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.markup import escape

from edgedistill.cli.console import console
from edgedistill.errors import EdgedistillError
from edgedistill.options import cli_wording

try:  # typer ≥ 0.20 vendors click; older typers use click itself
    from typer._click import exceptions as cx
except ImportError:  # pragma: no cover
    from click import exceptions as cx  # type: ignore[no-redef]

app = typer.Typer(
    name="edgedistill",
    help="Distil pretrained teachers into a slimmable student, pick the width that fits a device budget, "
    "export INT8, and benchmark it on the device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    if app.registered_commands:  # main() may run more than once in a process (tests)
        return
    from edgedistill.cli import bench, budgets, export, profile, report, search, teachers, train

    for module in (train, export, bench, budgets, teachers, search, profile, report):
        module.register(app)


INTERRUPTED = (
    "interrupted (Ctrl-C); files are written whole or not at all, so what was there before is intact "
    "(a run being replaced with --overwrite is kept until the new one is complete)"
)


def os_error_line(e: OSError) -> str:
    """`FILE: reason` for an OSError, the file name shortened to 160 characters."""
    name = str(e.filename) if e.filename is not None else ""
    short = name if len(name) <= 160 else f"{name[:80]}…{name[-79:]}"
    reason = e.strerror or e.__class__.__name__
    return f"{short}: {reason}" if short else f"{reason} ({e})"


def _fail(message: str, code: int) -> NoReturn:
    one_line = message.strip().replace("\r", "\\r").replace("\n", "\\n")  # user text may hold line breaks
    console(stderr=True).print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, markup=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: domain errors and bad command-line options end in one line and exit code 2."""
    _register()
    try:
        with cli_wording():  # errors name --flags, not Python parameters
            code = app(args=argv, prog_name="edgedistill", standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx else str(e))
        sys.exit(2)
    except cx.UsageError as e:  # bad option/argument: click would print a usage block
        where = e.ctx.command_path if e.ctx else "edgedistill"
        _fail(f"{where}: {' '.join(e.format_message().split())} (see --help)", e.exit_code)
    except cx.ClickException as e:
        _fail(" ".join(e.format_message().split()), e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:  # click turns Ctrl-C into Abort
        if isinstance(e, KeyboardInterrupt) or isinstance(e.__context__, KeyboardInterrupt):
            _fail(INTERRUPTED, 130)
        _fail("aborted", 1)
    except EdgedistillError as e:
        _fail(str(e), e.exit_code)
    except OSError as e:  # the file system refused (name too long, link loop, read-only, disk full): say which file
        _fail(os_error_line(e), 2)
    if code == 130:  # typer turns Ctrl-C into Exit(130), silently
        _fail(INTERRUPTED, 130)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) returns n outside standalone mode
