"""Argument types of the Python API (`api/validate.py`): a bad type is a one-line ConfigError naming the parameter,
raised before anything is read, written or started; every value the API documents still passes.
"""

from __future__ import annotations

import inspect
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError

import edgedistill as ed
from edgedistill.api import objects, stages, teachers
from edgedistill.api.validate import PathArg, strict_args
from edgedistill.options import cli_wording


def _where(function: str, tmp: Path) -> dict[str, Any]:
    """Where each call would read or write: all under `tmp`."""
    run = {"run": tmp / "run"}
    return {
        "train": {"out": tmp / "run"},
        "emit_runner": {"out": tmp / "device", **run},
        "rank_teachers": {"cache": tmp / "cache"},
        "finetune_teacher": {"cache": tmp / "cache", "out": tmp / "ft"},
        "budgets": {"path": tmp / "budgets"},
        "time_artifact": {"artifact": tmp / "run" / "export" / "onnxruntime-int8"},
    }.get(function, run)


BAD = [
    ("export", {"run": 123}, "run"),
    ("bench", {"threads": "4"}, "threads"),
    ("train", {"steps": "2"}, "steps"),
    ("bench", {"runs": None}, "runs"),
    ("bench", {"batch": 2.5}, "batch"),
    ("train", {"overwrite": "no"}, "overwrite"),
    ("train", {"overwrite": 1}, "overwrite"),
    ("train", {"resume": "yes"}, "resume"),
    ("train", {"budget": b"budgets/demo-cpu.yaml"}, "budget"),
    ("search", {"seed": 1.5}, "seed"),
    ("search", {"time_budget": True}, "time_budget"),
    ("profile", {"threads": True}, "threads"),
    ("profile", {"input": [28, 28]}, "input"),
    ("profile", {"input": (28.0, 28)}, "input"),
    ("export", {"precision": "int4"}, "precision"),
    ("export", {"calibration_samples": "300"}, "calibration_samples"),
    ("export", {"allow_small_calibration": 1}, "allow_small_calibration"),
    ("report", {"run": None}, "run"),
    ("emit_runner", {"threads": "2"}, "threads"),
    ("rank_teachers", {"similarity": [1]}, "similarity"),
    ("finetune_teacher", {"teacher": True}, "teacher"),
    ("budgets", {"path": 5}, "path"),
    ("time_artifact", {"runs": None}, "runs"),
]


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tmp_path` as the working folder, holding a run that must survive; no subprocess may start."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.json").write_text("{}")

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.chdir(tmp_path)  # defaults such as runs/demo would land here too
    return tmp_path


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"/" for p in root.rglob("*")}


@pytest.mark.parametrize(("function", "kw", "name"), BAD, ids=[f"{f}-{n}" for f, _, n in BAD])
def test_bad_type_is_one_line_naming_the_parameter(function: str, kw: dict[str, Any], name: str, sealed: Path) -> None:
    before = _tree(sealed)
    with pytest.raises(ed.ConfigError) as info:
        getattr(ed, function)(**(_where(function, sealed) | kw))
    message = str(info.value)
    assert message.startswith(f"{name}: expected ") and f" {repr(kw[name])[:20]}" in message
    assert "\n" not in message and "pydantic" not in message and "Input should" not in message
    assert _tree(sealed) == before  # nothing written, nothing deleted (overwrite="no" once replaced a run)


def test_messages_word_the_expectation_and_the_value(sealed: Path) -> None:
    def message(function: str, **kw: Any) -> str:
        with pytest.raises(ed.ConfigError) as info:
            getattr(ed, function)(**(_where(function, sealed) | kw))
        return str(info.value)

    assert message("bench", threads="4") == "threads: expected an integer or None, got '4'"
    assert message("train", overwrite="no") == "overwrite: expected True or False, got 'no'"
    assert message("report", run=None) == "run: expected a path (str or os.PathLike), got None"
    assert message("export", precision="int4") == "precision: expected int8, fp16, fp32 or None, got 'int4'"
    assert message("profile", input=[8, 8]) == "input: expected a string or a tuple (int, int), got list [8, 8]"
    assert message("bench", threads="4", runs=None) == (
        "threads: expected an integer or None, got '4'; runs: expected an integer, got None"
    )
    assert (
        message("export", sensitivity_top_k=2.5)
        == "sensitivity_top_k: expected a whole number ≥ 0 (0: SQNR only), got 2.5"
    )
    assert message("export", bogus=1) == "bogus: not a parameter of export()"
    assert message("emit_runner", out=None) == "out: expected a path (str or os.PathLike), got None"
    with pytest.raises(ed.ConfigError, match=r"^train\(\) takes at most 3 positional arguments, got 4$"):
        ed.train("b.yaml", None, sealed / "run", "cpu")  # type: ignore[misc]
    with cli_wording():  # the CLI's wording: the option, not the parameter
        assert message("bench", threads="4") == "--threads: expected an integer or None, got '4'"


def test_good_calls_pass_the_check(sealed: Path) -> None:
    """Valid values of every kind get past the check to the stage's own errors (here: no such run)."""

    class Folder:  # any os.PathLike, not only Path
        def __fspath__(self) -> str:
            return str(sealed / "missing")

    for run in (sealed / "missing", str(sealed / "missing"), Folder()):
        with pytest.raises(ed.ConfigError, match=r"run folder not found"):
            ed.report(run=run, out=None, budget=None)  # type: ignore[arg-type]
    missing = r"not found; run `edgedistill\.train\(\)` first"
    with pytest.raises(ed.ConfigError, match=missing):
        ed.profile(sealed / "missing", runtime="onnxruntime", precision="fp32", input=(8, 8), threads=1, batch=1)
    with pytest.raises(ed.ConfigError, match=missing):
        ed.bench(str(sealed / "missing"), threads=2, runs=10, min_time=0, warmup=0, batch=None, reference=False)
    with pytest.raises(ed.ConfigError, match=missing):
        ed.emit_runner(sealed / "device", run=sealed / "missing", threads=None)
    assert not (sealed / "device").exists()


def test_the_check_accepts_every_documented_form() -> None:
    @strict_args
    def f(
        path: PathArg = "x",
        shape: str | tuple[int, int] = "8x8",
        *,
        mode: Literal["none", "auto"] | None = None,
        metric: str | Sequence[str] | None = None,
        seconds: float = 1.0,
        flag: bool = False,
        teacher: str | int = "best",
    ) -> tuple[Any, ...]:
        return path, shape, mode, metric, seconds, flag, teacher

    assert f(Path("a"), (8, 8), mode="auto", metric=["knn", "leep"], seconds=2, flag=True, teacher=0) == (
        Path("a"), (8, 8), "auto", ["knn", "leep"], 2, True, 0
    )  # fmt: skip
    assert f("a", "8x8", mode=None, metric=("knn",), teacher="ccexam:usps")[3] == ("knn",)
    assert f(metric="knn")[3] == "knn"


class Model(BaseModel):
    n: int


def test_errors_from_inside_the_function_are_not_reworded() -> None:
    @strict_args
    def build(n: int) -> Model:
        return Model(n="x")  # type: ignore[arg-type]  # a bug inside: pydantic's own error, traceback kept

    with pytest.raises(ValidationError):
        build(1)


def test_every_stage_call_is_checked_and_keeps_its_signature() -> None:
    for module, names in (
        (stages, ("train", "search", "profile", "export", "bench", "emit_runner", "report")),
        (teachers, ("rank_teachers", "finetune_teacher", "budgets")),
        (objects, ("time_artifact",)),
    ):
        for name in names:
            function = getattr(module, name)
            assert inspect.unwrap(function) is not function and function.__doc__, name
    assert "threads" in inspect.signature(ed.bench).parameters and ed.bench.__doc__.startswith("Time the budget's")
    assert str(inspect.signature(stages.profile).parameters["input"].annotation) == "str | tuple[int, int]"
