"""Post-training rungs that change the float weights so that the exporter's INT8 of them is closer to FP32.

Each rung works on the fake-quantized copy of the BN-folded subnet (`fake_quant.prepare`, the exporter's scheme), layer
by layer in execution order, so every layer sees the inputs the INT8 model will give it (earlier layers already
corrected) and is compared with the FP32 subnet's output of the same layer:

- `bias_correction`: empirical bias correction (Nagel et al., *Data-Free Quantization*, 2019; NNCF's bias correction
  does the same on OpenVINO IR): the mean per-channel output error of the quantized layer is subtracted from its bias.
- `adaround`: AdaRound (Nagel et al., *Up or Down? Adaptive Rounding*, 2020): each weight is rounded up or down by a
  learnt soft mask that minimises the layer's output error against FP32, then bias correction. The largest weight of
  every channel keeps its value, so the exporter's min-max weight scale, recomputed from the rounded weights, is the
  scale the rounding was learnt for and its own rounding reproduces these weights exactly.

The result is a plain float model (`fake_quant.strip`) that goes through the target's stock INT8 exporter.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from edgedistill.export.bn_fold import fold_bn
from edgedistill.export.fake_quant import FakeQuantLayer, FakeQuantScheme, calibrate, prepare, strip
from edgedistill.recipe import Ladder
from edgedistill.registry import Registry

CHUNK = 64  # images per forward pass while capturing a layer's tensors
# AdaRound's optimiser: images per step, Adam learning rate (10x the paper's 1e-3, which runs 10-20k steps per layer
# against our hundreds) and the rounding regulariser's weight (the paper's)
ADAROUND_BATCH, ADAROUND_LR, ADAROUND_REG = 32, 1e-2, 0.01


@dataclass
class RungResult:
    """The float model with the rung's weights (for the exporter) and what the rung did."""

    float_model: nn.Module
    quantized: nn.Module  # its fake-quant twin, calibrated as the exporter will
    layers: int
    seconds: float


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def _capture(model: nn.Module, name: str, x: torch.Tensor, output: bool) -> torch.Tensor:
    """The input (or output) tensor of module `name` for every image of `x`, stopping each pass there."""
    module = model.get_submodule(name)
    got: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> None:
        got.append(t.detach().clone())  # clone: an in-place activation after the layer would change it
        raise _Stop

    hook = (
        module.register_forward_hook(lambda m, a, o: keep(o))
        if output
        else module.register_forward_pre_hook(lambda m, a: keep(a[0]))
    )
    try:
        with torch.no_grad():
            for i in range(0, len(x), CHUNK):
                with contextlib.suppress(_Stop):
                    model(x[i : i + CHUNK])
    finally:
        hook.remove()
    return torch.cat(got)


def _layer_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the fake-quant layers in the order a forward pass runs them."""
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, a, n=n: order.append(n))
        for n, m in model.named_modules()
        if isinstance(m, FakeQuantLayer)
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(order))


def _weight_grid(layer: FakeQuantLayer) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The weight, its per-channel (or per-tensor) symmetric scale as the exporter computes it, and the int range."""
    w = layer.layer.weight.detach()
    qmax = int(layer.weight_fq.quant_max)
    flat = w.flatten(1).abs()
    absmax = flat.amax(1) if layer.weight_fq.qscheme == torch.per_channel_symmetric else flat.amax().expand(len(w))
    scale = (absmax.clamp_min(torch.finfo(torch.float32).tiny) / qmax).view(-1, *[1] * (w.dim() - 1))
    return w, scale, qmax


