"""How error messages name options: `--resume` for the command line, `resume=True` for Python callers.

The CLI's `main()` runs every command inside `cli_wording()`; anything else (the Python API, tests, scripts) gets the
Python wording. Pipeline code words its errors with `opt()`, `param()` and `command()` so one message fits both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CLI: ContextVar[bool] = ContextVar("edgedistill_cli_wording", default=False)

# Python parameters whose command-line option has another name.
CLI_NAMES = {"similarity": "metric", "emit_runner": "emit-runner"}
# Python parameters whose values are command-line flags of their own: precision="int8" is --int8.
VALUE_FLAGS = frozenset({"precision"})


@contextmanager
def cli_wording() -> Iterator[None]:
    """Errors raised inside name command-line flags (`--resume`) instead of parameters (`resume=True`)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def is_cli() -> bool:
    """True inside `cli_wording()`."""
    return _CLI.get()


def param(name: str) -> str:
    """The option's name alone: `--calibration-samples` (CLI) or `calibration_samples` (Python)."""
    if _CLI.get():
        return "--" + CLI_NAMES.get(name, name).replace("_", "-")
    return name


def opt(name: str, value: object = True, *, meta: bool = False) -> str:
    """An option with its value, as the caller would write it.

    `opt("resume")` is `--resume` or `resume=True`; `opt("target", "torch")` is `--target torch` or
    `target='torch'`; `opt("teacher", "SOURCE", meta=True)` (a placeholder) is `--teacher SOURCE` or `teacher=SOURCE`;
    `opt("precision", "int8")` is `--int8` or `precision='int8'`.
    """
    if _CLI.get():
        if name in VALUE_FLAGS and isinstance(value, str):
            return f"--{value}"
        flag = param(name)
        if value is True:
            return flag
        if value is False:
            return f"--no-{flag[2:]}"
        return f"{flag} {value}"
    return f"{name}={value if meta else repr(value)}"


def command(stage: str, **args: object) -> str:
    """How to run a stage: `edgedistill export --run runs/x` (CLI) or `edgedistill.export(run='runs/x')` (Python).

    `stage` is the command, e.g. "train" or "teachers rank" (a leading "edgedistill " is accepted).
    """
    stage = stage.removeprefix("edgedistill ").strip()
    if _CLI.get():
        return " ".join(["edgedistill", stage, *(opt(k, v) for k, v in args.items())])
    function = {"teachers rank": "rank_teachers", "teachers finetune": "finetune_teacher"}.get(stage, stage)
    values = ", ".join(f"{k}={str(v)!r}" for k, v in args.items())
    return f"edgedistill.{function}({values})"
