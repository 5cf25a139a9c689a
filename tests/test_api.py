"""The Python API (`import edgedistill as ed`): every command has a Python call returning a typed result.

One tiny run (optdigits at 8x8, 4 ce-only steps) is trained once for the module and taken through search, export,
bench, report and the device runner; the object-level calls work on its bank. Errors from Python calls name
parameters (`resume=True`), the same errors through the CLI name flags (`--resume`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli_output

import edgedistill as ed

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml"
TINY = (
    "name: tiny\ndata: {source: optdigits, labels_per_class: 2, unlabeled: 200, test: 100}\n"
    "student: {family: resnet_cifar, width_choices: [0.5, 1.0], options: {base_channels: [8, 16, 16]}}\n"
    "train: {distiller: ce-only, steps: 4, checkpoint_every: 2, batch_labeled: 8, batch_unlabeled: 8, "
    "warmup_steps: 1, num_sampled: 2, bn_calibration_images: 64, augment: false}\n"
)
FAST = {"runs": 10, "min_time": 0.0, "warmup": 1}


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ed.TrainResult]:
    """(task, budget, result) of a tiny run: the demo budget at 8x8 input, any INT8 drop accepted."""
    tmp = tmp_path_factory.mktemp("api")
    text = (REPO / "budgets" / "demo-cpu.yaml").read_text()
    text = text.replace("height: 28, width: 28", "height: 8, width: 8").replace(
        "max_int8_drop_pts: 1.0", "max_int8_drop_pts: 100"
    )
    budget = _write(tmp / "tiny-budget.yaml", text)
    task = _write(tmp / "task.yaml", TINY)
    return task, budget, ed.train(budget=budget, task=task, out=tmp / "run", device="cpu")


# ---- package: lazy, versioned, complete ----------------------------------------------------------------------


def test_import_and_version_do_not_import_torch() -> None:
    code = (
        "import sys, edgedistill as ed; v = ed.__version__; names = ed.__all__; ed.TrainResult; ed.ConfigError; "
        "ed.budgets('budgets'); print(v, 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    version, torch_loaded, _ = r.stdout.split()
    pyproject = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert pyproject is not None and version == pyproject.group(1) and torch_loaded == "False"


def test_all_names_resolve_and_results_are_frozen() -> None:
    assert len(set(ed.__all__)) == len(ed.__all__) and set(ed.__all__) == set(ed._EXPORTS) | {"__version__"}
    for name in ed.__all__:
        assert getattr(ed, name) is not None, name
    with pytest.raises(AttributeError):
        ed.no_such_name  # noqa: B018
    for name in ("TrainResult", "SearchResult", "ExportResult", "BenchResult", "ReportResult", "FinetuneResult"):
        assert dataclasses.is_dataclass(getattr(ed, name)) and getattr(ed, name).__dataclass_params__.frozen


def test_stage_names_shadow_subpackages_but_keep_them_reachable() -> None:
    import edgedistill.export.manifest as manifest_module

    for name in ("export", "bench", "report", "search"):
        assert callable(getattr(ed, name)) and "run" in inspect.signature(getattr(ed, name)).parameters
    assert ed.export.manifest is manifest_module and ed.search.SearchSettings is not None


# every CLI option → the API parameter it maps to (None: CLI-only presentation or gating)
CLI_ONLY = {"progress", "fail_on_budget", "emit_runner", "int8", "fp16", "fp32"}
RENAMED = {"metric": "similarity"}


@pytest.mark.parametrize(
    ("command", "function"),
    [
        ("train", "train"),
        ("search", "search"),
        ("profile", "profile"),
        ("export", "export"),
        ("bench", "bench"),
        ("report", "report"),
        ("budgets", "budgets"),
        ("teachers rank", "rank_teachers"),
        ("teachers finetune", "finetune_teacher"),
    ],
)
def test_every_cli_option_has_a_python_parameter(command: str, function: str) -> None:
    from edgedistill.cli import bench as cli_bench
    from edgedistill.cli import budgets, teachers
    from edgedistill.cli import export as cli_export
    from edgedistill.cli import profile as cli_profile
    from edgedistill.cli import report as cli_report
    from edgedistill.cli import search as cli_search
    from edgedistill.cli import train as cli_train

    commands = {
        "train": cli_train.train,
        "search": cli_search.search,
        "profile": cli_profile.profile,
        "export": cli_export.export,
        "bench": cli_bench.bench,
        "report": cli_report.report,
        "budgets": budgets.budgets,
        "teachers rank": teachers.rank,
        "teachers finetune": teachers.finetune,
    }
    cli_params = set(inspect.signature(commands[command]).parameters) - CLI_ONLY
    api_params = set(inspect.signature(getattr(ed, function)).parameters)
    assert {RENAMED.get(p, p) for p in cli_params} <= api_params
    if command == "export":
        assert "precision" in api_params
    if command == "bench":
        assert {"out", "run", "artifact", "budget"} <= set(inspect.signature(ed.emit_runner).parameters)


# ---- stages on a tiny run ------------------------------------------------------------------------------------


def test_train_returns_a_typed_result(tiny: tuple[Path, Path, ed.TrainResult]) -> None:
    _, _, r = tiny
    assert isinstance(r, ed.TrainResult) and r.task == "tiny" and r.steps == 4 and r.family == "resnet_cifar"
    assert set(r.width_accuracy) == {"0.5", "1.0"} and r.chosen is not None and r.chosen.test_accuracy is not None
    assert (
        r.bank.is_file()
        and r.subnet.is_file()
        and json.loads(json.dumps(r.to_dict())) == json.loads((r.run / "train.json").read_text()) | {"run": str(r.run)}
    )  # train.json keeps paths relative to the run ("run": "."); the result joins them to where the run is
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.steps = 5  # type: ignore[misc]


def test_search_export_bench_report_runner(tiny: tuple[Path, Path, ed.TrainResult], tmp_path: Path) -> None:
    _, budget, trained = tiny
    run = tmp_path / "run"
    shutil.copytree(trained.run, run, ignore=shutil.ignore_patterns("checkpoint"))
    s = ed.search(run=run, measure="off", evaluations=20)
    assert isinstance(s, ed.SearchResult) and s.budget == "demo-cpu" and s.chosen.macs > 0 and s.json.is_file()
    assert any("latency not measured" in n for n in s.notes) and s.to_dict()["budget"] == "demo-cpu"
    e = ed.export(run=run, calibration_samples=64, allow_small_calibration=True)
    assert isinstance(e, ed.ExportResult) and [m.name for m in e.manifests] == ["onnxruntime-fp32", "onnxruntime-int8"]
    assert (e.artifact / "manifest.json").is_file() and e.manifest.precision == "int8"
    assert e.sensitivity is not None and e.sensitivity is e.manifest.sensitivity and e.sensitivity.layers
    b = ed.bench(run=run, reference=False, **FAST)
    assert isinstance(b, ed.BenchResult) and b.verdict in ("PASS", "FAIL") and b.passed == (b.verdict == "PASS")
    assert b.latency[0].runtime == "onnxruntime" and b.latency[0].p50 > 0 and b.checks and b.json.is_file()
    rep = ed.report(run=run)
    assert isinstance(rep, ed.ReportResult) and rep.markdown.is_file() and rep.verdict == b.verdict
    assert "## INT8 sensitivity" in rep.markdown.read_text() and any(p.name == "sensitivity.png" for p in rep.plots)
    folder = ed.emit_runner(tmp_path / "device", run=run)
    assert (folder.path / "run.sh").is_file() and "run.sh" in folder.instructions


def test_profile_and_its_errors(
    tiny: tuple[Path, Path, ed.TrainResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call's plumbing, with the timing itself (one process per block shape, tested in test_search) faked."""
    import types

    from edgedistill.pipeline import search_run

    _, _, trained = tiny
    seen = {}

    def fake_profile(bank, recipe, shape, timing, out, show_progress):  # type: ignore[no-untyped-def]
        seen.update(recipe=recipe.target, shape=shape, threads=timing.threads, out=out)
        return types.SimpleNamespace(blocks={"a": 1, "b": 2}, overhead_ms={"p50": 0.01})

    monkeypatch.setattr(search_run, "profile_bank", fake_profile)
    p = ed.profile(run=trained.run, precision="fp32", input="8x8", threads=2)
    assert isinstance(p, ed.ProfileResult) and p.blocks == 2 and p.overhead_p50_ms == 0.01
    assert seen["recipe"] == "onnxruntime-fp32" and seen["shape"] == (1, 1, 8, 8) and seen["threads"] == 2
    assert p.path == seen["out"] and p.path.parent == trained.run / "latency"
    with pytest.raises(ed.ConfigError, match=r"^input: expected HxW"):
        ed.profile(run=trained.run, input="28")
    with pytest.raises(ed.BudgetError, match=r"^runtime: unknown runtime"):
        ed.profile(run=trained.run, runtime="onnxrt", input=(8, 8))


