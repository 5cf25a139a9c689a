"""Does INT8 pay on this CPU? The 224-px EfficientNet-Lite0 student's INT8 artifacts against its best FP32 runtime.

Models: subnets of the pretrained EfficientNet-Lite0 bank (family `timm`, the packaged ImageNet weights, 1000
classes): the 224-px flagship's chosen config and full width. Latency does not need a trained net; a subnet's BN
statistics are re-estimated on the ImageNet calibration images (full width keeps the pretrained ones).

Artifacts, all from the same FP32 ONNX and the same calibration images (300 seeded random crops of foolbox's 20
ImageNet JPEGs):
- `onnxruntime-fp32`, `openvino-fp32` (f32 inference precision): the FP32 references;
- `onnxruntime-int8`, `openvino-int8`: edgedistill's recipes (shipped `onnxruntime-int8`, `openvino-int8`);
- anchors, what a user would do by hand: `quantize_static` at its defaults (timed in ONNX Runtime) and
  `nncf.quantize` at its defaults on the OpenVINO model (timed in OpenVINO);
- variants of the recipes, to find the settings that pay on this instruction set: ONNX Runtime with int8
  activations and full-range weights (`-s8s8`), with the depthwise convolutions left in float (`-float-dw`), with only
  Conv/Gemm/MatMul quantized and every element-wise op in float (`-convs-only`); OpenVINO with symmetric int8
  activations (`-symmetric`, NNCF's PERFORMANCE preset, which `nncf.quantize` uses by default).

Every artifact is timed by the torch-free runner in its own process (batch 1, real images), at each thread count, in
interleaved rounds; the row is the round with the median p50. Accuracy: top-1 agreement with the FP32 ONNX model on
the 20 centre crops and their flips (the untrained subnet has no task labels), and ImageNet top-1 of full width.

Usage (nothing else on the cores):
    python bench/int8_latency.py --build               # artifacts into runs/int8-latency/ (about 5 minutes)
    python bench/int8_latency.py --threads 2 1         # time them: bench/results/latency-<ISA>.{md,json}
    python bench/int8_latency.py --score               # score the built artifacts again (updates the results)
    python bench/int8_latency.py --artifacts openvino-fp32 openvino-int8 nncf-defaults --rounds 5 --tag openvino
                                                       # a subset, more rounds: latency-<ISA>-openvino.{md,json}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from latency_models import IMAGENET_MEAN, IMAGENET_STD, _normalise, imagenet_samples  # bench/, next to this file

import edgedistill as ed
from edgedistill.bench.machine import machine_info, package_versions
from edgedistill.models import count_cost, recalibrate_bn
from edgedistill.pipeline.bench_widths import write_bench_manifest
from edgedistill.recipe import resolve_recipe

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "runs" / "int8-latency"
MODELS = {
    "lite0-224-flagship": [0.5, 0.5, 0.25, 1.0, 0.5, 0.5],  # bench/results/flagship_224: the ORT budget's choice
    "lite0-224-w1": [1.0] * 6,
}
SHAPE = (1, 3, 224, 224)
PRE = {"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "channels": 3}
CALIBRATION = 300
Builder = Callable[[Path, Path, np.ndarray], Path]


def calibration_images(n: int = CALIBRATION, seed: int = 0) -> np.ndarray:
    """`n` seeded random resized crops (scale 0.35-1, flips) of foolbox's ImageNet JPEGs, normalised NCHW."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps foolbox==3.3.4"
    paths = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = Image.open(paths[i % len(paths)]).convert("RGB")
        side = int(min(img.size) * np.sqrt(rng.uniform(0.35, 1.0)))
        left, top = rng.integers(0, img.width - side + 1), rng.integers(0, img.height - side + 1)
        crop = img.crop((left, top, left + side, top + side)).resize(SHAPE[2:], Image.BILINEAR)
        arr = np.asarray(crop, dtype=np.uint8)
        out.append(arr[:, ::-1] if rng.random() < 0.5 else arr)
    return _normalise(np.stack(out).transpose(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)


def eval_images() -> tuple[np.ndarray, np.ndarray]:
    """The 20 centre crops and their flips (normalised NCHW), and the 20 ImageNet labels (from the file names)."""
    import importlib.util

    raw = imagenet_samples()
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations
    names = sorted((Path(spec.submodule_search_locations[0]) / "data").glob("imagenet_*.jpg"))
    labels = np.array([int(p.stem.rsplit("_", 1)[1]) for p in names])
    x = _normalise(np.concatenate([raw, raw[:, :, ::-1]]).transpose(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
    return x, labels


def subnet(config: list[float], calib: np.ndarray) -> Any:
    """The Lite0 bank's plain subnet at `config` (BN re-estimated on `calib` unless full width)."""
    import torch

    bank = ed.build_bank("timm", num_classes=1000, in_channels=3, weights="packaged:efficientnet_lite0")
    if any(w != 1.0 for w in config):
        batches = [torch.from_numpy(calib[i : i + 20]) for i in range(0, len(calib), 20)]
        recalibrate_bn(bank, batches, config)
    return ed.extract(bank, config).eval()


def _qs_default(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    """`onnxruntime.quantization.quantize_static` with every default (QDQ, s8 activations and weights, MinMax)."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter([{"input": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    out.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32), str(out / "model.onnx"), Reader())
    return out / "model.onnx"


def _nncf_default(fp32: Path, out: Path, calib: np.ndarray) -> Path:
    """`nncf.quantize` with every default on the OpenVINO model converted from the FP32 ONNX; saved as IR."""
    import nncf
    import openvino as ov

    model = nncf.quantize(ov.convert_model(str(fp32)), nncf.Dataset([calib[i : i + 1] for i in range(len(calib))]))
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out / "model.xml"))
    return out / "model.xml"


def _recipe(name: str, **quantization: Any) -> Callable[[Path, Path, np.ndarray], Path]:
    """A shipped recipe by name, with `quantization` settings changed (a variant)."""

    def make(fp32: Path, out: Path, calib: np.ndarray) -> Path:
        recipe = resolve_recipe(name)
        if quantization:
            assert recipe.quantization is not None
            recipe = recipe.model_copy(update={"quantization": recipe.quantization.model_copy(update=quantization)})
        return ed.quantize(fp32, recipe, calib, out)

    return make


def depthwise_convs(onnx_path: Path) -> list[str]:
    """Names of the grouped convolutions with one input channel per group (depthwise) of a model."""
    import onnx

    model = onnx.load(str(onnx_path))
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv"
        and any(a.name == "group" and a.i > 1 for a in n.attribute)
        and shapes.get(n.input[1], [0, 0])[1] == 1
    ]


def _ort_variant(*, skip_depthwise: bool = False, op_types: list[str] | None = None) -> Builder:
    """The shipped `onnxruntime-int8` settings with depthwise convs in float, or only `op_types` quantized."""

    def make(fp32: Path, out: Path, calib: np.ndarray) -> Path:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        from edgedistill.export.onnx2ort_int8 import preprocess_onnx

        out.mkdir(parents=True, exist_ok=True)
        pre = preprocess_onnx(fp32, out / "pre.onnx")

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self.items = iter([{"input": calib[i : i + 30]} for i in range(0, len(calib), 30)])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        quantize_static(
            str(pre), str(out / "model.onnx"), Reader(), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
            nodes_to_exclude=depthwise_convs(pre) if skip_depthwise else None, op_types_to_quantize=op_types,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )  # fmt: skip
        (out / "pre.onnx").unlink()
        return out / "model.onnx"

    return make


# artifact → (runtime, precision, builder(fp32 onnx, folder, calibration) → model file, role)
ARTIFACTS: dict[str, tuple[str, str, Builder, str]] = {
    "onnxruntime-fp32": ("onnxruntime", "fp32", _recipe("onnx-fp32"), "FP32"),
    "openvino-fp32": ("openvino", "fp32", _recipe("openvino-fp32"), "FP32"),
    "onnxruntime-int8": ("onnxruntime", "int8", _recipe("onnxruntime-int8"), "edgedistill"),
    "openvino-int8": ("openvino", "int8", _recipe("openvino-int8"), "edgedistill"),
    "quantize_static-defaults": ("onnxruntime", "int8", _qs_default, "anchor"),
    "nncf-defaults": ("openvino", "int8", _nncf_default, "anchor"),
    # variants of the recipes: which settings make INT8 pay on this ISA
    "onnxruntime-int8-s8s8": (
        "onnxruntime", "int8", _recipe("onnxruntime-int8", activations="int8", reduce_range=False), "variant",
    ),
    "onnxruntime-int8-float-dw": ("onnxruntime", "int8", _ort_variant(skip_depthwise=True), "variant"),
    "onnxruntime-int8-convs-only": (
        "onnxruntime", "int8", _ort_variant(op_types=["Conv", "Gemm", "MatMul"]), "variant",
    ),
    "openvino-int8-symmetric": (
        "openvino", "int8", _recipe("openvino-int8", activations="int8", symmetric_activations=True), "variant",
    ),
}  # fmt: skip


def build(work: Path, names: list[str]) -> None:
    """Every model's FP32 ONNX and every artifact, with bench manifests, the inputs and the scores (`score`)."""
    calib = calibration_images()
    for name in names:
        folder = work / name
        net = subnet(MODELS[name], calib)
        fp32 = ed.export_onnx(net, folder / "fp32.onnx", SHAPE)  # type: ignore[arg-type]
        cost = count_cost(net, SHAPE)  # type: ignore[arg-type]
        for art, (runtime, precision, make, _role) in ARTIFACTS.items():
            model = make(fp32, folder / art, calib)
            write_bench_manifest(folder / art, runtime, precision, model.name, [-1, *SHAPE[1:]], PRE)
            print(f"{name} {art}: built", flush=True)
        meta = {"config": MODELS[name], "macs": cost.macs, "params": cost.params}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    score(work, names)


def score(work: Path, names: list[str]) -> None:
    """Top-1 agreement of every artifact with the FP32 ONNX model on real images, into each model's meta.json."""
    x_eval, labels = eval_images()
    for name in names:
        folder = work / name
        preds = {}
        for art, (runtime, precision, _make, _role) in ARTIFACTS.items():
            model = next(p for p in (folder / art).iterdir() if p.suffix in {".onnx", ".xml"})
            preds[art] = _predict(runtime, precision, model, x_eval)
        ref = preds["onnxruntime-fp32"]
        meta = json.loads((folder / "meta.json").read_text()) | {
            "agreement_pct": {a: float((p == ref).mean() * 100) for a, p in preds.items()},
            "imagenet_top1_pct": {a: float((p[: len(labels)] == labels).mean() * 100) for a, p in preds.items()},
            "eval_images": len(x_eval),
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        np.save(folder / "inputs.npy", x_eval[:16], allow_pickle=False)
        print(f"{name}: agreement with FP32 {meta['agreement_pct']}", flush=True)


def _predict(runtime: str, precision: str, model: Path, x: np.ndarray) -> np.ndarray:
    from edgedistill.bench.runtimes import RUNTIMES, RuntimeOptions

    m = RUNTIMES.get(runtime)(model, RuntimeOptions(threads=2, precision=precision))
    # a copy per call: OpenVINO's output tensor is a view of the request's buffer, overwritten by the next call
    out = [
        np.array(m.run(x[i : i + 1])[0] if runtime == "onnxruntime" else m.run(x[i : i + 1]), copy=True)
        for i in range(len(x))
    ]
    return np.concatenate(out).reshape(len(x), -1).argmax(1)


def time_all(
    work: Path, names: list[str], threads: list[int], rounds: int, runs: int, arts: list[str]
) -> dict[str, Any]:
    """p50 etc. of every artifact at every thread count, `rounds` interleaved rounds; the median-p50 round kept."""
    out: dict[str, Any] = {}
    for name in names:
        folder = work / name
        for t in threads:
            per: dict[str, list[dict[str, Any]]] = {a: [] for a in arts}
            for _ in range(rounds):
                for art in arts:
                    lat = ed.time_artifact(
                        folder / art, threads=t, runs=runs, warmup=20, warmup_time=0.5, input=str(folder / "inputs.npy")
                    )
                    per[art].append(lat.raw)
                    print(f"{name} {art} {t}t: p50 {lat.raw['stats']['p50']:.3f} ms", flush=True)
            for art, rs in per.items():
                rs.sort(key=lambda r: r["stats"]["p50"])
                chosen = dict(rs[len(rs) // 2])
                chosen.pop("times_ms", None)
                for key in ("artifact", "input"):  # relative to the repository: the record names no machine's paths
                    if key in chosen:
                        chosen[key] = str(Path(chosen[key]).resolve().relative_to(REPO))
                chosen["round_p50s"] = [r["stats"]["p50"] for r in per[art]]
                out.setdefault(name, {}).setdefault(str(t), {})[art] = chosen
    return out


def ratios(timings: dict[str, Any]) -> dict[str, float]:
    """Per INT8 artifact: best FP32 p50 (any runtime) / its p50."""
    best = min(timings[a]["stats"]["p50"] for a, v in ARTIFACTS.items() if v[1] == "fp32" and a in timings)
    return {a: best / timings[a]["stats"]["p50"] for a, v in ARTIFACTS.items() if v[1] == "int8" and a in timings}


def markdown(rec: dict[str, Any]) -> str:
    m = rec["machine"]
    lines = [
        "# INT8 vs FP32 latency on this CPU: the 224-px EfficientNet-Lite0 student",
        "",
        f"Commands: `{rec['build_command']}` then `{rec['command']}` ({rec['created']})"
        + (f", scores from `{rec['score_command']}`" if "score_command" in rec else "")
        + ".  ",
        f"Machine: {m['cpu']}, CPU flags {', '.join(m['cpu_flags'])}, {m['usable_cores']} usable cores, "
        f"{m['platform']}; " + ", ".join(f"{k} {v}" for k, v in rec["versions"].items()) + ".  ",
        f"Timing: batch 1, real images, 20 warm-up calls + 0.5 s, ≥ {rec['runs']} timed calls and ≥ 1 s, every "
        f"timing in its own process, {rec['rounds']} interleaved rounds (the row is the round with the median p50). "
        "OpenVINO runs with INFERENCE_PRECISION_HINT=f32. Ratio = best FP32 p50 (either runtime) / the artifact's p50.",
        "",
    ]
    for name, meta in rec["models"].items():
        lines += [
            f"## {name}: widths {meta['config']}, {meta['macs'] / 1e6:.1f} M MACs, {meta['params'] / 1e6:.2f} M params",
            "",
            "| artifact | role | threads | p50 ms | p90 ms | vs best FP32 | top-1 agreement with FP32 (%) | "
            "ImageNet top-1 (20 images) | p50 per round |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t, timings in rec["timings"][name].items():
            r = ratios(timings)
            for art, res in timings.items():
                role = ARTIFACTS[art][3]
                s = res["stats"]
                ratio = f"**{r[art]:.2f}×**" if art in r else "-"
                lines.append(
                    f"| {art} | {role} | {t} | {s['p50']:.3f} | {s['p90']:.3f} | {ratio} | "
                    f"{meta['agreement_pct'][art]:.1f} | {meta['imagenet_top1_pct'][art]:.0f} | "
                    + " / ".join(f"{v:.3f}" for v in res["round_p50s"])
                    + " |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", action="store_true", help="build the artifacts (then time them in another call)")
    p.add_argument("--score", action="store_true", help="score the built artifacts again (and refresh the results)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--artifacts", nargs="+", default=list(ARTIFACTS), choices=list(ARTIFACTS), help="a subset to time")
    p.add_argument("--tag", default="", help="results file suffix for a subset: latency-<ISA>-TAG.md")
    a = p.parse_args(argv)
    if not any(ARTIFACTS[x][1] == "fp32" for x in a.artifacts):
        p.error("--artifacts: include an FP32 artifact (the ratios compare with the best FP32)")
    command = "python bench/int8_latency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if a.build:
        build(a.work, a.models)
        (a.work / "build.json").write_text(json.dumps({"command": command}) + "\n")
        return
    path = results_path(machine_info(), a.tag)
    if a.score:
        score(a.work, a.models)
        if path.is_file():
            rec = json.loads(path.read_text())
            rec["models"] |= {n: json.loads((a.work / n / "meta.json").read_text()) for n in a.models}
            rec["score_command"] = command
            write(rec)
        return
    rec = {
        "command": command,
        "build_command": json.loads((a.work / "build.json").read_text())["command"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(["onnxruntime", "openvino", "nncf", "torch", "numpy"]),
        "runs": a.runs,
        "rounds": a.rounds,
        "models": {n: json.loads((a.work / n / "meta.json").read_text()) for n in a.models},
        "tag": a.tag,
        "timings": time_all(a.work, a.models, a.threads, a.rounds, a.runs, a.artifacts),
    }
    rec["ratios"] = {n: {t: ratios(v) for t, v in per.items()} for n, per in rec["timings"].items()}
    write(rec)


def isa_tag(flags: list[str]) -> str:
    """The results' file tag for a CPU: its INT8 instruction set (`avx512-vnni`, `avx-vnni`, `avx2`, `other`)."""
    for flag, tag in (("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"), ("avx2", "avx2")):
        if flag in flags:
            return tag
    return "other"


def results_path(machine: dict[str, Any], tag: str = "") -> Path:
    """bench/results/latency-<ISA>[-TAG].json: one table per instruction set measured (and per subset timed)."""
    return RESULTS / f"latency-{isa_tag(machine.get('cpu_flags', []))}{'-' + tag if tag else ''}.json"


def write(rec: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = results_path(rec["machine"], rec.get("tag", ""))
    path.write_text(json.dumps(rec, indent=1) + "\n")
    path.with_suffix(".md").write_text(markdown(rec))
    print(path.with_suffix(".md"))


if __name__ == "__main__":
    main()
