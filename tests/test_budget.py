"""Shipped budgets and recipes validate; bad budgets fail with one line naming file and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgedistill.budget import find_budgets, load_budget
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "edgedistill" / "resources" / "recipes"
SHIPPED = sorted((REPO / "budgets").glob("*.yaml"))
REQUIRED = {
    "demo-cpu",
    "x86-onnxruntime",
    "intel-nuc-openvino",
    "raspberry-pi-5",
    "jetson-orin-nano",
    "jetson-agx-orin",
}


def test_required_budgets_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= REQUIRED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_budget_validates(path: Path) -> None:
    r = load_budget(path)
    assert r.budget.name == path.stem
    precision = r.budget.target.precision
    assert (r.recipe.runtime, r.recipe.precision) == (
        r.budget.target.runtime,
        "int8" if precision == "auto" else precision,
    )


# The CPU device budgets leave INT8 to measurement (it pays with VNNI, often not on AVX2 alone); TensorRT budgets and
# the INT8 study budgets name theirs.
AUTO_BUDGETS = {"demo-cpu", "x86-onnxruntime", "intel-nuc-openvino", "raspberry-pi-5"}


def test_cpu_device_budgets_choose_their_precision_by_measurement() -> None:
    auto = {p.stem for p in SHIPPED if load_budget(p).budget.target.precision == "auto"}
    assert auto == AUTO_BUDGETS


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load((REPO / "budgets" / "demo-cpu.yaml").read_text())
    data["target"]["recipe"] = str(RECIPES / "onnxruntime-int8.yaml")
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD = {
    "unknown key": (lambda d: d.update(colour="red"), "colour: unknown key"),
    "unknown accuracy metric": (lambda d: d["accuracy"].update(metric="f1"), "accuracy.metric: Input should be 'top1'"),
    "negative limit": (lambda d: d["limits"].update(macs_m=-5), "limits.macs_m: Input should be greater than 0"),
    "negative latency": (lambda d: d["limits"]["latency_ms"].update(p90=-1), "limits.latency_ms.p90"),
    "unknown percentile": (lambda d: d["limits"]["latency_ms"].update(p95=1), "limits.latency_ms.p95: unknown key"),
    "int8 on torch": (
        lambda d: d["target"].update(runtime="torch", precision="int8"),
        "runtime 'torch' has no int8",
    ),
    "auto on torch": (
        lambda d: d["target"].update(runtime="torch"),
        "precision auto needs a runtime with an int8 export; torch runs fp32 only",
    ),
    "missing recipe": (lambda d: d["target"].update(recipe="nope/x.yaml"), "target.recipe: file not found"),
    "recipe mismatch": (
        lambda d: d["target"].update(precision="fp32"),
        "recipe onnxruntime-int8 is for",
    ),
    "bad runtime": (lambda d: d["target"].update(runtime="tflite"), "target.runtime: Input should be"),
    "missing input": (lambda d: d.pop("input"), "input: required key is missing"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_budget_one_line_error(tmp_path: Path, case: str) -> None:
    mutate, expected = BAD[case]
    path = _write(tmp_path, mutate)
    with pytest.raises(BudgetError) as e:
        load_budget(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and expected in msg and "\n" not in msg, msg


def test_bad_recipe_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("name: r\nruntime: onnxruntime\nprecision: int8\n")
    path = _write(tmp_path, lambda d: d["target"].update(recipe=str(tmp_path / "r.yaml")))
    with pytest.raises(BudgetError, match="precision int8 needs a 'quantization' section"):
        load_budget(path)


def test_find_budgets_errors(tmp_path: Path) -> None:
    with pytest.raises(BudgetError, match="no budget files"):
        find_budgets(tmp_path)
    with pytest.raises(BudgetError, match="file not found"):
        find_budgets(tmp_path / "x.yaml")
    assert isinstance(BudgetError("x"), ConfigError)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgedistill", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_cli_bad_budget_exit_2_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["limits"].update(params_m=-1))
    r = _cli("budgets", str(path))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "limits.params_m" in lines[0] and str(path) in lines[0].replace("\n", "")
    assert "Traceback" not in r.stderr


def test_cli_train_bad_budget_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d.update(colour="red"))
    r = _cli("train", "--budget", str(path), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "colour: unknown key" in r.stderr and "Traceback" not in r.stderr


def test_cli_lists_shipped_budgets() -> None:
    r = _cli("budgets", "budgets")
    assert r.returncode == 0, r.stderr
    assert "demo-cpu" in r.stdout


@pytest.mark.parametrize("path", sorted((REPO / "tasks").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_task_files_validate(path: Path) -> None:
    from edgedistill.task import load_task
    from edgedistill.teachers import parse_source

    task, base = load_task(path)
    assert base == path.parent and task.name
    for t in task.teachers:
        parse_source(t.source)


def test_packaged_demo_task_matches_tasks_folder() -> None:
    from edgedistill.task import load_task

    packaged, _ = load_task(None)
    shipped, _ = load_task(REPO / "tasks" / "demo-mnist.yaml")
    assert packaged == shipped
