"""Fake quantization of a plain subnet with `torch.ao` modules, in the scheme the INT8 exporter will use.

BatchNorm is folded into the convolutions first (as ONNX Runtime's pre-processing and NNCF do before they quantize),
so the fake-quantized weights are the ones the exporter quantizes. Every `Conv2d` and `Linear` gets a per-tensor
fake quantizer on its input and a (per-channel) symmetric one on its weight; the exporter's Q/DQ pairs sit at the
same places (TensorRT's layout exactly; ONNX Runtime and NNCF also requantize some other ops' outputs).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver
from torch.ao.quantization.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver

from edgedistill.recipe import Quantization


@dataclass(frozen=True)
class FakeQuantScheme:
    """Integer ranges and granularity of one exporter's INT8 (see `scheme_for`)."""

    act_dtype: torch.dtype
    act_min: int
    act_max: int
    act_symmetric: bool
    weight_min: int
    weight_max: int
    per_channel: bool

    def describe(self) -> str:
        act = "symmetric int8, zero point 0" if self.act_symmetric else f"affine {str(self.act_dtype)[6:]}"
        w = "per-channel" if self.per_channel else "per-tensor"
        return (
            f"activations {act} [{self.act_min}, {self.act_max}] per tensor; "
            f"weights {w} symmetric int8 [{self.weight_min}, {self.weight_max}]"
        )


def scheme_for(quant: Quantization) -> FakeQuantScheme:
    """The recipe's INT8 as ONNX Runtime's quantizer computes it (NNCF's CPU scheme is the same up to rounding).

    uint8 activations are affine over [0, 255]; symmetric int8 activations (TensorRT) use [-127, 127] with zero
    point 0; weights are symmetric int8 over [-127, 127], or [-64, 64] with `reduce_range` (7-bit weights).
    """
    if quant.symmetric_activations:
        act = (torch.qint8, -127, 127, True)
    elif quant.activations == "uint8":
        act = (torch.quint8, 0, 255, False)
    else:
        act = (torch.qint8, -128, 127, False)
    wmin, wmax = (-64, 64) if quant.reduce_range else (-127, 127)
    return FakeQuantScheme(*act, weight_min=wmin, weight_max=wmax, per_channel=quant.per_channel)


def _activation_fq(s: FakeQuantScheme, observer: type = MovingAverageMinMaxObserver) -> FakeQuantize:
    qscheme = torch.per_tensor_symmetric if s.act_symmetric else torch.per_tensor_affine
    return FakeQuantize(observer=observer, quant_min=s.act_min, quant_max=s.act_max, dtype=s.act_dtype, qscheme=qscheme)


def _weight_fq(s: FakeQuantScheme) -> FakeQuantize:
    # averaging_constant 1: the range of the current weights, exactly what the exporter computes from the final ones
    args: dict[str, Any] = {"quant_min": s.weight_min, "quant_max": s.weight_max, "dtype": torch.qint8}
    if s.per_channel:
        args |= {
            "observer": MovingAveragePerChannelMinMaxObserver,
            "qscheme": torch.per_channel_symmetric,
            "ch_axis": 0,
        }
    else:
        args |= {"observer": MovingAverageMinMaxObserver, "qscheme": torch.per_tensor_symmetric}
    return FakeQuantize(averaging_constant=1.0, **args)


class FakeQuantLayer(nn.Module):
    """A `Conv2d` or `Linear` whose input and weight pass through fake quantizers (STE gradients)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, scheme: FakeQuantScheme) -> None:
        super().__init__()
        self.layer = layer
        self.input_fq = _activation_fq(scheme)
        self.weight_fq = _weight_fq(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_fq(self.layer.weight)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(self.input_fq(x), w, self.layer.bias)
        return nn.functional.linear(self.input_fq(x), w, self.layer.bias)


def fold_bn(model: nn.Module) -> tuple[nn.Module, bool]:
    """An eval-mode copy with every Conv→BatchNorm pair folded (torch.fx); unfoldable nets keep BN, frozen.

    Returns:
        The copy and whether folding succeeded.
    """
    from torch.fx.experimental.optimization import fuse

    net = copy.deepcopy(model).eval()
    try:
        return fuse(net), True
    except Exception:  # not symbolically traceable (data-dependent control flow): BN stays, in eval mode
        return net, False


def prepare(model: nn.Module, scheme: FakeQuantScheme) -> nn.Module:
    """Wrap every plain `Conv2d`/`Linear` of `model` (in place) in a `FakeQuantLayer`; returns `model`."""
    targets = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, FakeQuantLayer(module, scheme))
    return model


def fake_quant_layers(model: nn.Module) -> Iterator[FakeQuantLayer]:
    return (m for m in model.modules() if isinstance(m, FakeQuantLayer))


def strip(model: nn.Module) -> nn.Module:
    """A float copy of a prepared model: each `FakeQuantLayer` replaced by its (fine-tuned) layer."""
    net = copy.deepcopy(model)
    for name, module in [(n, m) for n, m in net.named_modules() if isinstance(m, FakeQuantLayer)]:
        parent_name, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent_name), attr, module.layer)
    return net.eval()


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, batch: int = 100) -> None:
    """Set activation ranges as a static MinMax calibration does: min/max over `images` seen by the float model.

    The fake quantizers are off while observing (the exporter calibrates its FP32 model), then on with the
    observers frozen, so the model computes what the calibrated INT8 artifact computes.
    """
    layers = list(fake_quant_layers(model))
    for layer in layers:
        old = layer.input_fq
        layer.input_fq = _activation_fq(_scheme_of(old), observer=MinMaxObserver).to(images.device)
        layer.input_fq.disable_fake_quant()
        layer.weight_fq.enable_observer()
        layer.weight_fq.disable_fake_quant()
    model.eval()
    for i in range(0, len(images), batch):
        model(images[i : i + batch])
    for layer in layers:
        layer.input_fq.disable_observer()
        layer.input_fq.enable_fake_quant()
        layer.weight_fq.enable_fake_quant()


def _scheme_of(fq: FakeQuantize) -> FakeQuantScheme:
    """The activation half of the scheme a fake quantizer was built with."""
    symmetric = fq.qscheme == torch.per_tensor_symmetric
    return FakeQuantScheme(fq.dtype, fq.quant_min, fq.quant_max, symmetric, -127, 127, True)


def zero_points_zero(model: nn.Module) -> bool:
    """Every fake quantizer's zero point is 0 (TensorRT's symmetric INT8)."""
    return all(
        not bool(fq.zero_point.any()) for layer in fake_quant_layers(model) for fq in (layer.input_fq, layer.weight_fq)
    )
