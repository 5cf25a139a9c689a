"""Pydantic base for every config and YAML loading with `file: field.path: message` errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from edgedistill.errors import ConfigError
from edgedistill.outputs import check_name

M = TypeVar("M", bound=BaseModel)

# A name that becomes part of a file name (budget, task, recipe, artifact): it can never leave its folder.
SafeName = Annotated[str, AfterValidator(check_name)]

MAX_INT = 10**9  # past any count, size or step number a config means; far larger ones overflow numpy and torch
MAX_BATCH = 2**16  # images in one training or evaluation batch; more never fit memory at any input size


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # a bool is an int to Python: `max_int8_drop_pts: true` would read as 1.0
        raise PydanticCustomError("bool_as_number", "expected a number, got a boolean")
    return value


# Config numbers: `int` and `float` fields use these, so YAML `true` is no number (pydantic's lax mode takes it).
NotBool = BeforeValidator(_not_bool)
Int = Annotated[int, NotBool, Field(le=MAX_INT)]
Float = Annotated[float, NotBool]
Seed = Annotated[int, NotBool, Field(ge=0, lt=2**32, description="random seed (numpy takes 32 bits)")]


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
MAX_NODES = 100_000  # values a YAML config may hold, aliases expanded: 600 bytes of aliases can expand to 9**9


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


def _yaml_shape_problem(text: str) -> str | None:
    """Why `text` nests too deeply or holds too many values, aliases expanded, from the event stream.

    Linear in the text: an anchored node remembers its expanded size and height, and an alias adds them where it
    stands, so a billion-laughs document is refused without being expanded (and, unlike composing, nothing recurses).
    """
    written = expanded = 0  # values in the text; values once every alias is replaced by its node
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of its node
    opened: list[list[Any]] = []  # open collections: [anchor, `expanded` before it, its depth, deepest level within]
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = f"line {event.start_mark.line + 1}"
        reached = len(opened)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            written, expanded, reached = written + 1, expanded + 1, reached + 1
            opened.append([event.anchor, expanded - 1, reached, reached])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, before, depth, deepest = opened.pop()
            reached = deepest
            if anchor is not None:
                anchors[anchor] = (expanded - before, deepest - depth + 1)
        elif isinstance(event, yaml.ScalarEvent):
            written, expanded = written + 1, expanded + 1
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in opened):
                return f"{line}: alias *{event.anchor} stands inside its own anchor (a recursive structure)"
            values, levels = anchors.get(event.anchor, (1, 0))  # an undefined alias: the loader names it
            expanded, reached = expanded + values, reached + levels
        if reached > MAX_DEPTH:
            return f"{line}: nested deeper than {MAX_DEPTH} levels"
        if opened:
            opened[-1][3] = max(opened[-1][3], reached)
        if written > MAX_NODES:
            return f"{line}: more than {MAX_NODES} values; a config file is far smaller"
        if expanded > MAX_NODES:
            return f"{line}: aliases expand to more than {MAX_NODES} values (a YAML alias bomb?)"
    return None


def non_finite_problem(data: Any) -> str | None:
    """`field.path: message` for the first NaN or infinite number in parsed data (`1e400`, `.inf`), else None.

    Each list or dict is visited once, so data that shares (YAML aliases) or contains itself stays linear.
    """
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), data)]
    seen: set[int] = set()
    while stack:
        loc, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_loc(loc)}: must be a finite number, got {value}"
        if isinstance(value, (dict, list)):
            if id(value) in seen:
                continue
            seen.add(id(value))
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
    """Parse YAML safely: no object-building tags, duplicate keys, deep nesting or alias bombs; numbers finite.

    Raises:
        ConfigError: `source: [line N: ]message`.
    """
    try:
        shape = _yaml_shape_problem(text)
        if shape:
            raise ConfigError(f"{source}: {shape}")
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