def test_teachers_rank_and_finetune(tiny: tuple[Path, Path, ed.TrainResult], tmp_path: Path) -> None:
    task = _write(tmp_path / "t.yaml", TINY + "teachers: [{source: 'ccexam:usps'}]\n")
    ranking = ed.rank_teachers(task=task, similarity="knn", cache=tmp_path / "cache", device="cpu")
    assert isinstance(ranking, ed.TeacherRanking) and ranking.metrics == ("knn",)
    assert [t.source for t in ranking.teachers] == ["ccexam:usps"] and ranking.teachers[0].alpha == pytest.approx(1.0)
    ft = ed.finetune_teacher(task=task, teacher=0, steps=2, cache=tmp_path / "cache", device="cpu")
    assert isinstance(ft, ed.FinetuneResult) and ft.source == "ccexam:usps" and ft.steps == 2
    with pytest.raises(ed.ConfigError, match=r"teacher='7': the task lists 1 teachers"):
        ed.finetune_teacher(task=task, teacher=7, device="cpu")


def test_budgets_lists_valid_and_invalid(tmp_path: Path) -> None:
    shutil.copy(REPO / "budgets" / "demo-cpu.yaml", tmp_path / "good.yaml")
    _write(tmp_path / "bad.yaml", "name: [unclosed\n")
    listing = ed.budgets(tmp_path)
    assert isinstance(listing, ed.BudgetList) and not listing.valid and len(listing.entries) == 2
    assert any("invalid YAML" in e for e in listing.errors)
    assert ed.load_budget(REPO / "budgets" / "demo-cpu.yaml").budget.name == "demo-cpu"


