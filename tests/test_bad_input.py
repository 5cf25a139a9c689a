"""Bad input through the real CLI: every case exits with code 2 and one `error:` line naming the file or field.

The CLI entry point (`edgedistill.cli.main`) runs in-process; a few cases also run `python -m edgedistill` in a
subprocess to show that no traceback reaches the terminal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from edgedistill.cli import main
from edgedistill.io import sidecar_path, write_sha256_sidecar

REPO = Path(__file__).resolve().parents[1]
BUDGET = REPO / "budgets" / "demo-cpu.yaml"
BUDGET_TEXT = BUDGET.read_text()
RECIPE = REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml"
SHIPPED = "onnxruntime-int8"  # the demo budget's recipe, a shipped name
TINY_TRAIN = (
    "train: {distiller: ce-only, steps: 4, checkpoint_every: 2, batch_labeled: 8, batch_unlabeled: 8, "
    "warmup_steps: 1, num_sampled: 2, bn_calibration_images: 64, augment: false}\n"
)
TINY_STUDENT = "student: {family: resnet_cifar, width_choices: [0.5, 1.0], options: {base_channels: [8, 16, 16]}}\n"
TINY_TASK = "name: tiny\ndata: {source: optdigits, labels_per_class: 2, unlabeled: 200, test: 100}\n"


@pytest.fixture(scope="module")
def small_budget(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo budget at 8x8 input, so the few runs that train stay cheap."""
    tmp = tmp_path_factory.mktemp("budget")
    return budget_with(tmp, "height: 28, width: 28", "height: 8, width: 8", name="small.yaml")


