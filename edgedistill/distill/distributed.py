"""Data-parallel training under `torchrun` (NCCL on GPU, gloo on CPU), and a no-op for a single process.

`torchrun --nproc_per_node N -m edgedistill train ...` starts N copies of the CLI with RANK/WORLD_SIZE/LOCAL_RANK
set. Every rank draws the same global batch from the same seeded generator (so the sandwich configs and the
augmentation match) and trains on its contiguous share of the rows; after the K sandwich backward passes the
gradients are averaged over ranks once per step, which is DistributedDataParallel's arithmetic with `no_sync`
over the sub-passes. Rank 0 alone writes the run folder (checkpoints, teacher cache, bank, reports).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from edgedistill.errors import BackendUnavailable, ConfigError

# Rank 0 may build the teacher cache while the other ranks wait at a barrier.
TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size and the GPU index on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writes a cache); the others run it after, reading what it wrote."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def shard(self, n: int, what: str) -> slice:
        """This rank's contiguous rows of a global batch of `n` rows."""
        if n % self.world:
            raise ConfigError(f"{what}: {n} is not divisible by the {self.world} processes (WORLD_SIZE)")
        per = n // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def current() -> Dist:
    """The process group this process belongs to, or a single-process `Dist`."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[tuple[Dist, torch.device]]:
    """Join the torchrun job when WORLD_SIZE > 1 (NCCL on CUDA, one GPU per local rank; gloo on CPU), leave at exit.

    Yields:
        This rank's `Dist` and its device (`cuda:LOCAL_RANK` on GPU). A single process gets `Dist()` and `device`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current(), device
        return
    if not dist.is_available():
        raise BackendUnavailable("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise BackendUnavailable(f"LOCAL_RANK {local}: only {torch.cuda.device_count()} CUDA devices visible")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    try:
        yield current(), device
    finally:
        dist.destroy_process_group()


def broadcast_parameters(modules: Iterable[nn.Module], d: Dist) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting point)."""
    if not d.enabled:
        return
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[nn.Parameter], d: Dist) -> None:
    """Mean of every gradient over ranks, in one flat all-reduce.

    Ranks run the same width configs (same generator), so the same parameters have gradients everywhere.
    """
    if not d.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def average_buffers(module: nn.Module, d: Dist) -> None:
    """Mean of the floating-point buffers (BatchNorm running statistics) over ranks."""
    if not d.enabled:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b.data)
            b.data /= d.world


def mean_over_ranks(values: Mapping[str, float | torch.Tensor], d: Dist, device: torch.device) -> dict[str, float]:
    """Every value averaged over ranks (logged metrics); keys must match on every rank."""
    out = {k: float(v) for k, v in values.items()}
    if not d.enabled or not out:
        return out
    t = torch.tensor(list(out.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / d.world for k, v in zip(out, t.tolist(), strict=True)}