# ---- object level ----------------------------------------------------------------------------------------------


def test_object_level_bank_onnx_quantize_time(tiny: tuple[Path, Path, ed.TrainResult], tmp_path: Path) -> None:
    import torch

    _, _, trained = tiny
    bank = ed.load_bank(trained.bank)
    ed.save_bank(bank, tmp_path / "copy.safetensors")
    assert ed.load_bank(tmp_path / "copy.safetensors").width_choices == bank.width_choices
    fresh = ed.build_bank("resnet_cifar", 10, in_channels=1, width_choices=[0.5, 1.0], base_channels=(8, 16, 16))
    with pytest.raises(ed.ConfigError, match="build_bank"):
        ed.build_bank("resnet_cifar", 10, 1, base_chanels=(8, 16, 16))
    subnet = ed.extract(fresh, (0.5,) * fresh.num_stages)
    onnx = ed.export_onnx(subnet, tmp_path / "fp32" / "model.onnx", (1, 1, 8, 8))
    assert onnx.is_file()
    calib = torch.randn(32, 1, 8, 8).numpy().astype(np.float32)
    int8 = ed.quantize(onnx, RECIPE, calib, tmp_path / "int8")
    assert int8.is_file() and int8.stat().st_size > 0
    with pytest.raises(ed.ConfigError, match=r"^calibration: recipe"):
        ed.quantize(onnx, RECIPE, None, tmp_path / "int8b")
    art = trained.run / "export" / "onnxruntime-fp32"
    if not (art / "manifest.json").is_file():
        ed.export(run=trained.run, precision="fp32")
    lat = ed.time_artifact(art, **FAST)
    assert isinstance(lat, ed.Latency) and lat.p50 > 0 and lat.threads == 1


