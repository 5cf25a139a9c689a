"""Hostile inputs at the file-system edge: names too long, link loops, absurd markers, a full or read-only disk,
Ctrl-C, decompression bombs, calibration counts no run can serve. Each ends in one line, nothing changed.
"""

from __future__ import annotations

import errno
import io
import os
import warnings
from pathlib import Path

import pytest
from conftest import run_cli
from PIL import Image
from test_bad_input import TINY_STUDENT, TINY_TRAIN, assert_one_line, write
from test_nothing_lost import assert_refused, train_args, tree_digest, world  # noqa: F401 (world: a fixture)

from edgedistill.data.folders import Unreadable, read_image
from edgedistill.outputs import MARKER

LONG_NAME = "a" * 300  # over the 255-byte limit of one file name
LONG_PATH = "/".join(["b" * 200] * 30)  # over PATH_MAX (4096)


@pytest.mark.parametrize("name", [LONG_NAME, LONG_PATH], ids=["name", "path"])
@pytest.mark.parametrize("where", ["train --budget", "export --budget", "export --run", "report", "bench --run"])
def test_names_too_long(world: Path, capsys: pytest.CaptureFixture[str], name: str, where: str) -> None:  # noqa: F811
    command, *option = where.split()
    path = world / name
    args: list[str | Path]
    if command == "train":
        args = train_args(world, world / "new", budget=Path(f"{path}.yaml"))
    elif command == "report":
        args = ["report", path]
    elif option == ["--budget"]:
        args = [command, "--run", world / "run", "--budget", f"{path}.yaml"]
    else:
        args = [command, "--run", path]
    assert_refused(capsys, world, *args)


def test_symlink_loop_as_data_root(world: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    os.symlink(world / "loop-b", world / "loop-a")
    os.symlink(world / "loop-a", world / "loop-b")
    task = write(
        world / "loop.yaml",
        f"name: loop\ndata: {{source: folder, root: {world / 'loop-a'}}}\n" + TINY_STUDENT + TINY_TRAIN,
    )
    assert_refused(capsys, world, *train_args(world, world / "new", task=task), needles=("loop",))


def test_marker_nested_absurdly_deep_is_not_ours(world: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    write(world / "mine" / MARKER, "[" * 200_000 + "]" * 200_000)
    assert_refused(capsys, world, *train_args(world, world / "mine", "--overwrite"), needles=("mine", "not made"))


def test_calibration_count_no_run_can_serve_is_refused_before_the_fp32_export(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["export", "--run", world / "run", "--calibration-samples", "1000000000000"]
    assert_refused(capsys, world, *args, needles=("calibration", "pool"))


def test_read_only_report_folder(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As root, chmod does not stop writes: the file system's refusal is simulated where the report makes its folder."""
    import edgedistill.pipeline.report as report_stage

    def read_only(folder: Path, kind: str) -> Path:
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    monkeypatch.setattr(report_stage, "claim_dir", read_only)
    assert_refused(capsys, world, "report", world / "run", needles=("Read-only file system",))


def test_ctrl_c_during_onnx_export_says_interrupted(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exporter wraps Ctrl-C in its own error; the command still says it was interrupted (exit 130)."""
    import torch

    def wrapped_interrupt(*args: object, **kwargs: object) -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("\x1b[31mConversion failed\x1b[0m") from e

    code, err = run_cli(capsys, "export", "--run", world / "run", "--fp32")  # a previous artifact to keep
    assert code == 0, err
    monkeypatch.setattr(torch.onnx, "export", wrapped_interrupt)
    before = tree_digest(world)
    code, err = run_cli(capsys, "export", "--run", world / "run", "--fp32")
    assert code == 130 and "interrupted" in err and "\x1b" not in err and len(err.strip().splitlines()) == 1, err
    assert tree_digest(world) == before  # the artifact being rebuilt was built aside and dropped


def test_onnx_export_error_has_no_colour_codes(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    def failing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("\x1b[31mno kernel for op\x1b[0m\nmore lines")

    monkeypatch.setattr(torch.onnx, "export", failing)
    code, err = run_cli(capsys, "export", "--run", world / "run", "--fp32")
    assert_one_line(code, err, "ONNX export failed (no kernel for op)")


def test_decompression_bomb_is_refused_without_a_warning() -> None:
    buf = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buf, "PNG")  # 100 MP: over PIL's 89 MP warning limit
    buf.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        with pytest.raises(Unreadable, match="decompression bomb"):
            read_image(buf, 1, (8, 8))


@pytest.mark.parametrize(
    ("size", "needle"), [("99999x99999", "1 to 4096"), ("4096x4096", "GiB")], ids=["over the limit", "over memory"]
)
def test_profile_input_is_bounded_before_allocating(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    size: str,
    needle: str,
) -> None:
    args = ["profile", "--run", world / "run", "--input", size, "--batch", "1024", "--precision", "fp32"]
    assert_refused(capsys, world, *args, needles=("--input", needle))
