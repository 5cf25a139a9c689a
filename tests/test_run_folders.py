"""Run folders that survive: relocatable, one writer at a time, no links out, whole-folder overwrite, typed records.

Each refusal is one line with exit 2 and leaves every file as it was (`assert_refused`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli
from safetensors import safe_open
from safetensors.torch import save_file
from test_bad_input import assert_one_line, write
from test_nothing_lost import assert_refused, train_args, tree_digest, world  # noqa: F401 (world: a fixture)

from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.models import load_subnet
from edgedistill.rundir_guard import NEW, sibling, writing

REPO = Path(__file__).resolve().parents[1]


def on_run(command: str, run: Path) -> list[str | Path]:
    """`edgedistill COMMAND` on `run` (report takes it as an argument; export only the FP32 reference)."""
    if command == "report":
        return ["report", run]
    return [command, "--run", run, *(["--fp32"] if command == "export" else [])]


# ---- relocatable ---------------------------------------------------------------------------------------------


def test_records_store_paths_relative_to_the_run(tiny_run: Path) -> None:
    search = json.loads((tiny_run / "search.json").read_text())
    train = json.loads((tiny_run / "train.json").read_text())
    assert search["subnet"] == "subnet.safetensors" and search["pareto"] == "pareto.png" and train["run"] == "."


def test_moved_run_exports_from_another_directory(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Train in one place, move the run, export from a third folder: the moved run's own subnet is used."""
    moved = world / "elsewhere" / "renamed-run"
    moved.parent.mkdir()
    shutil.move(world / "run", moved)
    cwd = world / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # no budgets/ or recipes here: the shipped recipes come from the package
    code, err = run_cli(capsys, "export", "--run", moved, "--fp32")
    assert code == 0, err
    manifest = json.loads((moved / "export" / "onnxruntime-fp32" / "manifest.json").read_text())
    assert manifest["accuracy"]["fp32"] > 0 and not (world / "run").exists() and not any(cwd.iterdir())


