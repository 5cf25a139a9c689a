"""Registry, config loading and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from edgedistill.config import StrictModel, load_yaml_model
from edgedistill.errors import ConfigError, RegistryError
from edgedistill.io import atomic_write_text, sha256_file
from edgedistill.registry import Registry


def test_registry_did_you_mean_and_known_names() -> None:
    reg: Registry[int] = Registry("loss")
    reg.register("seed")(1)
    reg.register("kd")(2)
    assert reg.get("seed") == 1 and "kd" in reg and reg.names() == ["kd", "seed"]
    with pytest.raises(RegistryError, match=r"unknown loss 'sed'; did you mean 'seed'\? known: kd, seed"):
        reg.get("sed")
    with pytest.raises(RegistryError) as e:
        reg.get("zzz")
    assert "did you mean" not in str(e.value) and str(e.value).startswith("unknown loss 'zzz'")


def test_registry_rejects_duplicates() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(2)


class _Inner(StrictModel):
    p90: float = Field(gt=0)


class _Cfg(StrictModel):
    name: str
    limits: _Inner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nlimits: {p90: -1}\n", "limits.p90: Input should be greater than 0"),
        ("name: a\nlimits: {p90: 1}\nextra: 3\n", "extra: unknown key"),
        ("limits: {p90: 1}\n", "name: required key is missing"),
        ("name: a\nlimits: {p90: [1\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_yaml_errors_name_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_yaml_model(path, _Cfg)
    msg = str(e.value)
    assert msg.startswith(str(path)) and expected in msg and "\n" not in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_yaml_model(tmp_path / "nope.yaml", _Cfg)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]
    assert len(sha256_file(path)) == 64


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    from edgedistill.io import atomic_write

    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def boom(p: Path) -> None:
        p.write_text("partial")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
