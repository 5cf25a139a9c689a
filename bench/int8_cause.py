"""Where post-training INT8 of a run's subnet loses: weights or activations, which layer, how much the net amplifies.

In torch, on the run's test split, with the exporter's INT8 scheme simulated by `edgedistill.export.fake_quant`
(BN folded first, as the exporters do):

1. top-1 agreement with FP32 when everything, only the weights, or only the activations are fake-quantized;
2. per layer, the agreement when only that layer's weights are rounded (the worst layers first);
3. for the worst layer, the SQNR of its own output against the SQNR of the logits: the noise gain of the rest of
   the net;
4. the largest BatchNorm gains |γ| / sqrt(var + eps) of the subnet (recalibrated statistics of near-constant
   channels make large gains, which amplify any rounding upstream).

    python bench/int8_cause.py --run runs/groceries-64 [--recipe onnxruntime-int8] [--out bench/results/int8_cause]

Writes OUT.md and OUT.json (appending this run's section to what is there).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.bench.machine import machine_info
from edgedistill.export.bn_fold import fold_bn
from edgedistill.export.fake_quant import FakeQuantLayer, TensorFakeQuant, calibrate, prepare, scheme_for
from edgedistill.export.job import calibration_set
from edgedistill.pipeline.context import load_context
from edgedistill.recipe import builtin_recipe

REPO = Path(__file__).resolve().parents[1]


def _sqnr(ref: torch.Tensor, got: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).sum() / (got - ref).pow(2).sum().clamp_min(1e-30)))


def _switch(model: nn.Module, weights: bool, activations: bool) -> nn.Module:
    for m in model.modules():
        if isinstance(m, FakeQuantLayer):
            (m.weight_fq.enable_fake_quant if weights else m.weight_fq.disable_fake_quant)()
            (m.input_fq.enable_fake_quant if activations else m.input_fq.disable_fake_quant)()
        elif isinstance(m, TensorFakeQuant):
            (m.fq.enable_fake_quant if activations else m.fq.disable_fake_quant)()
    return model


def analyse(run: Path, recipe_name: str, images: int | None = None) -> dict[str, Any]:
    """Every figure of the report for `run`'s subnet, on its first `images` test images (all when None)."""
    torch.manual_seed(0)
    ctx = load_context(run)
    quant = builtin_recipe(recipe_name).quantization
    assert quant is not None
    calib = torch.from_numpy(calibration_set(ctx, quant.calibration.samples, False)[0])
    x = torch.from_numpy(np.concatenate([b for b, _ in ctx.test_batches()])[:images])
    folded, _ = fold_bn(copy.deepcopy(ctx.subnet).eval(), calib[:2])
    with torch.no_grad():
        ref = folded(x)
    top1 = ref.argmax(1)

    def agree(model: nn.Module) -> tuple[float, float]:
        with torch.no_grad():
            out = model(x)
        return round(100 * float((out.argmax(1) == top1).float().mean()), 2), round(_sqnr(ref, out), 2)

    with torch.no_grad():
        plain = ctx.subnet.eval()(x).argmax(1)
    spreads = []
    for m in folded.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            absmax = m.weight.detach().flatten(1).abs().amax(1)
            live = absmax[absmax > 0]
            spreads.append(float(live.max() / live.median()))
    fq = prepare(copy.deepcopy(folded), scheme_for(quant))
    calibrate(fq, calib)
    parts = {name: agree(_switch(fq, w, a)) for name, w, a in (("all", 1, 1), ("weights", 1, 0), ("activations", 0, 1))}
    _switch(fq, True, True)
    layers = []
    for name, layer in [(n, m) for n, m in fq.named_modules() if isinstance(m, FakeQuantLayer)]:
        single = copy.deepcopy(folded)
        target = single.get_submodule(name)
        with torch.no_grad():
            target.weight.copy_(layer.weight_fq(layer.layer.weight))
        a, sq = agree(single)
        layers.append({"layer": name, "agreement": a, "logits_sqnr_db": sq})
    layers.sort(key=lambda r: r["agreement"])
    worst = layers[0]["layer"]
    single = copy.deepcopy(folded)
    outs: dict[str, torch.Tensor] = {}
    for tag, model in (("fp32", folded), ("int8", single)):
        h = model.get_submodule(worst).register_forward_hook(lambda m, a, o, t=tag: outs.__setitem__(t, o.clone()))
        if tag == "int8":
            w = fq.get_submodule(worst)
            with torch.no_grad():
                model.get_submodule(worst).weight.copy_(w.weight_fq(w.layer.weight))
        with torch.no_grad():
            model(x)
        h.remove()
    gains = []
    for name, bn in ctx.subnet.named_modules():
        if isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None:
            live = bn.running_var > 1e-8
            g = bn.weight.detach().abs()[live] / (bn.running_var[live] + bn.eps).sqrt()
            var = float(bn.running_var[live].min())
            gains.append({"bn": name, "max_gain": round(float(g.max()), 2), "min_var": var})
    gains.sort(key=lambda r: -r["max_gain"])
    return {
        "run": str(run),
        "recipe": recipe_name,
        "scheme": scheme_for(quant).describe(),
        "test_images": len(x),
        "folded_agreement": round(100 * float((plain == top1).float().mean()), 2),
        "weight_spread": [round(min(spreads), 2), round(max(spreads), 2)],
        "fake_quant": {k: {"agreement": v[0], "logits_sqnr_db": v[1]} for k, v in parts.items()},
        "single_layer_weights": layers[:8],
        "worst_layer": {
            "layer": worst,
            "own_sqnr_db": round(_sqnr(outs["fp32"], outs["int8"]), 2),
            "logits_sqnr_db": layers[0]["logits_sqnr_db"],
        },  # fmt: skip
        "bn_gains": gains[:6],
    }


