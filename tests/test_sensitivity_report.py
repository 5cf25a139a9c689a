"""The per-layer INT8 sensitivity report: a deliberately broken layer ranks first (ONNX Runtime and TensorRT QDQ
layouts), a healthy model's layers keep a high SQNR, `--fallback auto` ranks layers by it, the manifest round-trips
(old manifests still load), the accuracy guard names the worst layers and the next step, report.md and the plot show
it, bad options fail in one line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_export import SHAPE, make_manifest, synthetic, train_tiny

import edgedistill as ed
from edgedistill.errors import ConfigError, ExportError
from edgedistill.export.job import ExportJob, finish, next_steps
from edgedistill.export.layer_report import MAX_SQNR_DB, layer_report, quantized_layers, sqnr_db
from edgedistill.export.manifest import AccuracyInfo, FallbackInfo, read_manifest, write_manifest
from edgedistill.export.mixed_precision import ort_mixed_precision
from edgedistill.export.onnx2ort_int8 import preprocess_onnx, quantize_onnxruntime
from edgedistill.export.sensitivity_schema import SensitivityReport
from edgedistill.export.torch2onnx import torch_to_onnx
from edgedistill.recipe import Quantization, Recipe
from edgedistill.report.markdown import render_markdown
from edgedistill.report.plots import sensitivity_plot


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny 3-conv net of test_export, trained 100 steps on its synthetic task (~1 s)."""
    return torch_to_onnx(train_tiny(), SHAPE, tmp_path_factory.mktemp("fp32") / "model.onnx")


def _break(src: Path, dst: Path) -> Path:
    """Blow up the second conv's weight range without changing the FP32 model: the first conv's channel 0 is made
    dead (zero weights, bias -1: always 0 after its ReLU), and the second conv's weights reading that channel are set
    to 1e4. FP32 is unchanged (0 × 1e4), but every per-channel weight scale of the second conv is 1e4/127, so INT8
    rounds all its real weights to 0."""
    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    first, second = [n for n in model.graph.node if n.op_type == "Conv"][:2]

    def edit(name: str, change: object) -> None:
        a = numpy_helper.to_array(inits[name]).copy()
        change(a)  # type: ignore[operator]
        inits[name].CopyFrom(numpy_helper.from_array(a, name))

    edit(first.input[1], lambda a: a.__setitem__(0, 0.0))
    edit(first.input[2], lambda a: a.__setitem__(0, -1.0))
    edit(second.input[1], lambda a: a.__setitem__((slice(None), 0), 1e4))
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="module")
def broken(fp32: Path) -> Path:
    return _break(fp32, fp32.parent / "broken.onnx")


CALIBRATION = synthetic(128, seed=2)[0]
IMAGES = synthetic(256, seed=5)[0]  # another draw than the calibration set, as the exporter's unlabeled images


def _report(model: Path, tmp: Path, trt: bool, top_k: int = 8) -> tuple[SensitivityReport, str]:
    """The report of `model`'s all-INT8 QDQ, and the name of the node reading the broken weights."""
    qdq = quantize_onnxruntime(model, tmp / "int8.onnx", CALIBRATION, Quantization(), for_tensorrt=trt)
    pre = preprocess_onnx(model, tmp / "pre.onnx")

    def requantize(nodes: list[str], out: Path) -> Path:
        return quantize_onnxruntime(model, out, CALIBRATION, Quantization(), nodes_to_quantize=nodes, for_tensorrt=trt)

    report = layer_report(pre, qdq, IMAGES, requantize, top_k=top_k, method="test")
    node = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"][1]  # the second conv
    return report, node


@pytest.mark.parametrize("trt", [False, True], ids=["onnxruntime", "tensorrt"])
def test_broken_layer_ranks_first(broken: Path, tmp_path: Path, trt: bool) -> None:
    report, node = _report(broken, tmp_path, trt)
    first = report.layers[0]
    assert first.node == node, [(r.node, r.local_sqnr_db, r.disagreement_pct) for r in report.layers]
    assert first.local_sqnr_db < 3.0 and first.disagreement_pct is not None and first.disagreement_pct > 30.0
    others = [r.disagreement_pct for r in report.layers[1:] if r.disagreement_pct is not None]
    assert others and max(others) < first.disagreement_pct / 4  # far apart, not a close call
    assert report.disagreement_pct > 30.0 and report.images == len(IMAGES) and report.worst(1) == [first]


