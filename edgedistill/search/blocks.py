"""A plain subnet as a chain of timeable blocks, each identified by its shape (for the latency lookup table).

A block's key holds its class, its input and output shapes and the shapes of its parameters, so two configs that
share a block shape share its measured latency (OFA-style). Decompositions are a registry keyed by student family.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgedistill.models import STUDENTS, SlimmableBank
from edgedistill.registry import Registry


@dataclass(frozen=True)
class Block:
    """One timeable piece of a plain subnet: its shape key, the module and the shape it receives."""

    key: str
    module: nn.Module
    input_shape: tuple[int, ...]


class _Head(nn.Module):
    """Global pooling + the deployed classifier (`forward_head`), after an optional last conv block.

    The net is held outside the module tree, so the block's parameters (its key) are only its own layers'.
    """

    def __init__(self, net: SlimmableBank, pre: nn.Module | None = None) -> None:
        super().__init__()
        self._net = [net]
        self.pre = pre if pre is not None else nn.Identity()
        self.classifier = getattr(net, "classifier", nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._net[0]
        pooled = net.pool(self.pre(x)).flatten(1)  # type: ignore[operator]
        return net.forward_head(pooled)


def _resnet_cifar(net: SlimmableBank) -> list[tuple[str, nn.Module]]:
    blocks: list[tuple[str, nn.Module]] = [("Stem", nn.Sequential(net.stem, net.stem_act))]  # type: ignore[arg-type]
    blocks += [("BasicBlock", b) for stage in net.stages for b in stage]  # type: ignore[union-attr]
    return [*blocks, ("Head", _Head(net))]


def _mobilenet(net: SlimmableBank) -> list[tuple[str, nn.Module]]:
    blocks: list[tuple[str, nn.Module]] = [("Stem", net.stem)]  # type: ignore[list-item]
    blocks += [("InvertedResidual", b) for stage in net.stages for b in stage]  # type: ignore[union-attr]
    return [*blocks, ("Head", _Head(net, net.head))]  # type: ignore[arg-type]


Decompose = Callable[[SlimmableBank], list[tuple[str, nn.Module]]]
BLOCK_LAYOUTS: Registry[Decompose] = Registry("block layout")
BLOCK_LAYOUTS.register("resnet_cifar")(_resnet_cifar)
BLOCK_LAYOUTS.register("mobilenet")(_mobilenet)


def plain_net(bank: SlimmableBank, config: Sequence[float], device: str | torch.device = "meta") -> SlimmableBank:
    """The subnet's architecture at `config` without copying weights (on `meta`: no memory, shapes only)."""
    spec = bank.spec()
    family = spec.pop("family")
    spec.update(slim=False, channels=bank.slot_channels(config), config=list(config))
    with torch.device(device):
        net = STUDENTS.get(family)(**spec)
    return net.eval()


def _key(kind: str, module: nn.Module, io: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    # Parameter shapes fix every channel count; batch and spatial sizes come from `io` (channels dropped).
    params = {n: list(p.shape) for n, p in module.named_parameters()}
    (n, _, *hw), (n_out, _, *hw_out) = io
    shapes = {"in": [n, *hw], "out": [n_out, *hw_out]}
    return json.dumps({"kind": kind, **shapes, "params": params}, sort_keys=True)


def _forward_blocks(net: SlimmableBank, input_shape: tuple[int, int, int, int]) -> list[tuple[int, ...]]:
    """Tensor shapes between the net's blocks: input, after block 1, ..., logits."""
    ref = next(net.parameters())
    x = torch.zeros(input_shape, device=ref.device, dtype=ref.dtype)
    shapes = [tuple(x.shape)]
    with torch.no_grad():
        for _, module in BLOCK_LAYOUTS.get(net.family)(net):
            x = module(x)
            shapes.append(tuple(x.shape))
    return shapes


def blocks_of(net: SlimmableBank, input_shape: tuple[int, int, int, int]) -> list[Block]:
    """The net's blocks in execution order with their keys and input shapes (one forward of `net`)."""
    shapes = _forward_blocks(net, input_shape)
    layout = BLOCK_LAYOUTS.get(net.family)(net)
    return [Block(_key(kind, m, (shapes[i], shapes[i + 1])), m, shapes[i]) for i, (kind, m) in enumerate(layout)]


class BlockKeys:
    """Block keys of any config of one bank, without a forward pass per config.

    Spatial sizes do not depend on widths, so they are taken once from the largest config; channel counts are in
    each block's parameter shapes, read from a `meta` build of the config's plain net.
    """

    def __init__(self, bank: SlimmableBank, input_shape: tuple[int, int, int, int]) -> None:
        self.bank = bank
        self.input_shape = input_shape
        shapes = _forward_blocks(plain_net(bank, bank.largest_config()), input_shape)
        self._io = list(zip(shapes[:-1], shapes[1:], strict=True))

    def __call__(self, config: Sequence[float]) -> list[str]:
        layout = BLOCK_LAYOUTS.get(self.bank.family)(plain_net(self.bank, config))
        return [_key(kind, m, io) for (kind, m), io in zip(layout, self._io, strict=True)]


def probe_configs(bank: SlimmableBank) -> Iterator[tuple[float, ...]]:
    """Configs that together contain every block shape the bank can produce.

    A block's shape depends on the widths of at most two stages (its input's and its own), so varying every pair of
    stages over all width pairs, the others at full width, covers every block shape.
    """
    full = bank.largest_config()
    seen: set[tuple[float, ...]] = set()
    pairs = itertools.combinations(range(bank.num_stages), 2) if bank.num_stages > 1 else [(0, 0)]
    for a, b in pairs:
        for wa, wb in itertools.product(bank.width_choices, repeat=2):
            cfg = list(full)
            cfg[a], cfg[b] = wa, wb
            if tuple(cfg) not in seen:
                seen.add(tuple(cfg))
                yield tuple(cfg)


def distinct_blocks(bank: SlimmableBank, input_shape: tuple[int, int, int, int]) -> dict[str, Block]:
    """Every distinct block shape of the bank, each with a CPU module (random weights) to export and time."""
    keys_of = BlockKeys(bank, input_shape)
    found: dict[str, tuple[float, ...]] = {}
    for cfg in probe_configs(bank):
        for key in keys_of(cfg):
            found.setdefault(key, cfg)
    blocks: dict[str, Block] = {}
    for cfg in dict.fromkeys(found.values()):
        net = materialize(plain_net(bank, cfg))
        for block in blocks_of(net, input_shape):
            if found.get(block.key) == cfg and block.key not in blocks:
                blocks[block.key] = block
    return blocks


def materialize(net: SlimmableBank, seed: int = 0) -> SlimmableBank:
    """A `meta` net on the CPU with small random weights and unit BN statistics (latency does not need trained ones).

    Cheaper than building the net on the CPU, whose initialisers dominate for 224 px families.
    """
    net = net.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / max(1, p[0].numel())) ** 0.5)
            else:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    return net.eval()
