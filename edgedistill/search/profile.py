"""`profile_bank`: time every distinct block shape of a bank on this machine and build its latency lookup table."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from edgedistill.bench.machine import machine_info, package_versions
from edgedistill.models import SlimmableBank
from edgedistill.progress import progress
from edgedistill.recipe import Recipe
from edgedistill.search.blocks import distinct_blocks, materialize, plain_net
from edgedistill.search.lut import Anchor, LatencyLUT, LatencyPredictor, bank_signature, fit_calibration
from edgedistill.search.measure import Timing, time_module
from edgedistill.search.upem import uniform_configs

RANDOM_ANCHORS = 4


def anchor_configs(bank: SlimmableBank, n_random: int = RANDOM_ANCHORS, seed: int = 1234) -> list[tuple[float, ...]]:
    """Whole configs timed to calibrate the block sum: every uniform width plus `n_random` seeded random ones."""
    gen = torch.Generator().manual_seed(seed)
    configs = uniform_configs(bank) + [bank.sample_config(gen) for _ in range(n_random)]
    return list(dict.fromkeys(configs))


def profile_bank(
    bank: SlimmableBank,
    recipe: Recipe,
    input_shape: tuple[int, int, int, int],
    timing: Timing,
    out: Path,
    show_progress: bool = True,
    n_random_anchors: int = RANDOM_ANCHORS,
) -> LatencyLUT:
    """Time each distinct block of `bank` (exported and quantized with `recipe`, one process each), save the LUT.

    The fixed per-call overhead is timed on a one-op model (ReLU of the input) with the same settings; the anchor
    configs are then timed whole and the block sum is calibrated on them (`LatencyLUT.calibration`).

    Returns:
        The table, also written atomically to `out`.
    """
    blocks = distinct_blocks(bank, input_shape)
    anchors = anchor_configs(bank, n_random_anchors)
    measured: dict[str, dict[str, float]] = {}
    label = f"profile {recipe.target} {'x'.join(map(str, input_shape))}"
    with progress(label, len(blocks) + 1 + len(anchors), show=show_progress, unit="model", transient=True) as bar:
        overhead = time_module(nn.ReLU(), input_shape, recipe.model_copy(update={"quantization": None}), timing)
        bar.advance()
        for key, block in blocks.items():
            measured[key] = time_module(block.module, block.input_shape, recipe, timing)
            bar.advance()
        lut = LatencyLUT(
            runtime=recipe.runtime,
            precision=recipe.precision,
            recipe=recipe.name,
            input=list(input_shape),
            threads=timing.threads,
            bank=bank_signature(bank),
            family=bank.family,
            timing={"runs": timing.runs, "warmup": timing.warmup, "min_time_s": timing.min_time_s},
            machine=machine_info(),
            versions=package_versions(["onnxruntime", "onnx", "torch"]),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            overhead_ms=overhead,
            blocks=measured,
        )
        predictor = LatencyPredictor(lut, bank)
        for config in anchors:
            m = time_module(materialize(plain_net(bank, config)), input_shape, recipe, timing)
            lut.anchors.append(Anchor(config=list(config), measured_ms=m, block_sum_ms=predictor.block_sum(config)))
            bar.advance()
    # One fit, on the median: tail statistics of a few anchors are too noisy to fit alone (a p90 scale of 5.6 on a
    # loaded machine), so every statistic's block sum gets the median's scale and offset.
    fit = fit_calibration([a.block_sum_ms["p50"] for a in lut.anchors], [a.measured_ms["p50"] for a in lut.anchors])
    lut.calibration = dict.fromkeys(overhead, fit)
    lut.save(out)
    return lut