@pytest.mark.parametrize("trt", [False, True], ids=["onnxruntime", "tensorrt"])
def test_healthy_model_layers_keep_a_high_sqnr(fp32: Path, tmp_path: Path, trt: bool) -> None:
    report, _ = _report(fp32, tmp_path, trt, top_k=2)
    assert len(report.layers) >= 4  # the three convs and the classifier at least
    assert all(r.sqnr_db > 25.0 and r.local_sqnr_db > 25.0 for r in report.layers), report.layers
    assert report.output_sqnr_db > 25.0 and report.disagreement_pct < 5.0
    measured = [r for r in report.layers if r.disagreement_pct is not None]
    assert len(measured) == report.top_k == 2 and all(r.disagreement_pct < 5.0 for r in measured)  # type: ignore[operator]
    assert report.layers[:2] == measured  # measured layers first, the rest "not measured"


def test_sqnr_of_an_unquantized_equivalent_is_the_cap(fp32: Path, tmp_path: Path) -> None:
    """The FP32 model against itself: nothing is quantized (no layer), and the logits' SQNR is the cap."""
    pre = preprocess_onnx(fp32, tmp_path / "pre.onnx")
    assert quantized_layers(pre, pre) == []
    report = layer_report(pre, pre, IMAGES[:16], None, method="self")
    assert report.output_sqnr_db == MAX_SQNR_DB and report.disagreement_pct == 0.0 and report.top_k == 0
    assert sqnr_db(1.0, 0.0) == MAX_SQNR_DB and sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    assert sqnr_db(0.0, 1.0) == -MAX_SQNR_DB


@pytest.mark.parametrize("trt", [False, True], ids=["onnxruntime", "tensorrt"])
def test_cached_ranges_quantize_as_a_fresh_calibration(fp32: Path, tmp_path: Path, trt: bool) -> None:
    """The single-layer and mixed models of one export re-quantize with the artifact's cached ranges: the same bytes
    as calibrating again, and the cache is what is read (another calibration set gives the cached ranges' model)."""
    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        pytest.skip("this ONNX Runtime has no calibration caches (they came after 1.20)")
    ranges = tmp_path / "ranges.json"
    q, convs = Quantization(), [n.name for n in onnx.load(str(preprocess_onnx(fp32, tmp_path / "pre.onnx"))).graph.node
                                if n.op_type == "Conv"]  # fmt: skip
    quantize_onnxruntime(fp32, tmp_path / "all.onnx", CALIBRATION, q, for_tensorrt=trt, ranges=ranges)
    assert ranges.is_file()
    for kw in ({"nodes_to_quantize": convs[1:2]}, {"nodes_to_exclude": convs[:1]}):
        fresh = quantize_onnxruntime(fp32, tmp_path / "fresh.onnx", CALIBRATION, q, for_tensorrt=trt, **kw)
        cached = quantize_onnxruntime(fp32, tmp_path / "cached.onnx", IMAGES, q, for_tensorrt=trt, ranges=ranges, **kw)
        assert cached.read_bytes() == fresh.read_bytes(), kw


def test_a_head_that_reads_its_input_shape_is_reported(tmp_path: Path) -> None:
    """A cosine head slices its weight by the input's width (`x.shape[-1]`): its Shape node reads a dequantized
    tensor and outputs int64. It is no quantized layer, and reading it as a float output failed the INT8 export of
    the universal task's students in ONNX Runtime."""
    import torch
    from torch import nn

    from edgedistill.models.slimmable import CosineLinear

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3, stride=2, padding=1), CosineLinear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1)
            return self.fc(torch.flatten(f, 1))

    torch.manual_seed(0)
    model = torch_to_onnx(Net().eval(), SHAPE, tmp_path / "model.onnx")
    qdq = quantize_onnxruntime(model, tmp_path / "int8.onnx", CALIBRATION, Quantization())
    pre = preprocess_onnx(model, tmp_path / "pre.onnx")
    assert any(n.op_type == "Shape" for n in onnx.load(str(qdq)).graph.node)
    report = layer_report(pre, qdq, IMAGES[:64], None, method="test")
    ops = {r.op_type for r in report.layers}
    assert {"Conv", "MatMul"} <= ops and "Shape" not in ops and report.output_sqnr_db > 20.0


