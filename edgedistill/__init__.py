"""edgedistill: distil pretrained teachers into a slimmable student, fit it to a device budget, export, benchmark.

The Python API (the CLI is a thin layer over it)::

    import edgedistill as ed

    run = ed.train(budget="budgets/demo-cpu.yaml", out="runs/demo")
    ed.export(run=run.run)
    print(ed.bench(run=run.run).verdict)

Names load on first use (module `__getattr__`): `import edgedistill` imports no torch.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

# module → the public names it defines (loaded on first use)
_MODULES = {
    "edgedistill.api.stages": ("train", "search", "profile", "export", "bench", "emit_runner", "report"),
    "edgedistill.api.teachers": ("rank_teachers", "finetune_teacher", "budgets"),
    "edgedistill.api.objects": ("build_bank", "export_onnx", "quantize", "time_artifact", "QUANTIZERS"),
    "edgedistill.models": ("load_bank", "save_bank", "extract", "SlimmableBank"),
    "edgedistill.budget": ("load_budget", "ResolvedBudget"),
    "edgedistill.recipe": ("Recipe", "load_recipe"),
    "edgedistill.api.results": (
        "TrainResult",
        "DomainScores",
        "SearchResult",
        "ProfileResult",
        "ExportResult",
        "TeacherRanking",
        "RankedTeacher",
        "FinetuneResult",
        "BudgetList",
        "BudgetEntry",
    ),
    "edgedistill.api.bench_results": ("BenchResult", "Latency", "WidthLatency", "RunnerFolder", "ReportResult"),
    "edgedistill.errors": (
        "EdgedistillError",
        "ConfigError",
        "BudgetError",
        "RegistryError",
        "DataError",
        "CheckpointError",
        "ExportError",
        "ResourceError",
        "BenchError",
        "BackendUnavailable",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "__version__",
    "train",
    "search",
    "profile",
    "export",
    "bench",
    "emit_runner",
    "report",
    "rank_teachers",
    "finetune_teacher",
    "budgets",
    "export_onnx",
    "quantize",
    "time_artifact",
    "QUANTIZERS",
    "build_bank",
    "load_bank",
    "save_bank",
    "extract",
    "SlimmableBank",
    "load_budget",
    "ResolvedBudget",
    "Recipe",
    "load_recipe",
    "TrainResult",
    "DomainScores",
    "SearchResult",
    "ProfileResult",
    "ExportResult",
    "BenchResult",
    "Latency",
    "WidthLatency",
    "RunnerFolder",
    "ReportResult",
    "TeacherRanking",
    "RankedTeacher",
    "FinetuneResult",
    "BudgetList",
    "BudgetEntry",
    "EdgedistillError",
    "ConfigError",
    "BudgetError",
    "RegistryError",
    "DataError",
    "CheckpointError",
    "ExportError",
    "ResourceError",
    "BenchError",
    "BackendUnavailable",
]


def _version() -> str:
    """The installed package's version, else the one in the source tree's pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgedistill")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgedistill' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Stage:
    """`edgedistill.export` (also `bench`, `report`, `search`): the stage call, and the subpackage of the same name.

    Calling it runs the API function; any other attribute is the subpackage's, so `edgedistill.export.manifest` and
    `import edgedistill.export.manifest as m` keep working.
    """

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    @property
    def __wrapped__(self) -> Any:  # inspect.signature and help() follow it to the function
        return getattr(importlib.import_module("edgedistill.api.stages"), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(f"edgedistill.{self._name}"), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(importlib.import_module(f"edgedistill.{self._name}"), attr, value)

    def __repr__(self) -> str:
        return f"<edgedistill.{self._name}: stage call and subpackage>"

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self.__wrapped__.__doc__


class _Package(types.ModuleType):
    """The package's module type: stage names that are also subpackages always give the stage call."""


def _stage_property(name: str) -> property:
    stage = _Stage(name)

    def get(self: types.ModuleType) -> _Stage:
        return stage

    def put(self: types.ModuleType, value: Any) -> None:  # the import system setting the subpackage
        self.__dict__[name] = value

    return property(get, put)


for _name in ("export", "bench", "report", "search"):
    setattr(_Package, _name, _stage_property(_name))
sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what type checkers and IDEs see
    from edgedistill.api.bench_results import BenchResult, Latency, ReportResult, RunnerFolder, WidthLatency
    from edgedistill.api.objects import QUANTIZERS, build_bank, export_onnx, quantize, time_artifact
    from edgedistill.api.results import (
        BudgetEntry,
        BudgetList,
        DomainScores,
        ExportResult,
        FinetuneResult,
        ProfileResult,
        RankedTeacher,
        SearchResult,
        TeacherRanking,
        TrainResult,
    )
    from edgedistill.api.stages import bench, emit_runner, export, profile, report, search, train
    from edgedistill.api.teachers import budgets, finetune_teacher, rank_teachers
    from edgedistill.budget import ResolvedBudget, load_budget
    from edgedistill.errors import (
        BackendUnavailable,
        BenchError,
        BudgetError,
        CheckpointError,
        ConfigError,
        DataError,
        EdgedistillError,
        ExportError,
        RegistryError,
        ResourceError,
    )
    from edgedistill.models import SlimmableBank, extract, load_bank, save_bank
    from edgedistill.recipe import Recipe, load_recipe
