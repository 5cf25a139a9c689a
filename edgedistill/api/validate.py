"""Strict argument types for the Python API: `@strict_args` checks a call before the function body runs.

A wrong type is a `ConfigError` in one line, naming the parameter as the caller wrote it (`param()`: `threads`
from Python, `--threads` under the CLI) and the value: `threads: expected an integer, got '4'`. Several bad
arguments give one clause each, joined by "; ". Nothing is coerced: no str→int, no bool or float for int, no int
for bool; paths are `str` or `os.PathLike`. The check is pydantic's `validate_call` in strict mode; the schema is
built on the first call, so importing the API stays light.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from pydantic import ConfigDict, ValidationError, validate_call

from edgedistill.errors import ConfigError
from edgedistill.options import param

P = ParamSpec("P")
R = TypeVar("R")
PathArg = str | PathLike[str]  # what every path parameter takes

_STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True, defer_build=True)
_WORDS = {bool: "True or False", int: "an integer", float: "a number", str: "a string", NoneType: "None"}
_PATH = "a path (str or os.PathLike)"
_CALL_SHAPE = {
    "missing_argument": "required",
    "missing_keyword_only_argument": "required",
    "missing_positional_only_argument": "required",
    "multiple_argument_values": "given twice",
}


class _FromBody(Exception):
    """A `ValidationError` raised inside the function body: a bug or a config error, not a bad argument."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(error)
        self.error = error


@overload
def strict_args(func: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def strict_args(*, expect: Mapping[str, str]) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def strict_args(func: Callable[P, R] | None = None, /, *, expect: Mapping[str, str] | None = None) -> Any:
    """Check every argument of `func` against its annotations first; `expect` words a parameter's expectation.

    Signature and docstring stay visible to `help()` and IDEs (`functools.wraps`).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def body(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except ValidationError as e:
                raise _FromBody(e) from None

        checked = validate_call(config=_STRICT)(body)

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return checked(*args, **kwargs)
            except _FromBody as e:
                raise e.error from None
            except ValidationError as e:
                raise ConfigError(_message(fn, args, kwargs, e, expect or {})) from None

        return call

    return decorate if func is None else decorate(func)


def as_path(p: PathArg | None) -> Path | None:
    """`p` as a Path; None stays None."""
    return None if p is None else Path(p)


def _message(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    err: ValidationError,
    expect: Mapping[str, str],
) -> str:
    params = inspect.signature(fn).parameters.values()
    names = [p.name for p in params]
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    hints = typing.get_type_hints(fn)
    clauses: dict[str, str] = {}
    for e in err.errors():
        at = e["loc"][0] if e["loc"] else "<call>"
        name = names[at] if isinstance(at, int) and at < len(names) else str(at)
        if name in clauses:
            continue  # a union reports each member; one clause per parameter
        if e["type"] == "unexpected_positional_argument":
            clauses[name] = f"{fn.__name__}() takes at most {positional} positional arguments, got {len(args)}"
        elif name not in hints:
            clauses[name] = f"{name}: not a parameter of {fn.__name__}()"
        elif e["type"] in _CALL_SHAPE:
            clauses[name] = f"{param(name)}: {_CALL_SHAPE[e['type']]}"
        else:
            value = args[at] if isinstance(at, int) else kwargs.get(name)
            clauses[name] = f"{param(name)}: expected {expect.get(name) or expected(hints[name])}, got {_shown(value)}"
    return "; ".join(clauses.values())


def expected(tp: Any) -> str:
    """What a value of annotation `tp` is, in words: "an integer or None", "none, auto or qat", "a path"."""
    members = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, UnionType) else (tp,)
    is_path = any(typing.get_origin(m) is PathLike or m is PathLike for m in members)
    values = [str(v) for m in members if typing.get_origin(m) is Literal for v in typing.get_args(m)]
    words = [_word(m) for m in members if typing.get_origin(m) is not Literal and not (is_path and m is str)]
    words.sort(key=lambda w: w == "None")  # None last
    return _either([*values, *words])


def _word(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp in _WORDS:
        return _WORDS[tp]
    if tp is PathLike or origin is PathLike:
        return _PATH
    if origin is tuple and args and ... not in args:
        return f"a tuple ({', '.join(map(_name, args))})"
    if origin is not None and args:
        return f"a {_name(origin).lower()} of {', '.join(map(_name, args))}"
    return _name(tp)


def _name(tp: Any) -> str:
    return str(getattr(tp, "__name__", tp))


def _either(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _shown(value: object, limit: int = 60) -> str:
    """The value as the caller wrote it; other than a plain scalar, with its type ("list [8, 8]")."""
    text = " ".join(repr(value).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text if value is None or type(value) in (bool, int, float, str) else f"{type(value).__name__} {text}"