def test_fallback_ranks_layers_by_the_report(broken: Path, tmp_path: Path) -> None:
    """`--fallback auto` keeps the report's worst layer in float first: the broken conv, whose output ONNX Runtime
    renames when it fuses Conv+Relu (the ranking before the report scored such nodes 0 and put them last). The
    drop is stubbed (0 once that conv is float): this checks the ranking and the greedy search, not the repair."""
    full = quantize_onnxruntime(broken, tmp_path / "int8.onnx", CALIBRATION, Quantization())
    second = [n for n in onnx.load(str(preprocess_onnx(broken, tmp_path / "pre.onnx"))).graph.node
              if n.op_type == "Conv"][1]  # fmt: skip
    node, weight = second.name, second.input[1]
    tried: list[bool] = []

    def drop_of(model: Path) -> float:
        graph = onnx.load(str(model)).graph
        float_weight = weight in next(n.input for n in graph.node if n.name == node)
        tried.append(float_weight)
        return 0.0 if float_weight else 50.0

    info = ort_mixed_precision(broken, full, tmp_path / "mixed.onnx", CALIBRATION, Quantization(), drop_of=drop_of,
                               max_drop=5.0, sensitivity_images=IMAGES)  # fmt: skip
    assert info.layers_in_fp == [node] and info.fixed and tried == [False, True]  # all-INT8, then the top-1 layer
    assert next(iter(info.sensitivity)) == node and info.sensitivity[node] < 3.0  # local SQNR (dB), lowest first
    assert list(info.sensitivity.values()) == sorted(info.sensitivity.values())


def _manifest(report: SensitivityReport | None, drop: float = 5.0, fallback: FallbackInfo | None = None) -> object:
    m = make_manifest()
    m.accuracy = AccuracyInfo(split="test", n=512, fp32=90.0, quantized=90.0 - drop, artifact=90.0 - drop,
                              drop_pts=drop, agreement=80.0)  # fmt: skip
    m.sensitivity, m.fallback = report, fallback
    return m


@pytest.fixture(scope="module")
def broken_report(broken: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SensitivityReport, str]:
    return _report(broken, tmp_path_factory.mktemp("broken"), trt=False, top_k=3)


def test_manifest_round_trip_and_old_manifests(
    broken_report: tuple[SensitivityReport, str], fp32: Path, tmp_path: Path
) -> None:
    report, _ = broken_report
    art = tmp_path / "art"
    art.mkdir()
    quantize_onnxruntime(fp32, art / "model.onnx", CALIBRATION, Quantization())
    write_manifest(art, _manifest(report, drop=0.5))  # type: ignore[arg-type]
    assert read_manifest(art).sensitivity == report
    data = json.loads((art / "manifest.json").read_text())
    del data["sensitivity"]  # a manifest written before the report existed
    (art / "manifest.json").write_text(json.dumps(data))
    assert read_manifest(art).sensitivity is None


def _guard(manifest: object, tmp_path: Path) -> str:
    job = cast(ExportJob, SimpleNamespace(out=tmp_path, max_drop=1.0, guard=True))
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ExportError) as e:
        finish(job, manifest)  # type: ignore[arg-type]
    return str(e.value)


def test_guard_names_the_worst_layers_and_the_next_step(
    broken_report: tuple[SensitivityReport, str], tmp_path: Path
) -> None:
    report, node = broken_report
    msg = _guard(_manifest(report), tmp_path)
    assert "\n" not in msg and "5.00 pts below FP32" in msg
    worst = msg.split("most sensitive layers: ")[1]
    assert worst.startswith(f"{node!r} (") and worst.count("local SQNR") == 3
    assert "; try fallback='auto' (bias correction, AdaRound, then the most sensitive layers in float)" in msg
    fell_back = FallbackInfo(method="m", layers_in_fp=[node], quantizable_layers=5, drop_before_pts=6.0,
                             drop_after_pts=5.0, fixed=False)  # fmt: skip
    assert "fallback='auto'" not in _guard(_manifest(report, fallback=fell_back), tmp_path)  # already tried
    assert "most sensitive layers:" not in _guard(_manifest(None), tmp_path)  # no report: the plain message


def test_next_steps_follow_the_options_the_command_takes() -> None:
    steps = next_steps(make_manifest())
    assert steps[0] == "fallback='auto' (bias correction, AdaRound, then the most sensitive layers in float)"
    import typing

    from edgedistill.export.job import Fallback

    assert len(steps) == len(set(typing.get_args(Fallback)) & {"auto", "qat"})


