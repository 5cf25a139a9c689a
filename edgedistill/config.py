"""Pydantic base for every config and YAML loading with `file: field.path: message` errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from edgedistill.errors import ConfigError
from edgedistill.outputs import check_name

M = TypeVar("M", bound=BaseModel)

# A name that becomes part of a file name (budget, task, recipe, artifact): it can never leave its folder.
SafeName = Annotated[str, AfterValidator(check_name)]


class StrictModel(BaseModel):
    """Config base: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            key = str(item) if str(item).isprintable() and str(item).strip() == str(item) else repr(item)
            parts.append(("." if parts else "") + key)
    return "".join(parts) or "<root>"


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the source and every failing field path."""
    msgs = []
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        msgs.append(f"{_loc(tuple(e['loc']))}: {' '.join(str(msg).split())}")  # user text may hold line breaks
    return f"{source}: " + "; ".join(msgs)


MAX_DEPTH = 32  # nesting a config file may have; deeper documents are refused before they are built
MAX_BYTES = 16 * 2**20  # config and record files are small; a larger one is not what the user meant


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


def _yaml_depth_problem(text: str) -> str | None:
    """Why `text` nests too deeply, from the event stream (iterative: no recursion, unlike composing)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return f"line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return None


def non_finite_problem(data: Any) -> str | None:
    """`field.path: message` for the first NaN or infinite number in parsed data (`1e400`, `.inf`), else None."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_loc(loc)}: must be a finite number, got {value}"
        if isinstance(value, dict):
            stack += [((*loc, str(k)), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [((*loc, i), v) for i, v in enumerate(value)]
    return None


def _finite(data: Any, source: str) -> Any:
    bad = non_finite_problem(data)
    if bad:
        raise ConfigError(f"{source}: {bad}")
    return data


def _read_text(p: Path) -> str:
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    if p.stat().st_size > MAX_BYTES:
        raise ConfigError(
            f"{p}: {p.stat().st_size / 2**20:.1f} MiB; a config or record file is at most {MAX_BYTES // 2**20} MiB"
        )
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely: no tags that build objects, no duplicate keys, no deep nesting, finite numbers.

    Raises:
        ConfigError: `source: [line N: ]message`.
    """
    try:
        deep = _yaml_depth_problem(text)
        if deep:
            raise ConfigError(f"{source}: {deep}")
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{source}: line {e.line}: duplicate key '{e.key}'") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: {where}invalid YAML ({problem})") from None
    except RecursionError:  # aliases can still nest past the event-level check
        raise ConfigError(f"{source}: nested too deeply") from None
    return _finite(data, source)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely (see `parse_yaml`); missing files and syntax errors become `ConfigError`."""
    p = Path(path)
    return parse_yaml(_read_text(p), str(p))


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key '{k}'")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def parse_json(text: str, source: str) -> Any:
    """Parse JSON: duplicate keys, NaN/Infinity (and overflowing numbers) and deep nesting are `ConfigError`."""
    try:
        data = json.loads(text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_refuse_constant)
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{source}: invalid JSON ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid JSON (nested too deeply)") from None
    return _finite(data, source)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file (see `parse_json`); a missing or damaged file becomes `ConfigError` naming it."""
    p = Path(path)
    return parse_json(_read_text(p), str(p))


def read_json_mapping(path: str | Path, required: tuple[str, ...] = (), made_by: str | None = None) -> dict[str, Any]:
    """A JSON object with `required` keys, or a `ConfigError` naming the file and the first missing key."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        hint = f"; rerun `{made_by}`" if made_by else ""
        raise ConfigError(f"{path}: {missing[0]}: required key is missing (a damaged or foreign file){hint}")
    return data


def validate_as(model: type[M], data: Any, source: str, context: dict[str, Any] | None = None) -> M:
    """Validate `data` as `model`; errors name `source` and the field path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None


def load_yaml_model(path: str | Path, model: type[M], context: dict[str, Any] | None = None) -> M:
    """Read `path` and validate it as `model`."""
    return validate_as(model, read_yaml(path), str(path), context)
