"""Nothing lost, nothing escapes: bad input ends in exit 2 and one line, and leaves every file as it was.

Each case builds a folder tree, hashes all of it (files, links, folders, pipes), runs the real CLI in this
process, and checks the exit code, that stderr is a single `error:` line without traceback, and that the tree
hashes the same afterwards. The cases cover output folders that edgedistill did not make, names that would become
paths, YAML/JSON that would be accepted silently or crash the reader, data that would crash or hang the loader,
and artifacts whose model is not what their manifest says.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_bad_input import (  # the first bad-input suite's helpers and tiny task
    BUDGET,
    SHIPPED,
    TINY_STUDENT,
    TINY_TASK,
    TINY_TRAIN,
    assert_one_line,
    budget_with,
    image_folder,
    run_cli,
    write,
)

from edgedistill.outputs import MARKER


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under `root` (not following links): kind plus content hash, link target or mode."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = f"link:{os.readlink(p)}"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = f"file:{hashlib.sha256(p.read_bytes()).hexdigest()}:{oct(st.st_mode)}"
            else:
                out[rel] = f"other:{oct(st.st_mode)}"
    return out


def assert_refused(
    capsys: pytest.CaptureFixture[str], root: Path, *args: str | Path, needles: tuple[str, ...] = ()
) -> None:
    """Exit 2, one line, no traceback, and nothing under `root` changed."""
    before = tree_digest(root)
    code, err = run_cli(capsys, *args)
    assert_one_line(code, err, *needles)
    assert tree_digest(root) == before, "files changed"


@pytest.fixture
def world(tmp_path: Path, tiny_run: Path, tiny_budget: Path) -> Path:
    """tmp_path with a copy of the run (`run/`), a user's folder (`mine/`), the task and budget files."""
    shutil.copytree(tiny_run, tmp_path / "run")
    write(tmp_path / "mine" / "notes.txt", "my own notes")
    write(tmp_path / "mine" / "budget.yaml", "my: budget\n")
    write(tmp_path / "mine" / "recipe.yaml", "my: recipe\n")
    write(tmp_path / "task.yaml", TINY_TASK + TINY_STUDENT + TINY_TRAIN)
    shutil.copyfile(tiny_budget, tmp_path / "budget.yaml")
    return tmp_path


def train_args(
    w: Path, out: Path | str, *extra: str | Path, task: Path | None = None, budget: Path | None = None
) -> list[str | Path]:
    """`edgedistill train` on the world's task and budget (or the given ones) into `out`."""
    task, budget = task or w / "task.yaml", budget or w / "budget.yaml"
    return ["train", "--task", task, "--budget", budget, "--out", out, "--device", "cpu", "--no-progress", *extra]


# ---- output folders ------------------------------------------------------------------------------------------

