"""The INT8 instruction set (edgedistill/isa.py): detection from CPU flags, the budget's `device.isa`, the 7-bit weight
rule of `reduce_range: auto`, what the quantizers and the manifest get. Every case is given its flags or its ISA, so
the tests hold on any CPU; the one that reads this machine compares with the same machine's detection."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import yaml

from edgedistill.budget import load_budget
from edgedistill.budget.spec import Device
from edgedistill.errors import BudgetError
from edgedistill.isa import budget_isa, detect_isa, for_isa, reduce_range, seven_bit_weights, this_machine_isa
from edgedistill.recipe import Quantization, resolve_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("flags", "arch", "isa"),
    [
        (["avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"], "x86_64", "avx512-vnni"),  # Sapphire Rapids, Zen 4
        (["avx2", "fma", "avx_vnni"], "x86_64", "avx-vnni"),  # Alder Lake
        (["avx2", "fma", "avx512f"], "x86_64", "avx512"),  # Skylake-SP
        (["avx2", "fma"], "x86_64", "avx2"),  # Zen 2/3 EPYC, Haswell
        ([], "x86_64", "other"),
        (["asimd", "asimddp"], "aarch64", "arm-dotprod"),  # Cortex-A76 (Raspberry Pi 5), A78AE (Orin)
        (["asimd"], "aarch64", "arm"),  # Cortex-A72 (Raspberry Pi 4)
    ],
)
def test_isa_from_cpu_flags(flags: list[str], arch: str, isa: str) -> None:
    assert detect_isa(flags, arch) == isa
    assert seven_bit_weights(isa) == (isa in {"avx512", "avx2", "other"})  # int16 u8s8 sums, or not known


def test_auto_reduce_range_follows_the_isa_and_explicit_values_stay() -> None:
    auto = Quantization(reduce_range="auto")
    assert for_isa(auto, "avx2").reduce_range is True and for_isa(auto, "avx512-vnni").reduce_range is False
    assert for_isa(auto, "arm-dotprod").reduce_range is False
    for fixed in (True, False):
        q = Quantization(reduce_range=fixed)
        assert for_isa(q, "avx2") is q and for_isa(q, "avx512-vnni") is q and reduce_range(q) is fixed
    assert reduce_range(auto) == seven_bit_weights(this_machine_isa())  # no budget: the machine it runs on
    assert resolve_recipe("onnxruntime-int8").quantization.reduce_range == "auto"  # type: ignore[union-attr]


def test_budget_isa_named_detected_or_the_family_default() -> None:
    assert budget_isa(Device(family="x86", isa="avx512-vnni")).isa == "avx512-vnni"
    assert budget_isa(Device(family="x86", isa="avx512-vnni")).source == "budget device.isa"
    here = platform.machine().lower()
    x86 = budget_isa(Device(family="x86"))
    if here in ("x86_64", "amd64"):
        assert x86.isa == this_machine_isa() and "detected" in x86.source
    else:
        assert x86.isa == "avx2" and "default" in x86.source
    arm = budget_isa(Device(family="arm"))
    assert (
        (arm.isa == this_machine_isa()) if here in ("aarch64", "arm64") else (arm.isa == "arm" and here in arm.source)
    )
    assert budget_isa(Device(family="jetson")).isa in ("arm-dotprod", this_machine_isa())


def test_a_budget_names_its_isa_and_a_bad_one_fails_in_one_line(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "budgets" / "raspberry-pi-5.yaml").read_text())
    data["device"]["isa"] = "arm-dotprod"
    good = tmp_path / "pi.yaml"
    good.write_text(yaml.safe_dump(data))
    resolved = load_budget(good)
    assert budget_isa(resolved.budget.device).isa == "arm-dotprod"
    assert for_isa(resolved.recipe.quantization, "arm-dotprod").reduce_range is False  # type: ignore[arg-type]
    data["device"]["isa"] = "sse4"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(BudgetError, match=r"bad.yaml: device.isa: Input should be 'auto'"):
        load_budget(bad)


def _max_int8_weight(model: Path) -> int:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model)).graph.initializer}
    return max(int(np.abs(a.astype(np.int32)).max()) for a in inits.values() if a.dtype == np.int8 and a.ndim == 4)


@pytest.mark.parametrize("isa", ["avx512-vnni", "avx2"])
def test_an_export_cuts_weights_for_the_budgets_isa(trained_run: Path, tmp_path: Path, isa: str) -> None:
    """The session run exported for a VNNI device keeps 8-bit weights, for an AVX2 one 7-bit; the manifest says so,
    and where this machine's kernels would saturate the device's 8-bit weights, the accuracy is scored with Q/DQ in
    float (the device's arithmetic), and the manifest says that too."""
    import shutil

    from edgedistill.export.manifest import read_manifest
    from edgedistill.pipeline.export import export_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "checkpoint", "report", "bench"))
    data = yaml.safe_load((run / "budget.yaml").read_text())  # same name: the run's stored width choice is reused
    data["device"]["isa"] = isa
    budget = tmp_path / "device.yaml"
    budget.write_text(yaml.safe_dump(data))
    recipe = REPO / "edgedistill" / "resources" / "recipes" / "onnxruntime-int8.yaml"
    budget.write_text(budget.read_text().replace(f"recipe: {data['target']['recipe']}", f"recipe: {recipe}"))
    export_run(run, budget=budget, precision="int8", sensitivity_images=0)
    m = read_manifest(run / "export" / "onnxruntime-int8")
    assert m.isa is not None and (m.isa.isa, m.isa.source) == (isa, "budget device.isa")
    assert m.isa.reduce_range is (isa == "avx2")
    assert _max_int8_weight(run / "export" / "onnxruntime-int8" / "model.onnx") == (64 if isa == "avx2" else 127)
    simulated = isa != "avx2" and seven_bit_weights(this_machine_isa())
    assert ("accuracy_runtime" in m.notes) == simulated, m.notes
    assert m.accuracy.drop_pts is not None and m.accuracy.drop_pts <= 2.0  # conftest.FIXTURE_MAX_DROP
