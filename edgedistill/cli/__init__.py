"""`edgedistill` command line: thin typer commands over the stage functions.

Domain errors (`EdgedistillError`) print one red line on stderr and exit with code 2.
"""

from __future__ import annotations

import sys

import typer

from edgedistill.cli.console import console
from edgedistill.errors import EdgedistillError

app = typer.Typer(
    name="edgedistill",
    help="Distil pretrained teachers into a slimmable student, pick the width that fits a device budget, "
    "export INT8, and benchmark it on the device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from edgedistill.cli import bench, budgets, export, report, teachers, train

    for module in (train, export, bench, budgets, teachers, report):
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except EdgedistillError as e:
        console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, markup=True)
        sys.exit(e.exit_code)
