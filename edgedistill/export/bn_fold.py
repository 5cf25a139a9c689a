"""BatchNorm folded into the preceding convolutions, as the ONNX export does (so fake quantization sees its weights).

torch.fx's `fuse` where the net traces; otherwise (timm's TF-"same" padding is not traceable) each BatchNorm is
paired with the conv whose output tensor it reads in one forward pass, and the fold is kept only when the folded
net computes the same logits.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def fold_bn(model: nn.Module, example: torch.Tensor | None = None) -> tuple[nn.Module, bool]:
    """An eval-mode copy with every Conv→BatchNorm pair folded; nets that fold neither way keep BN, frozen.

    torch.fx first; a net it cannot trace is folded along the pairs one forward pass on `example` shows
    (`_fold_traced`), kept only when its outputs match the unfolded net's.

    Returns:
        The copy and whether folding succeeded.
    """
    from torch.fx.experimental.optimization import fuse

    net = copy.deepcopy(model).eval()
    try:
        return fuse(net), True
    except Exception:  # not symbolically traceable (TF padding, data-dependent control flow)
        if example is None:
            return net, False
    return _fold_traced(net, example)


@torch.no_grad()
def _fold_traced(net: nn.Module, example: torch.Tensor) -> tuple[nn.Module, bool]:
    """Fold each BatchNorm into the conv whose output tensor it reads (seen in one forward pass on `example`).

    A BatchNorm becomes its activation (timm's `BatchNormAct2d`) or an identity. The fold is kept only when the
    folded net's logits match the original's (a conv output that something else also reads would break it).
    """
    convs: dict[int, tuple[str, torch.Tensor]] = {}  # id(conv output) -> conv name (the tensor kept: ids stay unique)
    pairs: list[tuple[str, str]] = []

    def conv_hook(name: str) -> Any:
        return lambda _m, _i, out: convs.__setitem__(id(out), (name, out))

    def bn_hook(name: str) -> Any:
        return lambda _m, inp: pairs.append((convs[id(inp[0])][0], name)) if id(inp[0]) in convs else None

    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook(name)))
        elif isinstance(m, nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(bn_hook(name)))
    ref = net(example)
    for h in hooks:
        h.remove()
    used = [c for c, _ in pairs]
    if not pairs or len(set(used)) != len(used):
        return net, False
    folded = copy.deepcopy(net)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert bn.running_mean is not None and bn.running_var is not None
        scale = torch.rsqrt(bn.running_var + bn.eps) * (bn.weight if bn.weight is not None else 1.0)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)
        bias = (conv.bias if conv.bias is not None else torch.zeros_like(scale)) - bn.running_mean
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bias * scale + shift)
        act = getattr(bn, "act", None)  # timm BatchNormAct2d: its dropout is a no-op in eval
        parent, _, attr = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent), attr, act if isinstance(act, nn.Module) else nn.Identity())
    out = folded(example)
    ok = torch.allclose(out, ref, rtol=1e-3, atol=1e-3 * max(1.0, float(ref.abs().max())))
    return (folded, True) if ok else (net, False)