def test_report_markdown_and_plot(broken_report: tuple[SensitivityReport, str], tmp_path: Path) -> None:
    report, node = broken_report
    exports = [
        {"target": "onnxruntime-int8", "precision": "int8", "sensitivity": report.model_dump(mode="json")},
        {"target": "openvino-int8", "precision": "int8", "sensitivity": None},
        {"target": "onnxruntime-fp32", "precision": "fp32", "sensitivity": None},
    ]
    md = render_markdown({"run": "r", "exports": exports, "latency": []}, {})
    section = md.split("## INT8 sensitivity")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows[0].startswith(f"| `{node}` | Conv |") and len(rows) == len(report.layers)
    assert "not measured" in section and "### openvino-int8" in section and "No sensitivity report" in section
    assert "onnxruntime-fp32" not in section
    png = sensitivity_plot(exports, tmp_path / "sensitivity.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sensitivity_plot(exports[1:], tmp_path / "none.png") is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"sensitivity_images": -1}, r"^sensitivity_images: expected a whole number ≥ 0 \(0: no sensitivity report\)"),
        ({"sensitivity_top_k": 2.5}, r"^sensitivity_top_k: expected a whole number ≥ 0 \(0: SQNR only\), got 2.5$"),
    ],
)
def test_bad_options_fail_in_one_line(kw: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        ed.export(run=tmp_path / "no-run", **kw)  # checked before the run is read


def test_bad_recipe_key_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: r\nruntime: onnxruntime\nprecision: int8\nquantization: {sensitivity: {images: -5}}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"r\.yaml: quantization\.sensitivity\.images: .*greater than or equal to 0"):
        ed.load_recipe(path)
    assert Recipe(name="r", runtime="onnxruntime", precision="int8", quantization=Quantization()).quantization
    assert Quantization().sensitivity.images == 256 and Quantization().sensitivity.top_k == 8


def test_report_is_numbers_only(broken_report: tuple[SensitivityReport, str]) -> None:
    """Every SQNR is finite (capped), so manifest.json stays strict JSON."""
    report, _ = broken_report
    values = [v for r in report.layers for v in (r.sqnr_db, r.local_sqnr_db)] + [report.output_sqnr_db]
    assert all(np.isfinite(values)) and max(values) <= MAX_SQNR_DB and min(values) >= -MAX_SQNR_DB


def test_same_padding_computed_at_run_time_stays_exact(tmp_path: Path) -> None:
    """timm's "same" padding, exported with a dynamic batch, computes its pads from the input's shape (Shape → Div →
    Ceil → Sub → Clip → Concat → Pad). Quantizing that float arithmetic rounded the pads of a Lite0 subnet at 224 px
    (59 × 59 padded maps came out 58 × 58). Those nodes stay in float: the INT8 model's maps have FP32's sizes, and
    the report reads every layer's output at its FP32 shape."""
    import torch
    from timm.layers import create_conv2d
    from torch import nn

    from edgedistill.export.shape_subgraph import shape_nodes

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = create_conv2d(3, 8, 3, stride=2, padding="same")
            self.b = create_conv2d(8, 8, 3, stride=2, padding="same", depthwise=True)
            self.fc = nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = torch.relu(self.b(torch.relu(self.a(x))))
            return self.fc(f.mean((2, 3)))

    torch.manual_seed(0)
    model = torch_to_onnx(Net().eval(), (1, 3, 29, 29), tmp_path / "model.onnx")  # odd side: the pads differ per side
    pre = preprocess_onnx(model, tmp_path / "pre.onnx")
    keep = shape_nodes(onnx.load(str(pre)).graph)
    assert any("Pad" not in n and "Conv" not in n for n in keep)  # the pad arithmetic, not the data ops
    assert not any(n.endswith("/Conv") for n in keep)
    calib = np.random.default_rng(2).standard_normal((64, 3, 29, 29), dtype=np.float32)
    qdq = quantize_onnxruntime(model, tmp_path / "int8.onnx", calib, Quantization())
    read_by_q = {n.input[0] for n in onnx.load(str(qdq)).graph.node if n.op_type == "QuantizeLinear"}
    pad_math = {o for n in onnx.load(str(pre)).graph.node if n.name in keep for o in n.output}
    assert not pad_math & read_by_q  # no Q/DQ pair on the pad arithmetic
    images = np.random.default_rng(5).standard_normal((16, 3, 29, 29), dtype=np.float32)
    report = layer_report(pre, qdq, images, None, method="test")  # reads every layer: shapes must agree
    assert report.output_sqnr_db > 15.0 and {"Conv"} <= {r.op_type for r in report.layers}
