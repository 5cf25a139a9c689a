"""The `torch` entry of the bench runtimes: eager FP32 of a subnet, the reference every artifact is compared with.

Registered here, not in `bench/runtimes.py`, so that the torch-free device runner never sees it; the torch runner
(`bench/torch_runner.py`) and the bare loop (`bench/bare.py`) import it. torch is imported inside `__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.bench.runtimes import RUNTIMES, RuntimeOptions
from edgedistill.errors import BackendUnavailable, BenchError


@RUNTIMES.register("torch")
class TorchModel:
    """Torch eager FP32 of a subnet `.safetensors` (the reference), or of a given `net`; autograd off."""

    def __init__(self, model_path: Path | None, options: RuntimeOptions, net: Any = None) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("torch is not installed: pip install edgedistill") from None
        if options.device not in ("cpu", "cuda"):
            raise BenchError(f"torch has no device '{options.device}'; use one of: cpu, cuda")
        if options.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA device here")
        torch.set_num_threads(options.threads)
        # A runner process is this model's alone: no autograd anywhere, without a per-call context manager.
        torch.set_grad_enabled(False)
        if net is None:
            from edgedistill.models import load_subnet  # lazy: only the torch reference needs the model zoo

            net = load_subnet(model_path)  # type: ignore[arg-type]
        self.torch, self.device = torch, torch.device(options.device)
        self.net = net.eval().to(self.device)
        self.details = {"device": options.device, "torch_threads": torch.get_num_threads()}

    def run(self, x: np.ndarray) -> Any:
        out = self.net(self.torch.from_numpy(x).to(self.device))
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        return out

    def bare(self, x: np.ndarray) -> Callable[[], object]:
        """The module's own call on `x`, without this wrapper."""
        net, xt = self.net, self.torch.from_numpy(x)
        return lambda: net(xt)
