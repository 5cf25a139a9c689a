"""Latency lookup table: per-block latency of one bank on one runtime/precision/input/threads, and its predictor.

The predictor sums the blocks of a config. Every block was timed as its own model, so each carries the runtime's
fixed per-call cost once; that cost (`overhead_ms`, timed on a one-op model) is removed per block and added back
once for the whole net. Block models also pay costs a whole net does not (their own input quantization and output
dequantization, cold caches between models), so `profile` measures a few whole configs (`anchors`) and fits
`measured ≈ scale · sum + offset` on their medians (`calibration`, applied to every statistic).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from edgedistill.config import StrictModel, format_validation_error, read_json
from edgedistill.errors import ConfigError
from edgedistill.io import atomic_write_json
from edgedistill.models import SlimmableBank
from edgedistill.options import command
from edgedistill.search.blocks import BlockKeys

LUT_FORMAT = "edgedistill-latency-lut/1"
Stats = dict[str, float]


def bank_signature(bank: SlimmableBank) -> str:
    """sha256 of the bank's architecture spec (not its weights: latency does not depend on them)."""
    return hashlib.sha256(json.dumps(bank.spec(), sort_keys=True).encode()).hexdigest()


def lut_name(runtime: str, precision: str, input_shape: Sequence[int], threads: int) -> str:
    """File name of a LUT: `onnxruntime-int8-1x1x28x28-t1.json`."""
    return f"{runtime}-{precision}-{'x'.join(str(d) for d in input_shape)}-t{threads}.json"


class Anchor(StrictModel):
    """A whole config timed during profiling, against the table's block sum for it."""

    config: list[float]
    measured_ms: Stats
    block_sum_ms: Stats


class LatencyLUT(StrictModel):
    """A latency lookup table (JSON on disk)."""

    format: str = LUT_FORMAT
    runtime: str
    precision: str
    recipe: str
    input: list[int]
    threads: int
    bank: str
    family: str
    timing: dict[str, float]
    machine: dict[str, object]
    versions: dict[str, str]
    created: str
    overhead_ms: Stats
    blocks: dict[str, Stats]
    anchors: list[Anchor] = []
    calibration: dict[str, tuple[float, float]] = {}

    def save(self, path: str | Path) -> Path:
        """Write atomically."""
        return atomic_write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: str | Path) -> LatencyLUT:
        """Read and validate a LUT file.

        Raises:
            ConfigError: Missing, unreadable or malformed file, or another format version.
        """
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: latency table not found; run `{command('profile')}` first")
        data = read_json(p)  # not JSON, duplicate keys, non-finite numbers: one line naming the file
        if not isinstance(data, dict) or data.get("format") != LUT_FORMAT:
            raise ConfigError(f"{p}: not a {LUT_FORMAT} latency table")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(str(p), e)) from None

    def check_bank(self, bank: SlimmableBank, source: str = "latency table") -> None:
        """Raise ConfigError when the table was profiled for another bank architecture."""
        if self.bank != bank_signature(bank):
            raise ConfigError(f"{source}: profiled for another {self.family} bank; re-run `{command('profile')}`")


class LatencyPredictor:
    """Predicted latency statistics of any config of `bank` from a LUT."""

    def __init__(self, lut: LatencyLUT, bank: SlimmableBank) -> None:
        lut.check_bank(bank)
        self.lut = lut
        self._keys = BlockKeys(bank, (lut.input[0], lut.input[1], lut.input[2], lut.input[3]))

    def block_sum(self, config: Sequence[float]) -> Stats:
        """Sum of the config's block latencies, per-call overhead counted once (before calibration).

        Raises:
            ConfigError: A block shape the table does not hold (profiled for other width choices).
        """
        keys = self._keys(config)
        missing = [k for k in keys if k not in self.lut.blocks]
        if missing:
            raise ConfigError(f"latency table has no block {json.loads(missing[0])['kind']} of this shape; re-profile")
        o = self.lut.overhead_ms
        return {s: o[s] + sum(self.lut.blocks[k][s] - o[s] for k in keys) for s in o}

    def __call__(self, config: Sequence[float]) -> Stats:
        """Predicted p50/p90/p99/mean in ms (calibrated on the anchors when the table has a calibration)."""
        raw = self.block_sum(config)
        cal = self.lut.calibration
        return {s: cal[s][0] * v + cal[s][1] if s in cal else v for s, v in raw.items()}


def fit_calibration(predicted: Sequence[float], measured: Sequence[float]) -> tuple[float, float]:
    """Least-squares `measured ≈ scale · predicted + offset`; scale only when the predictions do not vary."""
    n = len(predicted)
    mx, my = sum(predicted) / n, sum(measured) / n
    var = sum((x - mx) ** 2 for x in predicted)
    if n < 2 or var <= 1e-12 * max(1.0, mx * mx):
        return (my / mx if mx > 0 else 1.0), 0.0
    scale = sum((x - mx) * (y - my) for x, y in zip(predicted, measured, strict=True)) / var
    if scale <= 0:  # noise larger than the spread: keep the sum's shape, fix only its level
        return my / mx, 0.0
    return scale, my - scale * mx