OUT_CASES: dict[str, tuple[Callable[[Path], list[str | Path]], tuple[str, ...]]] = {
    "overwrite a user's folder, budget missing": (
        lambda w: train_args(w, w / "mine", "--overwrite", budget=w / "none.yaml"),
        ("mine", "will not delete"),  # the folder is checked first; the budget is never reached
    ),
    "overwrite a user's folder": (lambda w: train_args(w, w / "mine", "--overwrite"), ("mine", "not made by")),
    "resume a user's folder": (lambda w: train_args(w, w / "mine", "--resume"), ("mine", "edgedistill run")),
    "user's folder without options": (lambda w: train_args(w, w / "mine"), ("mine", "not empty", "--overwrite")),
    "overwrite a symlinked run folder": (
        lambda w: (os.symlink(w / "run", w / "link"), train_args(w, w / "link", "--overwrite"))[1],
        ("link", "symbolic link"),
    ),
    "resume a symlinked run folder": (
        lambda w: (os.symlink(w / "run", w / "link"), train_args(w, w / "link", "--resume"))[1],
        ("link", "symbolic link"),
    ),
    "overwrite a run, bad budget": (
        lambda w: train_args(w, w / "run", "--overwrite", budget=write(w / "bad.yaml", "name: [x\n")),
        ("bad.yaml", "invalid YAML"),
    ),
    "overwrite a run, unknown distiller": (
        lambda w: train_args(w, w / "run", "--overwrite", "--distiller", "kd"),
        ("--distiller", "unknown distiller"),
    ),
    "overwrite a run, missing data root": (
        lambda w: train_args(
            w,
            w / "run",
            "--overwrite",
            task=write(w / "t2.yaml", "name: f\ndata: {source: imagefolder, root: nowhere}\n"),
        ),
        ("nowhere", "folder not found"),
    ),
    "overwrite a run, marker is a symlink": (
        lambda w: (
            (w / "run" / MARKER).unlink(),
            os.symlink(w / "mine" / "notes.txt", w / "run" / MARKER),
            train_args(w, w / "run", "--overwrite"),
        )[2],
        ("run", "not made by"),
    ),
    "report onto a user's report.md": (
        lambda w: (write(w / "mine" / "report.md", "mine"), ["report", w / "run", "--out", w / "mine"])[1],
        ("report.md", "not written by edgedistill"),
    ),
    "report onto a user's latency.png": (
        lambda w: (write(w / "mine" / "latency.png", b"png"), ["report", w / "run", "--out", w / "mine"])[1],
        ("latency.png", "not written by edgedistill"),
    ),
    "report onto a symlinked report.json": (
        lambda w: (
            os.symlink(w / "mine" / "notes.txt", w / "mine" / "report.json"),
            ["report", w / "run", "--out", w / "mine"],
        )[1],  # fmt: skip
        ("report.json", "not a regular file"),
    ),
    "report --out is a file": (
        lambda w: ["report", w / "run", "--out", w / "mine" / "notes.txt"],
        ("notes.txt", "is a file"),
    ),
    "report --out is a symlink": (
        lambda w: (os.symlink(w / "mine", w / "rlink"), ["report", w / "run", "--out", w / "rlink"])[1],
        ("rlink", "symbolic link"),
    ),
}


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_output_folder_refused(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    make, needles = OUT_CASES[case]
    args = make(world)
    assert_refused(capsys, world, *args, needles=needles)


def test_report_replaces_only_its_own_files(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = world / "mine"
    assert run_cli(capsys, "report", world / "run", "--out", out)[0] == 0
    assert (out / "notes.txt").read_text() == "my own notes" and (out / MARKER).is_file()
    assert run_cli(capsys, "report", world / "run", "--out", out)[0] == 0  # its own files: replaced
    (out / "report.md").write_text("edited by the user")
    assert_refused(capsys, world, "report", world / "run", "--out", out, needles=("report.md", "changed since"))


def test_overwrite_replaces_an_edgedistill_run(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (world / "run" / "train.json").stat().st_mtime_ns
    code, err = run_cli(capsys, *train_args(world, world / "run", "--overwrite"))
    assert code == 0, err
    assert (world / "run" / MARKER).is_file() and (world / "run" / "train.json").stat().st_mtime_ns != before


# ---- names that would become paths ---------------------------------------------------------------------------

NAME_CASES = {
    "parent folders": "../../somewhere",
    "slash": "a/b",
    "absolute": "/tmp/x",
    "space": "my budget",
    "dot-dot inside": "a..b",
    "starts with a dot": ".hidden",
}


@pytest.mark.parametrize("case", list(NAME_CASES))
def test_budget_name_never_a_path(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    bad = NAME_CASES[case]
    text = (world / "budget.yaml").read_text().replace("name: demo-cpu", f"name: {json.dumps(bad)}")
    budget = write(world / "other.yaml", text)
    assert_refused(capsys, world, "search", "--budget", budget, "--run", world / "run", needles=("other.yaml", "name"))


def test_task_and_recipe_names_never_paths(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write(world / "t.yaml", (TINY_TASK + TINY_STUDENT + TINY_TRAIN).replace("name: tiny", "name: ../up"))
    assert_refused(capsys, world, *train_args(world, world / "new", task=task), needles=("t.yaml", "name"))
    recipe = write(world / "r.yaml", "name: ../r\nruntime: onnxruntime\nprecision: int8\nopset: 18\n")
    budget = budget_with(world, SHIPPED, str(recipe), "rb.yaml")
    assert_refused(capsys, world, *train_args(world, world / "new", budget=budget), needles=("r.yaml", "name"))


# ---- YAML and JSON that would be accepted silently or crash the reader ----------------------------------------

YAML_CASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "duplicate key": ("macs_m: 12", "macs_m: 12\n  macs_m: 50", ("line", "duplicate key 'macs_m'")),
    "duplicate top-level key": ("cost_model:", "name: twice\ncost_model:", ("duplicate key 'name'",)),
    "infinite limit": ("macs_m: 12", "macs_m: .inf", ("limits.macs_m", "finite")),
    "overflowing limit": ("macs_m: 12", "macs_m: 1e400", ("limits.macs_m", "finite")),
    "negative infinity": ("macs_m: 12", "macs_m: -.inf", ("limits.macs_m",)),
    "nan limit": ("macs_m: 12", "macs_m: .nan", ("limits.macs_m", "finite")),
    "deep nesting": ("cost_model:", "deep: " + "[" * 5000 + "]" * 5000 + "\ncost_model:", ("nested deeper",)),
    "deep mapping": ("cost_model:", "deep: " + "{a: " * 200 + "1" + "}" * 200 + "\ncost_model:", ("nested deeper",)),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_bad_yaml_budget(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    old, new, needles = YAML_CASES[case]
    budget = budget_with(world, old, new, "y.yaml")
    assert_refused(capsys, world, *train_args(world, world / "new", budget=budget), needles=("y.yaml", *needles))


@pytest.mark.parametrize(
    "edit",
    [
        "student: {family: resnet_cifar, family: mobilenet}\n",
        "train: {steps: 4, lr: .inf}\n",
        "train: " + "[" * 3000 + "]" * 3000 + "\n",
    ],
    ids=["task duplicate key", "task infinite lr", "task deep nesting"],
)
def test_bad_yaml_task(world: Path, capsys: pytest.CaptureFixture[str], edit: str) -> None:
    task = write(world / "t.yaml", TINY_TASK + edit)
    assert_refused(capsys, world, *train_args(world, world / "new", task=task), needles=("t.yaml",))


SEARCH_JSON_CASES: dict[str, tuple[Callable[[dict], object], tuple[str, ...]]] = {
    "missing chosen": (lambda d: d.pop("chosen"), ("search.json", "chosen", "missing")),
    "missing budget": (lambda d: d.pop("budget"), ("search.json", "budget", "missing")),
    "config too short": (lambda d: d["chosen"].update(config=d["chosen"]["config"][:1]), ("search.json", "stage")),
    "config out of range": (lambda d: d["chosen"].update(config=[7.0, 7.0, 7.0]), ("search.json", "config")),
    "channels not numbers": (lambda d: d["chosen"].update(channels=["x"]), ("search.json", "channels")),
}


@pytest.mark.parametrize("case", list(SEARCH_JSON_CASES))
def test_bad_search_json(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    edit, needles = SEARCH_JSON_CASES[case]
    path = world / "run" / "search.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    assert_refused(capsys, world, "export", "--run", world / "run", "--fp32", needles=needles)


@pytest.mark.parametrize(
    "text", ['{"budget": "a", "budget": "b"}', '{"budget": NaN}', "[1, 2]", "[" * 100000 + "]" * 100000]
)
def test_search_json_not_a_record(world: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    (world / "run" / "search.json").write_text(text)
    assert_refused(capsys, world, "export", "--run", world / "run", "--fp32", needles=("search.json",))


# ---- data that would crash or hang the loader -----------------------------------------------------------------


def folder_task(w: Path, data: str = "") -> Path:
    text = f"name: folder\ndata: {{source: imagefolder, root: ds, channels: 1, labels_per_class: 1{data}}}\n"
    return write(w / "ft.yaml", text + TINY_STUDENT + TINY_TRAIN)


DATA_CASES: dict[str, tuple[dict[str, int], str, tuple[str, ...]]] = {
    "one class": ({"a": 3}, "", ("1 class", "at least 2")),
    "empty unlabeled pool": ({"a": 1, "b": 1}, "", ("unlabeled pool would be empty",)),
    "huge image size": ({"a": 2, "b": 2}, ", image_size: 100000", ("data.image_size", "less than or equal")),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    classes, data, needles = DATA_CASES[case]
    image_folder(world / "ds", classes)
    task = folder_task(world, data)
    assert_refused(capsys, world, *train_args(world, world / "new", task=task), needles=needles)


@pytest.mark.timeout(60)
def test_named_pipe_does_not_hang(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image_folder(world / "ds", {"a": 3, "b": 3})
    os.mkfifo(world / "ds" / "train" / "a" / "pipe.png")
    task = folder_task(world)
    assert_refused(
        capsys,
        world,
        *train_args(world, world / "new", task=task),
        needles=("pipe.png", "not a regular file", "on_corrupt"),
    )


@pytest.mark.timeout(60)
def test_named_pipe_skipped_when_asked(tmp_path: Path) -> None:
    from edgedistill.data.folders import load_image_folder

    image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    os.mkfifo(tmp_path / "ds" / "train" / "a" / "pipe.png")
    got = load_image_folder(tmp_path / "ds" / "train", 1, None, on_corrupt="skip")
    assert len(got.images) == 4 and [Path(s.split("\t")[0]).name for s in got.skipped] == ["pipe.png"]


def test_huge_size_checks_memory_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoded size is known up front: the memory check runs before the first resize would allocate it."""
    import psutil

    from edgedistill.data import folders
    from edgedistill.errors import ResourceError

    image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=1000))
    monkeypatch.setattr(folders, "read_image", lambda *a: pytest.fail("decoded before the memory check"))
    with pytest.raises(ResourceError, match="of memory is available"):
        folders.load_image_folder(tmp_path / "ds" / "train", 3, 4096)


# ---- artifacts that are not what their manifest says ----------------------------------------------------------


def tiny_onnx(path: Path, quantized: bool, classes: int = 10, name: str = "input", opset: int = 18) -> Path:
    """A 1x8x8 -> `classes` ONNX model (Conv, pool, Gemm); QDQ around the input when `quantized`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(classes, 4)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
    ]
    nodes, x = [], name
    if quantized:
        nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]  # fmt: skip
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "w"], ["c"]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_artifact(d: Path, precision: str, **model: object) -> Path:
    """An artifact folder (`d`) with a real ONNX model and a manifest written by edgedistill's own writer."""
    from edgedistill.export.manifest import Manifest, write_manifest

    d.mkdir(parents=True, exist_ok=True)
    kw = {k: v for k, v in model.items() if k != "quantized"}
    tiny_onnx(d / "model.onnx", bool(model.get("quantized", precision == "int8")), **kw)  # type: ignore[arg-type]
    calib = {"count": 300, "sha256": "0" * 64, "method": "minmax", "source": "train/unlabeled"}
    m = Manifest(
        name="onnxruntime-" + precision,
        runtime="onnxruntime",
        precision=precision,
        model_file="model.onnx",
        input={"shape": [-1, 1, 8, 8]},
        preprocess={"mean": [0.1], "std": [0.3], "channels": 1, "height": 8, "width": 8},
        class_names=[str(i) for i in range(10)],
        source={"family": "resnet_cifar", "config": [1.0], "channels": [8], "subnet_sha256": "0" * 64},
        opset=18,
        versions={},
        calibration=calib if precision == "int8" else None,
        accuracy={"split": "test", "n": 1, "fp32": 50.0},
        cost={"macs": 1, "params": 1},
        created="now",
    )
    write_manifest(d, m)
    return d


ARTIFACT_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "int8 manifest, float model": (
        lambda d: onnx_artifact(d, "int8", quantized=False),
        ("model.onnx", "says int8", "no quantized nodes"),
    ),
    "fp32 manifest, quantized model": (
        lambda d: onnx_artifact(d, "fp32", quantized=True),
        ("model.onnx", "says fp32", "has quantized nodes"),
    ),
    "input renamed": (lambda d: onnx_artifact(d, "fp32", name="image"), ("model.onnx", "input is named 'image'")),
    "classes differ": (lambda d: onnx_artifact(d, "fp32", classes=7), ("model.onnx", "7 outputs")),
    "opset differs": (lambda d: onnx_artifact(d, "fp32", opset=17), ("model.onnx", "opset 17")),
}


@pytest.mark.parametrize("case", list(ARTIFACT_CASES))
@pytest.mark.parametrize("command", ["bench", "emit"])
def test_artifact_content_matches_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, command: str
) -> None:
    make, needles = ARTIFACT_CASES[case]
    d = make(tmp_path / "run" / "export" / "art")
    args = ["bench", "--artifact", d, "--budget", BUDGET, "--no-reference"]
    if command == "emit":
        args += ["--emit-runner", tmp_path / "device"]
    assert_refused(capsys, tmp_path, *args, needles=needles)


def test_artifact_file_that_is_a_symlink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = onnx_artifact(tmp_path / "run" / "export" / "art", "fp32")
    outside = tmp_path / "outside.onnx"
    (d / "model.onnx").rename(outside)
    os.symlink(outside, d / "model.onnx")  # same bytes, same sha256, but outside the artifact folder
    args = ["bench", "--artifact", d, "--budget", BUDGET, "--emit-runner", tmp_path / "device"]
    assert_refused(capsys, tmp_path, *args, needles=("model.onnx", "symbolic link"))


EMIT_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "onto a file": (lambda t: write(t / "device", "a file"), ("device", "is a file")),
    "onto a user's folder": (lambda t: write(t / "device" / "keep.txt", "mine").parent, ("device", "not")),
    "onto a symlink": (lambda t: (os.symlink(t, t / "device"), t / "device")[1], ("device", "symbolic link")),
}


@pytest.mark.parametrize("case", list(EMIT_CASES))
def test_emit_runner_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    d = onnx_artifact(tmp_path / "run" / "export" / "art", "fp32")
    make, needles = EMIT_CASES[case]
    dest = make(tmp_path)
    args = ["bench", "--artifact", d, "--budget", BUDGET, "--emit-runner", dest]
    assert_refused(capsys, tmp_path, *args, needles=needles)


def test_emit_runner_never_replaces_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not even its own: results and notes the user keeps beside the runner would go with it."""
    d = onnx_artifact(tmp_path / "run" / "export" / "art", "int8")
    args = ["bench", "--artifact", d, "--budget", BUDGET, "--emit-runner", tmp_path / "device"]
    assert run_cli(capsys, *args)[0] == 0
    assert (tmp_path / "device" / MARKER).is_file() and (tmp_path / "device" / "run.sh").is_file()
    assert_refused(capsys, tmp_path, *args, needles=("device", "not empty"))


def test_torchscript_teacher_needs_opt_in(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(world / "t.pt", b"a TorchScript archive would run its code when loaded")
    train = TINY_TRAIN.replace("ce-only", "average-kd")
    task = write(world / "tt.yaml", f"{TINY_TASK}teachers: [{{source: 'checkpoint:t.pt'}}]\n{TINY_STUDENT}{train}")
    assert_refused(
        capsys, world, *train_args(world, world / "new", task=task), needles=("t.pt", "TorchScript", "trust_code=yes")
    )


# ---- other outputs: latency tables, fine-tune results, artifact folders ---------------------------------------

OTHER_CASES: dict[str, tuple[Callable[[Path], list[str | Path]], tuple[str, ...]]] = {
    "profile --out onto a user's file": (
        lambda w: ["profile", "--run", w / "run", "--input", "8x8", "--out", w / "mine" / "notes.txt"],
        ("notes.txt", "not written by edgedistill"),
    ),
    "finetune --out onto a user's file": (
        lambda w: [
            "teachers",
            "finetune",
            "--task",
            w / "task.yaml",
            "--teacher",
            "ccexam:usps",
            "--out",
            w / "mine" / "notes.txt",
            "--device",
            "cpu",
        ],  # fmt: skip
        ("notes.txt", "not written by edgedistill"),
    ),
    "export into a symlinked artifact folder": (
        lambda w: (
            (w / "run" / "export").mkdir(exist_ok=True),
            os.symlink(w / "mine", w / "run" / "export" / "onnxruntime-fp32"),
            ["export", "--run", w / "run", "--fp32"],
        )[2],
        ("onnxruntime-fp32", "symbolic link"),
    ),
}


@pytest.mark.parametrize("case", list(OTHER_CASES))
def test_other_outputs_refused(world: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    make, needles = OTHER_CASES[case]
    assert_refused(capsys, world, *make(world), needles=needles)
