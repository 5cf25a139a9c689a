"""Pydantic base for every config and YAML loading with `file: field.path: message` errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgedistill.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Config base: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


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
        msgs.append(f"{_loc(tuple(e['loc']))}: {msg}")
    return f"{source}: " + "; ".join(msgs)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely; missing files and syntax errors become `ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: {where}invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or damaged file becomes `ConfigError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: invalid JSON ({e})") from None


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
