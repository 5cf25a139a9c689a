"""Why post-training INT8 collapses on pretrained EfficientNet-Lite0 subnets trained on upsampled digits.

No training: the packaged ImageNet Lite0 (its 1000-class head) at full width on MNIST upsampled to 64x64 RGB, the
budget `budgets/x86-2core-onnxruntime-64.yaml`, ONNX Runtime INT8 with the shipped recipe (`onnxruntime-int8
.yaml`, 300 calibration images from the unlabeled pool). Per BN state, the top-1 agreement of INT8 with FP32 on 1,000
MNIST test images, and how fragile FP32 itself is: the share of its predictions that flip under gray input noise of
0.1% and 1% of the input's std. States:

- `imagenet-bn`: the ImageNet BN statistics;
- `digits-bn`: BN recalibrated on 500 unlabeled MNIST images (what `train` does for every width);
- `digits-bn-gray-stem`: the same, with the stem folded over its RGB inputs (`export/gray_input.py`, as export does).

    python bench/int8_pretrained_digits.py [--out bench/results/int8_pretrained_digits]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedistill.budget import load_budget
from edgedistill.data import DataConfig, build_task_data
from edgedistill.export.accuracy import onnx_predictor
from edgedistill.export.gray_input import fold_gray_stem
from edgedistill.export.onnx2ort_int8 import quantize_onnxruntime
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.inputs import calibration_batches, pool_images, preprocess_for
from edgedistill.models import build_bank, extract, recalibrate_bn
from edgedistill.recipe import builtin_recipe

REPO = Path(__file__).resolve().parents[1]
BUDGET = REPO / "budgets" / "x86-2core-onnxruntime-64.yaml"


def flips(net: torch.nn.Module, x: torch.Tensor, rel: float) -> float:
    """% of FP32 predictions that change under gray (channel-identical) Gaussian noise of `rel` × the input's std."""
    g = torch.Generator().manual_seed(0)
    noise = rel * float(x.std()) * torch.randn(x.shape[0], 1, *x.shape[2:], generator=g)
    with torch.no_grad():
        return 100.0 * float((net(x + noise).argmax(1) != net(x).argmax(1)).float().mean())


def measure(net: torch.nn.Module, x: np.ndarray, calib: np.ndarray, tmp: Path, name: str) -> dict[str, float]:
    resolved = load_budget(BUDGET)
    fp32 = torch_to_onnx(net.eval(), resolved.budget.input.shape, tmp / f"{name}.onnx")
    assert resolved.recipe.quantization is not None
    int8 = quantize_onnxruntime(fp32, tmp / f"{name}-int8.onnx", calib, resolved.recipe.quantization)
    ref, got = onnx_predictor(fp32)(x).argmax(1), onnx_predictor(int8)(x).argmax(1)
    xt = torch.from_numpy(x)
    return {
        "int8_agreement_pct": round(100.0 * float(np.mean(ref == got)), 1),
        "fp32_flips_noise_0.1pct": round(flips(net, xt, 1e-3), 1),
        "fp32_flips_noise_1pct": round(flips(net, xt, 1e-2), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_pretrained_digits")
    args = ap.parse_args()
    torch.manual_seed(0)
    data = build_task_data(DataConfig(source="mnist", labels_per_class=10, unlabeled=2000, test=1000, seed=0))
    pre = preprocess_for(load_budget(BUDGET), data)
    x = pre(torch.from_numpy(data.test.images)).numpy()
    calib = pool_images(data, pre, 300, 0).numpy()
    lite0 = {"model": "tf_efficientnet_lite0", "weights": "packaged:efficientnet_lite0"}
    bank = build_bank("timm", 1000, 3, **lite0)
    full = bank.largest_config()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["imagenet-bn"] = measure(extract(bank, full), x, calib, Path(tmp), "imagenet")
        recalibrate_bn(bank, calibration_batches(data, pre, 500, torch.device("cpu")), config=full)
        rows["digits-bn"] = measure(extract(bank, full), x, calib, Path(tmp), "digits")
        folded = extract(bank, full)
        fold_gray_stem(folded)
        rows["digits-bn-gray-stem"] = measure(folded, x, calib, Path(tmp), "folded")
    command = "python bench/int8_pretrained_digits.py " + " ".join(sys.argv[1:])
    record = {
        "command": command.strip(),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "recipe": builtin_recipe("onnxruntime-int8").model_dump(mode="json"),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    md = ["# INT8 of the pretrained Lite0 on upsampled digits (no training)", "", f"Command: `{command.strip()}`", "",
          "| BN statistics | INT8 agreement with FP32 % | FP32 flips, gray noise 0.1% | FP32 flips, gray noise 1% |",
          "|---|---|---|---|"]  # fmt: skip
    md += [f"| {k} | {' | '.join(str(v) for v in r.values())} |" for k, r in rows.items()]
    args.out.with_suffix(".md").write_text("\n".join([*md, ""]))
    print("\n".join(md))


if __name__ == "__main__":
    main()