def markdown(r: dict[str, Any], command: str, machine: dict[str, Any]) -> list[str]:
    fq, w = r["fake_quant"], r["worst_layer"]
    lines = [f"## {r['run']} ({r['recipe']})", "", f"Command: `{command}`  ",
             f"Machine: {machine['cpu']} ({', '.join(machine['cpu_flags'])}); scheme: {r['scheme']}; "
             f"{r['test_images']} test images. BN-folded float model vs the subnet: {r['folded_agreement']}% "
             f"agreement; per-layer weight spread (largest channel / median channel, by abs max): "
             f"{r['weight_spread'][0]}–{r['weight_spread'][1]}×.", "",
             "| fake-quantized | top-1 agreement with FP32 % | logits SQNR dB |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v['agreement']} | {v['logits_sqnr_db']} |" for k, v in fq.items()]
    lines += ["", "| only this layer's weights rounded | agreement % | logits SQNR dB |", "|---|---|---|"]
    lines += [f"| `{x['layer']}` | {x['agreement']} | {x['logits_sqnr_db']} |" for x in r["single_layer_weights"]]
    lines += ["", f"Worst layer `{w['layer']}`: its own output SQNR {w['own_sqnr_db']} dB, the logits' "
              f"{w['logits_sqnr_db']} dB: the layers after it amplify its rounding by "
              f"{w['own_sqnr_db'] - w['logits_sqnr_db']:.1f} dB.", "",
              "| BatchNorm | largest gain γ/√(var+eps) | smallest running var |", "|---|---|---|"]  # fmt: skip
    lines += [f"| `{g['bn']}` | {g['max_gain']} | {g['min_var']:.2e} |" for g in r["bn_gains"]]
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--recipe", default="onnxruntime-int8")
    ap.add_argument("--images", type=int, default=None, help="test images to use (default: all)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "int8_cause")
    args = ap.parse_args()
    torch.set_num_threads(2)
    command = "python bench/int8_cause.py " + " ".join(sys.argv[1:])
    result, machine = analyse(args.run, args.recipe, args.images), machine_info()
    path = args.out.with_suffix(".json")
    old = json.loads(path.read_text())["runs"] if path.is_file() else []
    runs = [r for r in old if (r["run"], r["recipe"]) != (result["run"], result["recipe"])]
    runs.append(result | {"command": command, "machine": machine})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1))
    md = ["# Where post-training INT8 loses", "", "\n\n".join(__doc__.split("\n\n")[1:3]), ""]
    for r in runs:
        md += markdown(r, r["command"], r["machine"])
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(markdown(result, command, machine)))


if __name__ == "__main__":
    main()
