"""The instruction set INT8 kernels run on, and the quantization settings that depend on it.

x86 CPUs without VNNI (AVX2, AVX-512F alone) multiply uint8 activations by int8 weights with `vpmaddubsw`, whose
pairwise sums saturate at int16: per-channel weights that use the whole int8 range overflow there, and ONNX Runtime
INT8 lost 4.8 pts on the demo subnet until the weights were 7-bit (`reduce_range`). VNNI (`vpdpbusd`, AVX-512 VNNI or
AVX-VNNI) and ARM's dot product accumulate in int32 and need no such cut, so a recipe's `reduce_range: auto` keeps
8-bit weights there and 7-bit weights everywhere else (the safe choice when the CPU is not known).

The instruction set is the budget's `device.isa`; `auto` means this machine's when its architecture is the budget's
device family (the export runs where the model will run), else the family's safe default.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from edgedistill.bench.machine import cpu_flags

if TYPE_CHECKING:
    from edgedistill.budget.spec import Device
    from edgedistill.recipe import Quantization

Isa = Literal["avx512-vnni", "avx-vnni", "avx512", "avx2", "arm-dotprod", "arm", "other"]
ISAS: tuple[str, ...] = get_args(Isa)
SATURATING: frozenset[str] = frozenset({"avx512", "avx2", "other"})  # u8 × s8 pairs summed in int16 (or unknown)
ARCHES = {"x86": ("x86_64", "amd64", "i686", "i386"), "arm": ("aarch64", "arm64"), "jetson": ("aarch64", "arm64")}
X86_FLAGS: tuple[tuple[str, Isa], ...] = (
    ("avx512_vnni", "avx512-vnni"),
    ("avx_vnni", "avx-vnni"),
    ("avx512f", "avx512"),
    ("avx2", "avx2"),
)  # best first
FAMILY_DEFAULT: dict[str, Isa] = {"x86": "avx2", "arm": "arm", "jetson": "arm-dotprod"}  # Orin: Cortex-A78AE


def detect_isa(flags: list[str] | tuple[str, ...], arch: str) -> Isa:
    """The INT8 instruction set from /proc/cpuinfo flags (`bench.machine.cpu_flags`) and `platform.machine()`."""
    have = set(flags)
    if arch.lower() in ARCHES["arm"]:
        return "arm-dotprod" if "asimddp" in have else "arm"
    for flag, isa in X86_FLAGS:
        if flag in have:
            return isa
    return "other"


@functools.cache
def this_machine_isa() -> Isa:
    """This machine's INT8 instruction set (its CPU flags are read once per process)."""
    return detect_isa(cpu_flags(), platform.machine())


@dataclass(frozen=True)
class IsaChoice:
    """The instruction set quantization settings are chosen for, and where it came from (for the manifest)."""

    isa: Isa
    source: str


def budget_isa(device: Device) -> IsaChoice:
    """The budget's `device.isa`, or for `auto` this machine's (same architecture as the family) or the default."""
    if device.isa != "auto":
        return IsaChoice(device.isa, "budget device.isa")
    arch = platform.machine().lower()
    if arch in ARCHES.get(device.family, ()):
        return IsaChoice(this_machine_isa(), "detected on the exporting machine (device.isa: auto)")
    default = FAMILY_DEFAULT.get(device.family, "other")
    return IsaChoice(default, f"device.family {device.family}'s default; this machine is {arch} (device.isa: auto)")


def seven_bit_weights(isa: str) -> bool:
    """Whether INT8 weights must stay within 7 bits on `isa` (module docstring)."""
    return isa in SATURATING


def for_isa(quant: Quantization, isa: str) -> Quantization:
    """`quant` with `reduce_range: auto` made concrete for `isa` (an explicit true/false is kept)."""
    if quant.reduce_range != "auto":
        return quant
    return quant.model_copy(update={"reduce_range": seven_bit_weights(isa)})


def reduce_range(quant: Quantization) -> bool:
    """The concrete `reduce_range` of settings a quantizer is given: `auto` not made concrete by the caller (the
    Python API's `ed.quantize`, the search's timed INT8 models) means this machine, where they run."""
    if quant.reduce_range == "auto":
        return seven_bit_weights(this_machine_isa())
    return bool(quant.reduce_range)