def assert_one_line(code: int, err: str, *needles: str) -> None:
    """Exit code 2, a single `error:` line without traceback, naming every needle."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def budget_with(tmp: Path, old: str, new: str, name: str = "b.yaml") -> Path:
    """The demo budget with one substring replaced."""
    text = BUDGET_TEXT
    assert old in text, old
    return write(tmp / name, text.replace(old, new))


# ---- budgets ------------------------------------------------------------------------------------------------

BUDGET_CASES: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "missing": (lambda t: t / "nope.yaml", ["nope.yaml", "file not found"]),
    "bad yaml": (lambda t: write(t / "b.yaml", "name: [unclosed\n"), ["b.yaml", "invalid YAML"]),
    "top-level list": (lambda t: write(t / "b.yaml", "- 1\n- 2\n"), ["b.yaml", "expected a mapping"]),
    "empty file": (lambda t: write(t / "b.yaml", ""), ["b.yaml", "expected a mapping"]),
    "not utf-8": (lambda t: write(t / "b.yaml", b"\xff\xfe\x00name"), ["b.yaml"]),
    "unknown key": (lambda t: budget_with(t, "cost_model:", "colour: red\ncost_model:"), ["colour", "unknown key"]),
    "negative limit": (lambda t: budget_with(t, "macs_m: 12", "macs_m: -1"), ["limits.macs_m", "greater than 0"]),
    "wrong type": (lambda t: budget_with(t, "macs_m: 12", "macs_m: lots"), ["limits.macs_m"]),
    "bad channels": (lambda t: budget_with(t, "channels: 1", "channels: 2"), ["input.channels"]),
    "int8 on torch": (lambda t: budget_with(t, "runtime: onnxruntime", "runtime: torch"), ["target", "int8"]),
    "recipe missing": (lambda t: budget_with(t, SHIPPED, "nowhere.yaml"), ["target.recipe", "nowhere.yaml"]),
    "recipe name unknown": (lambda t: budget_with(t, SHIPPED, "onnxruntime-int9"), ["target.recipe", "did you mean"]),
    "recipe mismatch": (
        lambda t: budget_with(t, SHIPPED, "openvino-int8"),
        ["target.recipe", "openvino"],
    ),
    "bad recipe": (
        lambda t: budget_with(t, SHIPPED, str(write(t / "r.yaml", "name: r\nruntime: onnxruntime\nspeed: 3\n"))),
        ["target.recipe", "r.yaml", "speed", "unknown key"],
    ),
    "recipe opset": (
        lambda t: budget_with(
            t, SHIPPED, str(write(t / "r.yaml", RECIPE.read_text().replace("opset: 18", "opset: 9")))
        ),
        ["r.yaml", "opset"],
    ),
    "recipe int8 without quantization": (
        lambda t: budget_with(
            t, SHIPPED, str(write(t / "r.yaml", "name: r\nruntime: onnxruntime\nprecision: int8\nopset: 18\n"))
        ),
        ["r.yaml", "quantization"],
    ),
}


@pytest.mark.parametrize("case", list(BUDGET_CASES))
def test_bad_budget_train(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    make, needles = BUDGET_CASES[case]
    code, err = run_cli(capsys, "train", "--budget", make(tmp_path), "--out", tmp_path / "run", "--device", "cpu")
    assert_one_line(code, err, *needles)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_budgets_folder_without_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line(*run_cli(capsys, "budgets", tmp_path), str(tmp_path), "no budget files")


# ---- task files -----------------------------------------------------------------------------------------------

TASK_CASES: dict[str, tuple[str, list[str]]] = {
    "unknown train key": (TINY_TASK + "train: {stepz: 3}\n", ["t.yaml", "train.stepz", "unknown key"]),
    "zero steps": (TINY_TASK + "train: {steps: 0}\n", ["t.yaml", "train.steps"]),
    "negative lr": (TINY_TASK + "train: {lr: -1}\n", ["train.lr"]),
    "missing name": ("data: {source: mnist}\n", ["t.yaml", "name", "required key is missing"]),
    "missing data": ("name: x\n", ["t.yaml", "data", "required key is missing"]),
    "unknown dataset": ("name: x\ndata: {source: mnst}\n", ["t.yaml", "data.source", "did you mean 'mnist'"]),
    "bad channels": ("name: x\ndata: {source: mnist, channels: 2}\n", ["data.channels"]),
    "bad mean length": ("name: x\ndata: {source: mnist, channels: 3, mean: [0.1, 0.2]}\n", ["data", "mean"]),
    "zero std": ("name: x\ndata: {source: mnist, std: [0.0]}\n", ["data", "std"]),
    "bad on_corrupt": ("name: x\ndata: {source: mnist, on_corrupt: ignore}\n", ["data.on_corrupt"]),
    "imagefolder no root": ("name: x\ndata: {source: imagefolder}\n", ["t.yaml", "data.root"]),
    "unknown distiller": (TINY_TASK + "train: {distiller: kd-avg}\n", ["t.yaml", "train.distiller"]),
    "unknown similarity": (
        TINY_TASK + "train: {multisource: {similarity: cosine}}\n",
        ["train.multisource.similarity", "cosine"],
    ),
    "unknown pseudo labels": (
        TINY_TASK + "train: {multisource: {pseudo_labels: magic}}\n",
        ["train.multisource.pseudo_labels"],
    ),
    "unknown family": (TINY_TASK + "student: {family: resnet50}\n", ["t.yaml", "student.family", "resnet50"]),
    "width zero": (TINY_TASK + "student: {width_choices: [0.0, 1.0]}\n", ["student.width_choices"]),
    "width above one": (TINY_TASK + "student: {width_choices: [0.5, 2.0]}\n", ["student.width_choices"]),
    "bad student option": (
        TINY_TASK + "student: {family: resnet_cifar, options: {base_chanels: [8, 8, 8]}}\n" + TINY_TRAIN,
        ["student.options", "base_chanels"],
    ),
    "teacher without kind": (TINY_TASK + "teachers: [{source: usps}]\n", ["teachers[0].source", "kind:name"]),
    "unknown teacher kind": (
        TINY_TASK + "teachers: [{source: 'ccexm:usps'}]\n",
        ["teachers[0].source", "did you mean 'ccexam'"],
    ),
    "teacher field typo": (TINY_TASK + "teachers: [{sourc: 'ccexam:usps'}]\n", ["teachers[0].sourc", "unknown key"]),
    "too many labels": (
        "name: x\ndata: {source: optdigits, labels_per_class: 100000}\n" + TINY_STUDENT + TINY_TRAIN,
        ["data.labels_per_class"],
    ),
    "task is a list": ("- name: x\n", ["t.yaml", "expected a mapping"]),
    **{
        f"extra domain: {case}": (
            f"name: x\ndata: {{source: optdigits, labels_per_class: 2, extra_unlabeled: [{entry}]}}\n",
            needles,
        )
        for case, (entry, needles) in {
            "unknown source": ("{source: mnst}", ["t.yaml", "data.extra_unlabeled[0].source", "did you mean 'mnist'"]),
            "imagefolder without root": ("{source: imagefolder}", ["t.yaml", "data.extra_unlabeled[0].root"]),
            "root not found": ("{source: imagefolder, root: nowhere}", ["data.extra_unlabeled[0].root", "not found"]),
            "zero images": ("{source: mnist, images: 0}", ["t.yaml", "data.extra_unlabeled[0].images"]),
            "more images than the source": (
                "{source: usps-samples, images: 5}",
                ["data.extra_unlabeled[0].images", "5 asked", "has 4"],
            ),
            "the target's own data": ("{source: optdigits}", ["data.extra_unlabeled[0].source", "target's own"]),
            "box larger than the frame": ("{source: mnist, box: 20}", ["data.extra_unlabeled[0].box", "8x8"]),
            "duplicate name": ("{source: mnist, name: optdigits}", ["data.extra_unlabeled[0].name", "domain 0"]),
            "unknown key": ("{source: mnist, size: 3}", ["t.yaml", "data.extra_unlabeled[0].size", "unknown key"]),
        }.items()
    },
    **{
        f"labeled domain: {case}": (
            f"name: x\ndata: {{source: optdigits, labels_per_class: 2, {entry}}}\n",
            needles,
        )
        for case, (entry, needles) in {
            "unknown source": (
                "domains: [{source: mnst}]",
                ["t.yaml", "data.domains[0].source", "did you mean 'mnist'"],
            ),
            "imagefolder without root": ("domains: [{source: imagefolder}]", ["t.yaml", "data.domains[0].root"]),
            "root not found": (
                "domains: [{source: imagefolder, root: nowhere}]",
                ["data.domains[0]", "nowhere", "not found"],
            ),
            "the target's own data": ("domains: [{source: optdigits}]", ["data.domains[0].source", "target's own"]),
            "box larger than the frame": ("domains: [{source: mnist, box: 20}]", ["data.domains[0].box", "8x8"]),
            "duplicate name": ("domains: [{source: mnist, name: optdigits}]", ["data.domains[0].name", "domain 0"]),
            "too many labels": (
                "domains: [{source: ising, labels_per_class: 3000}]",
                ["data.domains[0].labels_per_class", "fewer than"],
            ),
            "unknown key": (
                "domains: [{source: mnist, images: 3}]",
                ["t.yaml", "data.domains[0].images", "unknown key"],
            ),
            "with extra unlabeled domains": (
                "domains: [{source: mnist}], extra_unlabeled: [{source: mnist}]",
                ["t.yaml", "data.domains", "data.extra_unlabeled"],
            ),
            "unknown label space": ("label_space: joint", ["t.yaml", "data.label_space", "per-domain"]),
        }.items()
    },
    "unknown domain teacher": (
        TINY_TASK + "train: {udon: {teacher: mlp}}\n",
        ["t.yaml", "train.udon.teacher", "branch"],
    ),
    "extra domains not a list": (
        "name: x\ndata: {source: optdigits, extra_unlabeled: usps}\n",
        ["t.yaml", "data.extra_unlabeled", "valid list"],
    ),
}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_bad_task(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    text, needles = TASK_CASES[case]
    task = write(tmp_path / "t.yaml", text)
    code, err = run_cli(capsys, "train", "--task", task, "--budget", BUDGET, "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, *needles)


TEACHER_CASES: dict[str, tuple[str, list[str]]] = {
    "unknown ccexam teacher": ("ccexam:cifar", ["ccexam:cifar", "unknown ccexam teacher"]),
    "unknown teacher option": ("ccexam:usps?zoom=2", ["ccexam:usps", "unknown option", "zoom"]),
    "bad teacher option value": ("ccexam:usps?crop=wide", ["ccexam:usps", "bad option value"]),
    "timm without weights": ("timm:test_resnet", ["timm:test_resnet", "weights=PATH"]),
    "weights missing": ("timm:test_resnet?weights=missing.safetensors", ["missing.safetensors", "not found"]),
    "weights truncated": ("timm:test_resnet?weights=trunc.safetensors", ["trunc.safetensors", "cannot read"]),
    "weights pickled code": ("timm:test_resnet?weights=evil.pth", ["evil.pth", "holds pickled Python objects"]),
    "weights of another model": ("timm:test_resnet?weights=other.safetensors", ["other.safetensors", "do not fit"]),
    "not torchscript": ("checkpoint:junk.pt?trust_code=yes", ["junk.pt", "not TorchScript"]),
    "torchscript without opt-in": ("checkpoint:junk.pt", ["junk.pt", "trust_code=yes"]),
}


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickled code ran",))


@pytest.fixture
def weight_files(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.zeros(64, 64)}, str(good))
    write(tmp_path / "trunc.safetensors", good.read_bytes()[:100])
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil()}, tmp_path / "evil.pth")
    write(tmp_path / "junk.pt", b"not a zip archive")
    return tmp_path


@pytest.mark.parametrize("case", list(TEACHER_CASES))
def test_bad_teacher(weight_files: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    source, needles = TEACHER_CASES[case]
    train = TINY_TRAIN.replace("ce-only", "average-kd")
    task = write(weight_files / "t.yaml", f"{TINY_TASK}teachers: [{{source: '{source}'}}]\n{TINY_STUDENT}{train}")
    code, err = run_cli(
        capsys, "train", "--task", task, "--budget", BUDGET, "--out", weight_files / "r", "--device", "cpu"
    )
    assert_one_line(code, err, *needles)
    assert "pickled code ran" not in capsys.readouterr().out


# ---- image folders --------------------------------------------------------------------------------------------


def image_folder(root: Path, classes: dict[str, int], size: int = 12, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, n in classes.items():
            for i in range(n):
                shape = {"L": (size, size), "RGB": (size, size, 3), "RGBA": (size, size, 4)}[mode]
                d = root / split / name
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(d / f"{i}.png")
    return root


def folder_task(tmp: Path, data: str = "") -> Path:
    text = f"name: folder\ndata: {{source: imagefolder, root: ds, channels: 1, labels_per_class: 1{data}}}\n"
    return write(tmp / "t.yaml", text + TINY_STUDENT + TINY_TRAIN)


def _cut_png(tmp: Path) -> bytes:
    """The first half of a noisy 12x12 PNG: the header reads, the pixels do not."""
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (12, 12), dtype=np.uint8)).save(tmp / "x.png")
    data = (tmp / "x.png").read_bytes()
    return data[: len(data) // 2]


FOLDER_CASES: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "root missing": (lambda t: None, ["ds/train", "folder not found"]),
    "root is a file": (lambda t: write(t / "ds", "x"), ["ds/train", "folder not found"]),
    "no class folders": (lambda t: (t / "ds" / "train").mkdir(parents=True), ["ds/train", "no class sub-folders"]),
    "empty class": (
        lambda t: (image_folder(t / "ds", {"a": 3}), (t / "ds" / "train" / "b").mkdir()),
        ["train/b", "no images"],
    ),
    "corrupt image": (
        lambda t: (image_folder(t / "ds", {"a": 3, "b": 3}), write(t / "ds/train/a/bad.png", b"\x89PNG junk")),
        ["bad.png", "cannot read image", "data.on_corrupt"],
    ),
    "truncated image": (
        lambda t: (image_folder(t / "ds", {"a": 3, "b": 3}), write(t / "ds/train/b/cut.png", _cut_png(t))),
        ["cut.png", "cannot read image"],
    ),
    "wrong size": (
        lambda t: (
            image_folder(t / "ds", {"a": 3, "b": 3}),
            image_folder(t / "big", {"a": 1}, size=20),
            shutil.copy(t / "big/train/a/0.png", t / "ds/train/a/z.png"),
        ),
        ["z.png", "20x20", "data.image_size"],
    ),
    "test classes differ": (
        lambda t: (image_folder(t / "ds", {"a": 3, "b": 3}), shutil.rmtree(t / "ds" / "test" / "b")),
        ["ds/test", "differ from the training classes"],
    ),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_bad_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    setup, needles = FOLDER_CASES[case]
    setup(tmp_path)
    code, err = run_cli(capsys, "train", "--task", folder_task(tmp_path), "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, *needles)


def test_class_with_only_corrupt_images_is_an_error_even_when_skipping(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_budget: Path
) -> None:
    image_folder(tmp_path / "ds", {"a": 3})
    write(tmp_path / "ds/train/b/x.png", b"junk")
    task = folder_task(tmp_path, ", on_corrupt: skip")
    code, err = run_cli(capsys, "train", "--task", task, "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, "train/b", "every image in this class is unreadable")


def test_corrupt_images_skipped_counted_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], small_budget: Path
) -> None:
    """on_corrupt: skip trains on the readable images, mixed grey/RGB/RGBA and sizes, and lists the rest."""
    image_folder(tmp_path / "ds", {"a": 4, "b": 4})
    image_folder(tmp_path / "rgba", {"a": 2}, size=16, mode="RGBA")
    image_folder(tmp_path / "rgb", {"b": 2}, size=10, mode="RGB")
    shutil.copy(tmp_path / "rgba/train/a/0.png", tmp_path / "ds/train/a/rgba.png")
    shutil.copy(tmp_path / "rgb/train/b/0.png", tmp_path / "ds/train/b/rgb.png")
    write(tmp_path / "ds/train/a/bad.jpg", b"\xff\xd8 not a jpeg")
    write(tmp_path / "ds/test/b/cut.png", _cut_png(tmp_path))
    task = folder_task(tmp_path, ", on_corrupt: skip, image_size: 12")
    args = ["--task", task, "--budget", small_budget, "--out", tmp_path / "r", "--device", "cpu", "--no-progress"]
    code, err = run_cli(capsys, "train", *args)
    assert code == 0, err
    listed = (tmp_path / "r" / "skipped_images.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in listed) == ["bad.jpg", "cut.png"]
    summary = json.loads((tmp_path / "r" / "train.json").read_text())
    assert summary["data"]["skipped_images"] == 2
    assert summary["data"]["labeled"] + summary["data"]["unlabeled"] == 10  # 4 + 4 + rgba + rgb
    assert summary["data"]["test"] == 8  # 9 test images, one truncated


# ---- run folders, checkpoints, banks ---------------------------------------------------------------------------


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:  # tiny_run: conftest's 4-step run (checkpoints 2, 4)
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    return out


def _rewrite_checkpoint(path: Path, edit: Callable[[dict], object]) -> None:
    """Change a checkpoint and re-sign it (a valid sidecar: the content itself is what is wrong)."""
    state = torch.load(path, weights_only=True)
    out = edit(state)
    state = out if isinstance(out, dict) else state
    torch.save(state, path)
    write_sha256_sidecar(path)


def _head_key(state: dict) -> str:
    return next(k for k, v in state["bank"].items() if v.ndim == 2 and v.shape[0] == 10)


CHECKPOINT_CASES: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "truncated": (lambda p: write(p, p.read_bytes()[:500]), ["step-000004.pt", "sha256 mismatch"]),
    "tampered": (
        lambda p: write(p, p.read_bytes()[:-40] + bytes(40)),
        ["step-000004.pt", "sha256 mismatch", "changed after it was written"],
    ),
    "not a torch file, re-signed": (
        lambda p: (write(p, b"garbage" * 10), write_sha256_sidecar(p)),
        ["step-000004.pt", "cannot read checkpoint"],
    ),
    "pickled code, re-signed": (
        lambda p: (torch.save({"step": 4, "x": _Evil()}, p), write_sha256_sidecar(p)),
        ["step-000004.pt", "cannot read checkpoint"],
    ),
    "missing keys": (lambda p: _rewrite_checkpoint(p, lambda s: {"step": 4}), ["step-000004.pt", "missing bank"]),
    "wrong class count": (
        lambda p: _rewrite_checkpoint(p, lambda s: s["bank"].__setitem__(_head_key(s), torch.zeros(5, 16))),
        ["step-000004.pt", "has shape (5, 16)", "expects (10, 16)"],
    ),
    "wrong architecture": (
        lambda p: _rewrite_checkpoint(p, lambda s: s["bank"].pop(next(iter(s["bank"])))),
        ["step-000004.pt", "missing 1 tensors"],
    ),
    "only unfinished checkpoints": (
        lambda p: [sidecar_path(c).unlink() for c in p.parent.glob("*.pt")],
        ["checkpoint", "no complete checkpoint"],
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoint_on_resume(
    run_copy: Path, capsys: pytest.CaptureFixture[str], small_budget: Path, case: str
) -> None:
    edit, needles = CHECKPOINT_CASES[case]
    edit(run_copy / "checkpoint" / "step-000004.pt")
    code, err = run_cli(
        capsys,
        "train",
        "--task",
        run_copy / "task.yaml",
        "--budget",
        BUDGET,
        "--out",
        run_copy,
        "--device",
        "cpu",
        "--resume",
        "--no-progress",
    )
    assert_one_line(code, err, *needles)


EXPORT_CASES: dict[str, tuple[Callable[[Path], object], list[str], list[str]]] = {
    "no run": (lambda r: shutil.rmtree(r), [], ["train.json", "run `edgedistill train` first"]),
    "subnet missing": (lambda r: (r / "subnet.safetensors").unlink(), [], ["subnet.safetensors", "not found"]),
    "subnet truncated": (
        lambda r: (write(r / "subnet.safetensors", b"\x08\x00"), sidecar_path(r / "subnet.safetensors").unlink()),
        [],
        ["subnet.safetensors", "not a readable safetensors file"],
    ),
    "subnet tampered": (
        lambda r: write(r / "subnet.safetensors", (r / "subnet.safetensors").read_bytes()[:-4] + bytes(4)),
        [],
        ["subnet.safetensors", "sha256 mismatch"],
    ),
    "bank instead of subnet": (
        lambda r: (
            shutil.copy(r / "bank.safetensors", r / "subnet.safetensors"),
            sidecar_path(r / "subnet.safetensors").unlink(),
        ),
        [],
        ["subnet.safetensors", "holds a bank"],
    ),
    "search.json damaged": (lambda r: write(r / "search.json", "{"), [], ["search.json", "invalid JSON"]),
    "bad recipe option": (lambda r: None, ["--recipe", "nowhere.yaml"], ["nowhere.yaml", "file not found"]),
    "two precisions": (lambda r: None, ["--int8", "--fp16"], ["choose one precision"]),
    "unknown target": (lambda r: None, ["--target", "onnxrt"], ["--target", "did you mean 'onnxruntime'"]),
    "int8 on torch": (lambda r: None, ["--target", "torch", "--fp32"], ["--target torch"]),
    "bad fallback": (lambda r: None, ["--fallback", "maybe"], ["--fallback"]),
    "zero calibration": (lambda r: None, ["--calibration-samples", "0"], ["--calibration-samples"]),
    "negative sensitivity images": (
        lambda r: None,
        ["--sensitivity-images", "-1"],
        ["--sensitivity-images", "expected a whole number ≥ 0"],
    ),
    "sensitivity on a float target": (
        lambda r: None,
        ["--fp32", "--sensitivity-top-k", "2"],
        ["--sensitivity-top-k", "needs an int8 target"],
    ),
    "qat on fp16": (
        lambda r: None,
        ["--target", "openvino", "--fp16", "--fallback", "qat"],
        ["--fallback qat", "needs an int8 target"],
    ),
    "zero qad steps": (
        lambda r: None,
        ["--fallback", "qat", "--qad-steps", "0"],
        ["--qad-steps: must be greater than or equal to 1, got 0"],
    ),
    "qad steps without qat": (lambda r: None, ["--qad-steps", "10"], ["--qad-steps", "only used by --fallback qat"]),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_bad_export(run_copy: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    edit, extra, needles = EXPORT_CASES[case]
    edit(run_copy)
    assert_one_line(*run_cli(capsys, "export", "--run", run_copy, *extra), *needles)


def test_bank_file_from_elsewhere_without_sidecar_loads(run_copy: Path) -> None:
    from edgedistill.models import load_bank

    sidecar_path(run_copy / "bank.safetensors").unlink()
    assert load_bank(run_copy / "bank.safetensors").family == "resnet_cifar"


# ---- artifacts and manifests -----------------------------------------------------------------------------------


def artifact(run: Path) -> Path:
    """A hand-made fp32 artifact with a valid manifest in `run/export/onnxruntime-fp32/`."""
    from edgedistill.export.manifest import Manifest, write_manifest

    d = run / "export" / "onnxruntime-fp32"
    write(d / "model.onnx", b"onnx bytes")
    m = Manifest(
        name="onnxruntime-fp32",
        runtime="onnxruntime",
        precision="fp32",
        model_file="model.onnx",
        input={"shape": [-1, 1, 28, 28]},
        preprocess={"mean": [0.1], "std": [0.3], "channels": 1, "height": 28, "width": 28},
        class_names=[str(i) for i in range(10)],
        source={"family": "resnet_cifar", "config": [1.0], "channels": [8], "subnet_sha256": "0" * 64},
        versions={},
        accuracy={"split": "test", "n": 1, "fp32": 50.0},
        cost={"macs": 1, "params": 1},
        created="now",
    )
    write_manifest(d, m)
    return d


def _edit_manifest(d: Path, edit: Callable[[dict], object]) -> None:
    data = json.loads((d / "manifest.json").read_text())
    edit(data)
    (d / "manifest.json").write_text(json.dumps(data))


MANIFEST_CASES: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "artifact missing": (lambda d: shutil.rmtree(d), ["onnxruntime-fp32", "no exported artifact"]),
    "manifest missing": (lambda d: (d / "manifest.json").unlink(), ["onnxruntime-fp32", "no exported artifact"]),
    "manifest not json": (lambda d: write(d / "manifest.json", "{nope"), ["manifest.json", "invalid JSON"]),
    "manifest field": (
        lambda d: _edit_manifest(d, lambda m: m.update(precision="int4")),
        ["manifest.json", "precision"],
    ),
    "manifest unknown key": (
        lambda d: _edit_manifest(d, lambda m: m.update(extra=1)),
        ["manifest.json", "extra", "unknown key"],
    ),
    "model sha mismatch": (lambda d: write(d / "model.onnx", b"other bytes"), ["model.onnx", "sha256 mismatch"]),
    "model file missing": (lambda d: (d / "model.onnx").unlink(), ["model.onnx", "missing"]),
    "path outside artifact": (
        lambda d: _edit_manifest(d, lambda m: m["files"].update({"../../x": "0" * 64})),
        ["manifest.json", "relative path inside the artifact"],
    ),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    run = tmp_path / "run"
    d = artifact(run)
    edit, needles = MANIFEST_CASES[case]
    edit(d)
    code, err = run_cli(capsys, "bench", "--artifact", d, "--budget", BUDGET, "--no-reference")
    assert_one_line(code, err, *needles)


# ---- command-line options ---------------------------------------------------------------------------------------

OPTION_CASES: dict[str, tuple[list[str], list[str]]] = {
    "zero steps": (["train", "--steps", "0"], ["train", "--steps"]),
    "steps not a number": (["train", "--steps", "many"], ["--steps", "integer"]),
    "unknown option": (["train", "--epochs", "3"], ["train", "--epochs"]),
    "missing value": (["train", "--device"], ["--device", "requires an argument"]),
    "unknown command": (["trian"], ["trian"]),
    "unknown device": (["train", "--device", "tpu", "--out", "{tmp}/r"], ["--device tpu"]),
    "unknown distiller": (["train", "--distiller", "kd", "--out", "{tmp}/r"], ["--distiller", "unknown distiller"]),
    "out is a file": (["train", "--out", "{tmp}/file", "--device", "cpu"], ["file", "--out is a file"]),
    "bench few runs": (["bench", "--runs", "3"], ["bench", "--runs"]),
    "bench zero threads": (["bench", "--threads", "0"], ["--threads"]),
    "bench missing run": (["bench", "--run", "{tmp}/none"], ["none", "edgedistill train"]),
    "rank unknown metric": (["teachers", "rank", "--metric", "cosine", "--task", "{tmp}/t.yaml"], ["cosine"]),
    "rank missing task": (["teachers", "rank", "--task", "{tmp}/none.yaml"], ["none.yaml", "file not found"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_option(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, needles = OPTION_CASES[case]
    write(tmp_path / "file", "x")
    write(tmp_path / "t.yaml", TINY_TASK + "teachers: [{source: 'ccexam:usps'}]\n")
    code, err = run_cli(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert_one_line(code, err, *needles)


def test_existing_run_is_not_replaced(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(capsys, "train", "--task", run_copy / "task.yaml", "--out", run_copy, "--device", "cpu")
    assert_one_line(code, err, str(run_copy), "--resume", "--overwrite")


def test_help_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0 and "--resume" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [["train", "--steps", "0"], ["budgets", "/nonexistent/b.yaml"], ["train", "--task", "/nonexistent/t.yaml"]],
)
def test_subprocess_one_line_no_traceback(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "edgedistill", *args], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---- resource limits --------------------------------------------------------------------------------------------


def test_teacher_cache_larger_than_free_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=4096))
    train = TINY_TRAIN.replace("ce-only", "average-kd")
    task = write(tmp_path / "t.yaml", f"{TINY_TASK}teachers: [{{source: 'ccexam:usps'}}]\n{TINY_STUDENT}{train}")
    code, err = run_cli(capsys, "train", "--task", task, "--out", tmp_path / "r", "--device", "cpu", "--no-progress")
    assert_one_line(code, err, "teachers", "usps teacher cache needs", "MiB free", "--out")
    assert not list((tmp_path / "r" / "teachers").rglob("*.npy"))


def test_image_folder_larger_than_free_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=100))
    image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    code, err = run_cli(capsys, "train", "--task", folder_task(tmp_path), "--out", tmp_path / "r", "--device", "cpu")
    assert_one_line(code, err, "ds/train", "of memory is available", "data.image_size")


# ---- safe loading ---------------------------------------------------------------------------------------------


def test_no_unsafe_loaders_in_the_package() -> None:
    """User files are never unpickled: torch.load only with weights_only=True, no pickle, yaml.safe_load only."""
    import re

    bad = []
    for path in sorted((REPO / "edgedistill").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                bad.append(f"{path.name}: {m.group(0)}")
        bad += [
            f"{path.name}: {m.group(0)}"
            for m in re.finditer(r"^\s*(import pickle|from pickle|import dill)", text, re.M)
        ]
        bad += [
            f"{path.name}: {m.group(0)}"
            for m in re.finditer(
                r"allow_pickle=True|yaml\.load\((?!text, Loader=_StrictLoader)|yaml\.unsafe_load", text
            )
        ]
        bad += [
            f"{path.name}: {m.group(0)}" for m in re.finditer(r"np\.load\((?![^)]*allow_pickle=False)[^)]*\)", text)
        ]
    assert not bad, bad
