"""Hostile values (issue 31): alias bombs, booleans as numbers, out-of-range seeds, counts and bench options.

Every case ends as one `error:` line with exit code 2, naming the file and field (or the option), and writes nothing.
"""

from __future__ import annotations

import importlib
import math
import string
from pathlib import Path
from typing import Annotated, Any

import pytest
from conftest import run_cli
from pydantic import TypeAdapter, ValidationError
from test_bad_input import assert_one_line, write

from edgedistill.budget import load_budget
from edgedistill.config import MAX_DEPTH, MAX_NODES, StrictModel, non_finite_problem, parse_yaml
from edgedistill.errors import BudgetError, ConfigError
from edgedistill.task import load_task

REPO = Path(__file__).resolve().parents[1]
BUDGET = REPO / "budgets" / "demo-cpu.yaml"
TASK = "name: t\ndata: {source: optdigits, labels_per_class: 2, unlabeled: 200, test: 100}\n"
CONFIG_MODULES = (
    "edgedistill.budget.spec",
    "edgedistill.task",
    "edgedistill.data.config",
    "edgedistill.distill.config",
    "edgedistill.recipe",
)


def bomb(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs document: `levels` anchored lists, each holding `width` aliases of the previous one."""
    names = string.ascii_lowercase
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"{names[i]}: &{names[i]} [{', '.join([f'*{names[i - 1]}'] * width)}]")
    return "\n".join(lines) + "\n"


# ---- YAML aliases -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_alias_bomb_is_refused_without_expanding() -> None:
    assert len(bomb()) < 700
    with pytest.raises(ConfigError, match=rf"^b\.yaml: line \d+: aliases expand to more than {MAX_NODES} values"):
        parse_yaml(bomb(), "b.yaml")


@pytest.mark.timeout(20)
def test_alias_bomb_in_a_budget_and_a_task(tmp_path: Path) -> None:
    budget = write(tmp_path / "b.yaml", BUDGET.read_text() + bomb())
    with pytest.raises(BudgetError, match=r"b\.yaml: .*aliases expand"):
        load_budget(budget)
    task = write(tmp_path / "t.yaml", TASK + bomb())
    with pytest.raises(ConfigError, match=r"t\.yaml: .*aliases expand"):
        load_task(task)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("kind", ["budget", "task"])
def test_alias_bomb_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    if kind == "budget":
        args = ["--budget", write(tmp_path / "b.yaml", BUDGET.read_text() + bomb())]
    else:
        args = ["--budget", BUDGET, "--task", write(tmp_path / "t.yaml", TASK + bomb())]
    code, err = run_cli(capsys, "train", *args, "--out", tmp_path / "run", "--device", "cpu")
    assert_one_line(code, err, f"{kind[0]}.yaml", "aliases expand", "alias bomb")
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: &a [*a]\n", "line 1: alias *a stands inside its own anchor"),
        ("a: &a {b: {c: *a}}\n", "alias *a stands inside its own anchor"),
        # 20 levels written, 20 more through the alias: deeper than MAX_DEPTH although no line nests that far.
        ("a: &a " + "[" * 20 + "]" * 20 + "\nb: " + "[" * 20 + "*a" + "]" * 20 + "\n", "line 2: nested deeper"),
        ("a: [" + ", ".join(["1"] * (MAX_NODES + 1)) + "]\n", f"more than {MAX_NODES} values"),
    ],
    ids=["recursive list", "recursive mapping", "deep through an alias", "too many values"],
)
def test_alias_shapes_refused(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_yaml(text, "x.yaml")
    assert str(e.value).startswith("x.yaml: ") and needle in str(e.value)


def test_small_aliases_still_work(tmp_path: Path) -> None:
    assert parse_yaml("a: &a [1, 2]\nb: [*a, *a]\nc: &s hi\nd: *s\n", "x.yaml") == {
        "a": [1, 2],
        "b": [[1, 2], [1, 2]],
        "c": "hi",
        "d": "hi",
    }
    flat = "a: &a " + "[" * 10 + "]" * 10 + "\nb: " + "[" * 10 + "*a" + "]" * 10 + "\n"
    assert parse_yaml(flat, "x.yaml")["b"]  # 21 levels in all: within MAX_DEPTH
    assert MAX_DEPTH >= 21
    text = BUDGET.read_text().replace("height: 28, width: 28", "height: &side 28, width: *side")
    assert load_budget(write(tmp_path / "b.yaml", text)).budget.input.width == 28
    task = write(tmp_path / "t.yaml", TASK + "student: {width_choices: &w [0.5, 1.0]}\ntrain: {seed: 3}\n")
    assert load_task(task)[0].student.width_choices == [0.5, 1.0]


@pytest.mark.timeout(20)
def test_non_finite_problem_visits_shared_and_recursive_data_once() -> None:
    shared: Any = [1.0] * 9
    for _ in range(9):  # 9**9 values once expanded
        shared = [shared] * 9
    assert non_finite_problem(shared) is None
    loop: dict[str, Any] = {"x": 1.0}
    loop["self"] = loop
    assert non_finite_problem(loop) is None
    loop["bad"] = [math.inf]
    assert non_finite_problem(loop) == "bad[0]: must be a finite number, got inf"


# ---- booleans, seeds and counts in configs ---------------------------------------------------------------------

TASK_CASES: dict[str, tuple[str, list[str]]] = {
    "bool steps": ("train: {steps: true}\n", ["train.steps", "expected a number, got a boolean"]),
    "bool lr": ("train: {lr: true}\n", ["train.lr", "expected a number, got a boolean"]),
    "bool channels": ("", ["data.channels", "expected a number, got a boolean"]),
    "bool in a list": ("student: {width_choices: [0.5, true]}\n", ["student.width_choices[1]", "got a boolean"]),
    "negative data seed": ("", ["data.seed", "greater than or equal to 0"]),
    "huge train seed": ("train: {seed: 100000000000000000000000}\n", ["train.seed", "less than 4294967296"]),
    "bool seed": ("train: {seed: false}\n", ["train.seed", "got a boolean"]),
    "huge steps": ("train: {steps: 100000000000000000000000}\n", ["train.steps", "less than or equal to"]),
    "huge batch": ("train: {batch_labeled: 10000000}\n", ["train.batch_labeled", "less than or equal to 65536"]),
    "huge image count": (
        "data: {source: mnist, unlabeled: 10000000000}\n",
        ["data.unlabeled", "less than or equal to 1000000000"],
    ),
}
DATA_EDITS = {"bool channels": "channels: true, ", "negative data seed": "seed: -5, "}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_bad_task_value(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    extra, needles = TASK_CASES[case]
    text = TASK.replace("data: {", "data: {" + DATA_EDITS.get(case, ""))
    if extra.startswith("data:"):
        text = "name: t\n"
    task = write(tmp_path / "t.yaml", text + extra)
    code, err = run_cli(capsys, "train", "--task", task, "--budget", BUDGET, "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, "t.yaml", *needles)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("max_int8_drop_pts: 1.0", "max_int8_drop_pts: true", "accuracy.max_int8_drop_pts"),
        ("p90: 1.0", "p90: true", "limits.latency_ms.p90"),
        ("threads: 1", "threads: true", "target.threads"),
        ("batch: 1", "batch: false", "input.batch"),
    ],
)
def test_bool_in_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str) -> None:
    text = BUDGET.read_text()
    assert old in text
    budget = write(tmp_path / "b.yaml", text.replace(old, new))
    code, err = run_cli(capsys, "train", "--budget", budget, "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, f"b.yaml: {field}: expected a number, got a boolean")
    assert not (tmp_path / "r").exists()


def _models() -> list[type[StrictModel]]:
    for name in CONFIG_MODULES:
        importlib.import_module(name)
    found, todo = [], list(StrictModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__ in CONFIG_MODULES:
            found.append(cls)
    return found


def _fields() -> list[tuple[str, TypeAdapter[Any]]]:
    """(Model.field, an adapter validating one value as that field does, constraints included)."""
    out: list[tuple[str, TypeAdapter[Any]]] = []
    for m in _models():
        for name, f in m.model_fields.items():
            tp = Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation  # type: ignore[valid-type]
            out.append((f"{m.__name__}.{name}", TypeAdapter(tp)))
    return out


def _accepts(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def test_every_config_number_refuses_booleans() -> None:
    """A bool is either refused or kept a bool (a flag, a family option), never read as 1 or 0."""
    assert len(_models()) >= 15
    for where, adapter in _fields():
        for value, pick in ((True, lambda v: v), ([True], lambda v: v[0]), ({"k": False}, lambda v: v["k"])):
            out = _accepts(adapter, value)
            assert out is None or type(pick(out)) is bool, f"{where} reads {value} as {out}"


def test_every_config_int_is_bounded_and_seeds_fit_32_bits() -> None:
    for where, adapter in _fields():
        ints = [v for v in (1, 2, 17) if type(_accepts(adapter, v)) is int]
        if ints:
            assert _accepts(adapter, 10**23) is None, where
        if where.endswith(".seed"):
            assert _accepts(adapter, 2**32 - 1) == 2**32 - 1, where
            assert _accepts(adapter, 2**32) is None and _accepts(adapter, -1) is None, where


def test_family_options_keep_booleans() -> None:
    from edgedistill.task import StudentConfig

    assert StudentConfig(options={"flag": True, "n": 1, "x": 0.5}).options == {"flag": True, "n": 1, "x": 0.5}
    assert type(StudentConfig(options={"n": 1}).options["n"]) is int


# ---- bench options ----------------------------------------------------------------------------------------------

BENCH_CASES: dict[str, tuple[list[str], list[str]]] = {
    "threads": (["--threads", "10000"], ["--threads", "4 per logical CPU", "got 10000"]),
    "min time inf": (["--min-time", "inf"], ["--min-time", "got inf"]),
    "min time nan": (["--min-time", "nan"], ["--min-time"]),
    "warmup time": (["--warmup-time", "1e9"], ["--warmup-time", "3600"]),
    "batch": (["--batch", "1000000000"], ["--batch", "4096", "got 1000000000"]),
    "runs": (["--runs", "10000000"], ["--runs", "1000000", "got 10000000"]),
    "warmup": (["--warmup", "10000000"], ["--warmup", "got 10000000"]),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(BENCH_CASES))
def test_bench_option_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, needles = BENCH_CASES[case]
    code, err = run_cli(capsys, "bench", "--run", tmp_path / "run", *args)
    assert_one_line(code, err, *needles)
    assert not (tmp_path / "run").exists()


def test_bench_option_bounds_in_python() -> None:
    from edgedistill.api.stages import bench
    from edgedistill.pipeline.bench import BenchOptions

    with pytest.raises(ConfigError, match=r"^threads: expected 1 to \d+ .*got 10000$"):
        bench(threads=10_000)
    with pytest.raises(ConfigError, match=r"^min_time: expected 0 to 3600 seconds, got inf$"):
        BenchOptions(min_time_s=math.inf)
    assert BenchOptions(threads=1, batch=4096, runs=10**6, min_time_s=3600).batch == 4096


def test_budget_threads_over_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgedistill.pipeline.bench as stage

    monkeypatch.setattr(stage, "max_threads", lambda: 2)
    budget = write(tmp_path / "b.yaml", BUDGET.read_text().replace("threads: 1", "threads: 4"))
    artifact = tmp_path / "run" / "export" / "onnxruntime-int8"
    code, err = run_cli(capsys, "bench", "--artifact", artifact, "--budget", budget, "--no-reference")
    assert_one_line(code, err, "b.yaml: target.threads: 4 is over 2", "--threads N")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--threads", "100000"], "--threads"), (["--min-time", "inf"], "--min-time"), (["--batch", "0"], "--batch")],
)
def test_device_runner_checks_bounds_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    from edgedistill.bench import runner

    capsys.readouterr()
    assert runner.main([str(tmp_path / "artifact"), *args]) == 2
    assert_one_line(2, capsys.readouterr().err, needle)