# ---- error wording: parameters from Python, flags from the CLI -------------------------------------------------


def test_errors_name_parameters_in_python_and_flags_in_the_cli(
    tiny: tuple[Path, Path, ed.TrainResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task, budget, trained = tiny
    other = _write(tmp_path / "other.yaml", TINY.replace("unlabeled: 200", "unlabeled: 150"))
    with pytest.raises(ed.ConfigError, match=r"resume=True with a different task"):
        ed.train(budget=budget, task=other, out=trained.run, device="cpu", resume=True)
    args = ("train", "--budget", budget, "--task", other, "--out", trained.run, "--device", "cpu", "--resume")
    code, _, err = run_cli_output(capsys, *args, "--no-progress")
    assert code == 2 and "--resume with a different task" in err
    with pytest.raises(ed.ExportError, match=r"pass allow_small_calibration=True to accept fewer"):
        ed.export(run=trained.run, calibration_samples=10)
    code, _, err = run_cli_output(capsys, "export", "--run", trained.run, "--calibration-samples", "10")
    assert code == 2 and "pass --allow-small-calibration to accept fewer" in err
    with pytest.raises(ed.ConfigError, match=r"^target: unknown runtime 'onnxrt'"):
        ed.export(run=trained.run, target="onnxrt")
    with pytest.raises(ed.ConfigError, match=r"^fallback: expected none, auto or qat"):
        ed.export(run=trained.run, fallback="maybe")  # type: ignore[arg-type]
    with pytest.raises(ed.ConfigError, match=r"^sensitivity_images: expected a whole number ≥ 0"):
        ed.export(run=trained.run, sensitivity_images=-1)
    with pytest.raises(ed.ConfigError, match=r"^measure: expected auto, on or off"):
        ed.search(run=trained.run, measure="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ed.BackendUnavailable, match=r"^device='tpu'"):
        ed.train(budget=budget, task=task, out=tmp_path / "r", device="tpu")
    with pytest.raises(ed.ConfigError, match=r"edgedistill\.train\(\)"):
        ed.search(run=tmp_path / "none")
    code, _, err = run_cli_output(capsys, "search", "--run", tmp_path / "none")
    assert code == 2 and "run `edgedistill train` first" in err


def test_option_wording_helpers() -> None:
    from edgedistill.options import cli_wording, command, opt, param

    assert (opt("resume"), opt("target", "torch"), opt("precision", "int8")) == (
        "resume=True",
        "target='torch'",
        "precision='int8'",
    )
    assert (
        opt("teacher", "SOURCE", meta=True) == "teacher=SOURCE"
        and param("calibration_samples") == "calibration_samples"
    )
    assert command("export", run="runs/x") == "edgedistill.export(run='runs/x')"
    with cli_wording():
        assert (opt("resume"), opt("target", "torch"), opt("precision", "int8"), opt("reference", False)) == (
            "--resume",
            "--target torch",
            "--int8",
            "--no-reference",
        )
        assert param("calibration_samples") == "--calibration-samples" and param("similarity") == "--metric"
        assert command("export", run="runs/x") == "edgedistill export --run runs/x"
    assert opt("resume") == "resume=True"  # the CLI wording ends with its block
