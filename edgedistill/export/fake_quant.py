"""Fake quantization of a plain subnet with `torch.ao` modules, in the scheme the INT8 exporter will use.

BatchNorm is folded into the convolutions first (`bn_fold.fold_bn`, as the ONNX export and NNCF do before they
quantize), so the fake-quantized weights are the ones the exporter quantizes. Every `Conv2d` (subclasses such as
timm's `Conv2dSame` included) and `Linear` gets a per-tensor fake quantizer on its input and a (per-channel)
symmetric one on its weight. Where the net traces with torch.fx (timm's own leaf modules allowed), the inputs and
the output of every tensor add and multiply (residual connections, squeeze-excite gates) get one too, as the
exporters place Q/DQ pairs around Add and Mul nodes; the other ops ONNX Runtime requantizes (pooling) are not
simulated.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver
from torch.ao.quantization.observer import MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.func import functional_call

from edgedistill.isa import reduce_range
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
    wmin, wmax = (-64, 64) if reduce_range(quant) else (-127, 127)
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
        # the layer's own forward (a subclass's padding included) with the fake-quantized weight
        return functional_call(self.layer, {"weight": self.weight_fq(self.layer.weight)}, (self.input_fq(x),))


class TensorFakeQuant(nn.Module):
    """The Q/DQ pair an exporter puts on a tensor no layer wrapper covers (an input or the output of an add)."""

    def __init__(self, scheme: FakeQuantScheme) -> None:
        super().__init__()
        self.fq = _activation_fq(scheme)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fq(x)


_ELEMENTWISE = (operator.add, torch.add, operator.mul, torch.mul)  # ONNX Add / Mul of two tensors


def prepare(model: nn.Module, scheme: FakeQuantScheme) -> nn.Module:
    """Fake quantizers on every `Conv2d`/`Linear` (in place) and, where `model` traces, around tensor adds/muls.

    Returns:
        `model`, or a `torch.fx.GraphModule` over its modules when the adds and multiplies could be covered.
    """
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, FakeQuantLayer(module, scheme))
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
    except Exception:  # not traceable: the layers' quantizers only
        return model
    count = 0

    def fake_quant(x: fx.Node, before: fx.Node) -> fx.Node:
        nonlocal count
        name, count = f"tensor_fq_{count}", count + 1
        gm.add_submodule(name, TensorFakeQuant(scheme))
        with gm.graph.inserting_before(before):
            return gm.graph.call_module(name, (x,))

    for node in list(gm.graph.nodes):
        inputs = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op != "call_function" or node.target not in _ELEMENTWISE or len(inputs) != 2:
            continue
        node.args = tuple(fake_quant(a, node) if isinstance(a, fx.Node) else a for a in node.args)
        after = node.next
        out = fake_quant(node, after)
        node.replace_all_uses_with(out, delete_user_cb=lambda user, q=out: user is not q)  # type: ignore[misc]
    if count == 0:
        return model
    gm.graph.lint()
    gm.recompile()
    return gm


class _Tracer(fx.Tracer):
    """torch.fx with timm's untraceable modules and functions (TF padding, ...) and the fake-quant layers as leaves."""

    def __init__(self) -> None:
        try:
            from timm.models._features_fx import get_notrace_functions, get_notrace_modules
        except ImportError:  # timm-free nets trace without them
            functions, modules = [], []
        else:
            functions, modules = get_notrace_functions(), get_notrace_modules()
        super().__init__(autowrap_functions=tuple(functions))
        self.leaves = (FakeQuantLayer, *modules)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaves) or super().is_leaf_module(m, module_qualified_name)


def fake_quant_layers(model: nn.Module) -> Iterator[FakeQuantLayer]:
    return (m for m in model.modules() if isinstance(m, FakeQuantLayer))


def strip(model: nn.Module) -> nn.Module:
    """A float copy of a prepared model: every `FakeQuantLayer` back to its (fine-tuned) layer, tensor ones removed."""
    net = copy.deepcopy(model)
    for name, module in [(n, m) for n, m in net.named_modules() if isinstance(m, (FakeQuantLayer, TensorFakeQuant))]:
        parent_name, _, attr = name.rpartition(".")
        plain = module.layer if isinstance(module, FakeQuantLayer) else nn.Identity()
        setattr(net.get_submodule(parent_name), attr, plain)
    return net.eval()


@torch.no_grad()
def calibrate(model: nn.Module, images: torch.Tensor, batch: int = 100) -> None:
    """Set activation ranges as a static MinMax calibration does: min/max over `images` seen by the float model.

    The fake quantizers are off while observing (the exporter calibrates its FP32 model), then on with the
    observers frozen, so the model computes what the calibrated INT8 artifact computes.
    """
    layers = list(fake_quant_layers(model))
    acts = [(m, "input_fq") for m in layers] + [(m, "fq") for m in model.modules() if isinstance(m, TensorFakeQuant)]
    for module, attr in acts:
        fq = _activation_fq(_scheme_of(getattr(module, attr)), observer=MinMaxObserver).to(images.device)
        fq.disable_fake_quant()
        setattr(module, attr, fq)
    for layer in layers:
        layer.weight_fq.enable_observer()
        layer.weight_fq.disable_fake_quant()
    model.eval()
    for i in range(0, len(images), batch):
        model(images[i : i + batch])
    for module, attr in acts:
        getattr(module, attr).disable_observer()
        getattr(module, attr).enable_fake_quant()
    for layer in layers:
        layer.weight_fq.enable_fake_quant()


def _scheme_of(fq: FakeQuantize) -> FakeQuantScheme:
    """The activation half of the scheme a fake quantizer was built with."""
    symmetric = fq.qscheme == torch.per_tensor_symmetric
    return FakeQuantScheme(fq.dtype, fq.quant_min, fq.quant_max, symmetric, -127, 127, True)


def zero_points_zero(model: nn.Module) -> bool:
    """Every fake quantizer's zero point is 0 (TensorRT's symmetric INT8)."""
    fqs = [m for m in model.modules() if isinstance(m, FakeQuantize)]
    return bool(fqs) and all(not bool(fq.zero_point.any()) for fq in fqs)