def _output(layer: FakeQuantLayer, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return functional_call(layer.layer, {"weight": weight}, (x,))  # type: ignore[no-any-return]


def bias_correct(layer: FakeQuantLayer, xq: torch.Tensor, target: torch.Tensor) -> None:
    """Subtract the mean per-channel error of the quantized layer's output (inputs `xq`) vs FP32's `target`."""
    with torch.no_grad():
        out = _output(layer, xq, layer.weight_fq(layer.layer.weight))
        dims = [0, *range(2, out.dim())]
        err = (out - target).mean(dims)
        if layer.layer.bias is None:
            layer.layer.bias = nn.Parameter(torch.zeros_like(err))
        layer.layer.bias -= err


def adaround(layer: FakeQuantLayer, xq: torch.Tensor, target: torch.Tensor, s: Ladder) -> None:
    """Learn up/down rounding of `layer`'s weights against FP32's output; write the rounded weights in place."""
    w, scale, qmax = _weight_grid(layer)
    base = torch.floor(w / scale)
    frac = (w / scale - base).clamp(0.01, 0.99)
    # rectified sigmoid h(v) = clip(1.2 σ(v) − 0.1, 0, 1), started at the fractional part (rounding to nearest ≈ 0.5)
    v = torch.logit((frac + 0.1) / 1.2).requires_grad_(True)
    keep = w.abs() >= w.flatten(1).abs().amax(1).view_as(scale)  # each channel's largest: the exporter's scale
    opt = torch.optim.Adam([v], lr=ADAROUND_LR)
    gen = torch.Generator().manual_seed(s.seed)
    warm = s.adaround_iterations // 5  # reconstruction only, then the regulariser pushes h to 0 or 1

    def soft() -> torch.Tensor:
        return (torch.sigmoid(v) * 1.2 - 0.1).clamp(0, 1)

    for it in range(s.adaround_iterations):
        h = soft()
        wq = torch.where(keep, w, scale * (base + h).clamp(-qmax, qmax))
        idx = torch.randint(0, len(xq), (min(ADAROUND_BATCH, len(xq)),), generator=gen)
        loss = (_output(layer, xq[idx], wq) - target[idx]).pow(2).sum(1).mean()
        if it >= warm:
            beta = 20.0 - 18.0 * (it - warm) / max(1, s.adaround_iterations - warm)
            loss = loss + ADAROUND_REG * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    with torch.no_grad():
        hard = (soft() >= 0.5).to(w.dtype)
        layer.layer.weight.copy_(torch.where(keep, w, scale * (base + hard).clamp(-qmax, qmax)))


LayerStep = Callable[[FakeQuantLayer, torch.Tensor, torch.Tensor, Ladder], None]
RUNGS: Registry[list[LayerStep]] = Registry("PTQ rung")
RUNGS.register("bias_correction")([lambda layer, xq, t, s: bias_correct(layer, xq, t)])
RUNGS.register("adaround")([adaround, lambda layer, xq, t, s: bias_correct(layer, xq, t)])


def apply_rung(
    subnet: nn.Module, scheme: FakeQuantScheme, calibration: np.ndarray, rung: str, settings: Ladder
) -> RungResult:
    """Run `rung` (see the module doc) on a copy of `subnet`; ranges come from `calibration` as the exporter's do.

    Raises:
        ConfigError: `rung` is not a known rung.
    """
    steps = RUNGS.get(rung)
    t0 = time.perf_counter()
    torch.manual_seed(settings.seed)
    calib = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    folded, _ = fold_bn(copy.deepcopy(subnet).cpu().eval(), calib[:2])
    model = prepare(copy.deepcopy(folded), scheme)
    calibrate(model, calib)
    reference = strip(model)  # the FP32 subnet with the same module names
    x = calib[: settings.images]
    names = _layer_order(model, x)
    for name in names:
        layer: Any = model.get_submodule(name)
        with torch.no_grad():
            xq = layer.input_fq(_capture(model, name, x, output=False))
        target = _capture(reference, name, x, output=True)
        for step in steps:
            step(layer, xq, target, settings)
    calibrate(model, calib)  # activation ranges of the new weights, as the exporter will compute them
    return RungResult(strip(model), model, len(names), time.perf_counter() - t0)