@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_search_record_pointing_outside_is_refused(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    """An edited `search.json` naming another run's subnet is refused, never followed (it once replaced an artifact)."""
    other = world / "other-run"
    shutil.copytree(world / "run", other)
    record = json.loads((world / "run" / "search.json").read_text())
    record["subnet"] = str(other / "subnet.safetensors") if where == "absolute" else "../other-run/subnet.safetensors"
    write(world / "run" / "search.json", json.dumps(record))
    assert_refused(
        capsys, world, "export", "--run", world / "run", "--fp32", needles=("search.json", "subnet", "outside")
    )


# ---- links, locks ----------------------------------------------------------------------------------------------


def test_linked_checkpoint_folder_is_refused_and_the_users_file_kept(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A `checkpoint/` linked to a user's folder: `--resume` once pruned (deleted) the user's step-000001.pt."""
    theirs = world / "mine" / "ckpt"
    theirs.mkdir()
    write(theirs / "step-000001.pt", "the user's own file")
    shutil.rmtree(world / "run" / "checkpoint")
    os.symlink(theirs, world / "run" / "checkpoint")
    assert_refused(capsys, world, *train_args(world, world / "run", "--resume"), needles=("checkpoint", "symbolic"))
    assert (theirs / "step-000001.pt").read_text() == "the user's own file"


@pytest.mark.parametrize("command", ["report", "export", "search"])
def test_linked_record_is_refused(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    outside = world / "mine" / "search.json"
    shutil.move(world / "run" / "search.json", outside)
    os.symlink(outside, world / "run" / "search.json")
    assert_refused(capsys, world, *on_run(command, world / "run"), needles=("search.json", "symbolic"))


@pytest.mark.parametrize("command", ["report", "export", "bench"])
def test_second_writer_is_refused_while_one_holds_the_run(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    with writing(world / "run", "test"):
        assert_refused(capsys, world, *on_run(command, world / "run"), needles=("another edgedistill command",))


def test_second_train_into_the_same_new_folder_is_refused(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    new = world / "new-run"
    new.mkdir()  # the first writer made it and holds it
    with writing(new, "train"):
        code, err = run_cli(capsys, *train_args(world, new))
    assert_one_line(code, err, "another edgedistill command")
    assert not any(new.iterdir())


# ---- overwrite keeps the old run until the new one is whole ------------------------------------------------


def test_interrupted_overwrite_keeps_the_previous_run(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgedistill.pipeline.train as train_stage

    before = tree_digest(world / "run")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "distill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage.train_run(
            world / "budget.yaml", world / "task.yaml", world / "run", device="cpu", overwrite=True, show_progress=False
        )
    assert tree_digest(world / "run") == before  # the bank, subnet, records, exports: all as they were
    monkeypatch.undo()
    code, err = run_cli(capsys, *train_args(world, world / "run", "--overwrite"))  # the next try cleans up
    assert code == 0, err
    assert not sibling(world / "run", NEW).exists() and (world / "run" / "train.json").is_file()
    assert sorted(p.name for p in world.iterdir() if p.name.startswith(".")) == []


def test_sigkilled_overwrite_keeps_the_previous_run(world: Path) -> None:  # noqa: F811
    """SIGKILL while the new run is being built (its staging folder exists): the previous run is untouched."""
    before = tree_digest(world / "run")
    args = [str(a) for a in train_args(world, world / "run", "--overwrite")]
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill", *args], stderr=subprocess.PIPE)
    stage = sibling(world / "run", NEW)
    deadline = time.monotonic() + 120
    while not (stage / "task.yaml").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tree_digest(world / "run") == before


# ---- records are checked before they are trusted ------------------------------------------------------------


def test_report_lists_a_damaged_search_record_instead_of_crashing(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = json.loads((world / "run" / "search.json").read_text())
    record["runner_ups"] = [5]
    write(world / "run" / "search.json", json.dumps(record))
    train = json.loads((world / "run" / "train.json").read_text()) | {"teachers": "none", "steps": "4"}
    write(world / "run" / "train.json", json.dumps(train))
    code, err = run_cli(capsys, "report", world / "run")
    assert code == 0, err
    missing = json.loads((world / "run" / "report" / "report.json").read_text())["missing"]
    assert any("search.json: runner_ups[0]" in m for m in missing), missing
    assert any("train.json" in m and "teachers" in m for m in missing), missing
    assert_refused(capsys, world, "export", "--run", world / "run", "--fp32", needles=("search.json", "runner_ups"))


def test_subnet_claiming_huge_layers_is_refused_before_allocating(tiny_run: Path, tmp_path: Path) -> None:
    with safe_open(str(tiny_run / "subnet.safetensors"), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    spec = json.loads(meta["edgedistill"])
    spec["channels"] = {k: 100_000 for k in spec["channels"]}
    spec["base_channels"] = [100_000] * len(spec["base_channels"])
    path = tmp_path / "subnet.safetensors"
    save_file(tensors, str(path), metadata={"edgedistill": json.dumps(spec)})
    with pytest.raises(CheckpointError) as e:
        load_subnet(path)  # built on the meta device first: ~360 GB of parameters are never allocated
    assert "shape" in str(e.value) and "\n" not in str(e.value)


def test_report_that_fails_midway_keeps_the_previous_report(
    world: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgedistill.pipeline.report as report_stage

    code, err = run_cli(capsys, "report", world / "run")
    assert code == 0, err
    before = tree_digest(world / "run" / "report")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_stage, "pareto_plot", disk_full)
    code, err = run_cli(capsys, "report", world / "run")
    assert_one_line(code, err, "report", "No space left", "previous one is unchanged")
    assert tree_digest(world / "run" / "report") == before


def test_stored_path_helper_refuses_bad_values(tiny_run: Path) -> None:
    from edgedistill.run import RunDir

    rd = RunDir(tiny_run)
    assert rd.stored("subnet.safetensors", rd.search_json, "subnet") == tiny_run / "subnet.safetensors"
    for bad in ["", 5, None, "../x", "/etc/passwd", "a\x00b", "subnets/../../x"]:
        with pytest.raises(ConfigError):
            rd.stored(bad, rd.search_json, "subnet")
