"""The `timm` student family: a pretrained timm inverted-residual net as an elastic-width bank."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_models import randomize_bn  # the same BN randomisation as the scratch families' parity tests
from torch import nn

from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.models import SlimmableBank, bank_cost, build_bank, extract, load_bank, recalibrate_bn, save_bank
from edgedistill.models.timm_adapters.inverted_residual import reorder_block
from edgedistill.models.timm_student import read_pretrained
from edgedistill.task import StudentConfig

LITE0 = "tf_efficientnet_lite0"
PACKAGED = "packaged:efficientnet_lite0"
X = (2, 3, 64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


def _timm(name: str, **kwargs) -> nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def _x(seed: int = 1, shape: tuple[int, ...] = X) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _saved(tmp_path: Path, name: str, suffix: str = ".safetensors") -> tuple[nn.Module, Path]:
    """A randomly initialised timm model (non-trivial BN) and its state dict saved under tmp_path."""
    model = _timm(name)
    randomize_bn(model)
    path = tmp_path / f"{name}{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    return model, path


@pytest.fixture(scope="module")
def lite0() -> SlimmableBank:
    return build_bank("timm", 1000, 3, model=LITE0, weights=PACKAGED).eval()


# ---- full width is the pretrained model ----------------------------------------------------------


def test_packaged_lite0_full_width_equals_timm(lite0: SlimmableBank) -> None:
    ref = _timm(LITE0)
    ref.load_state_dict(read_pretrained(PACKAGED, LITE0))
    x = _x()
    lite0.set_config(lite0.largest_config())
    with torch.no_grad():
        assert (lite0(x) - ref(x)).abs().max().item() <= 1e-4
    assert lite0.num_stages == 6 and lite0.feature_dim() == 1280


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_mobilenetv2_from_file_full_width_and_new_head(tmp_path: Path, suffix: str) -> None:
    ref, path = _saved(tmp_path, "mobilenetv2_100", suffix)
    x = _x(2)
    same = build_bank("timm", 1000, 3, model="mobilenetv2_100", weights=str(path)).eval()
    new = build_bank("timm", 5, 3, model="mobilenetv2_100", weights=str(path)).eval()
    with torch.no_grad():
        assert (same(x) - ref(x)).abs().max().item() <= 1e-4
        feats = ref.forward_head(ref.forward_features(x), pre_logits=True)
        assert (new.forward_features(x) - feats).abs().max().item() <= 1e-4
        assert new(x).shape == (2, 5)
    assert torch.equal(new.net.conv_stem.weight, ref.conv_stem.weight)  # pretrained layers keep their weights


def test_squeeze_excite_model_full_width_and_extract(tmp_path: Path) -> None:
    ref, path = _saved(tmp_path, "efficientnet_b0")
    bank = build_bank("timm", 1000, 3, model="efficientnet_b0", weights=str(path)).eval()
    x = _x(3)
    with torch.no_grad():
        assert (bank(x) - ref(x)).abs().max().item() <= 1e-4
        config = bank.sample_config(torch.Generator().manual_seed(0))
        bank.set_config(config)
        assert (extract(bank, config)(x) - bank(x)).abs().max().item() < 1e-5


def test_grayscale_input_adapts_the_stem(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, "mobilenetv2_100")
    bank = build_bank("timm", 10, 1, model="mobilenetv2_100", weights=str(path)).eval()
    with torch.no_grad():
        assert bank(_x(shape=(2, 1, 64, 64))).shape == (2, 10)


# ---- importance ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LITE0, "efficientnet_b0"])
def test_reorder_is_function_preserving(name: str) -> None:
    from timm.models._efficientnet_blocks import InvertedResidual

    model = _timm(name)
    randomize_bn(model)
    permuted = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    for i, block in enumerate(b for b in permuted.modules() if isinstance(b, InvertedResidual)):
        mid = block.conv_pw.out_channels
        perm = reorder_block(block, None if i % 2 else torch.randperm(mid, generator=g))
        assert sorted(perm.tolist()) == list(range(mid))
    x = _x(4)
    with torch.no_grad():
        assert (permuted(x) - model(x)).abs().max().item() <= 1e-4


def test_bank_keeps_most_important_channels_first(lite0: SlimmableBank) -> None:
    block = lite0.net.blocks[3][1]
    importance = block.conv_pwl.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


# ---- narrower widths, extract, cost, serialization ------------------------------------------------------


def test_narrow_widths_extract_and_cost(lite0: SlimmableBank) -> None:
    x = _x(5)
    macs = []
    configs = [lite0.largest_config(), (0.75,) * 6, (0.5,) * 6, lite0.smallest_config()]
    for config in [*configs, lite0.sample_config(torch.Generator().manual_seed(1))]:
        lite0.set_config(config)
        with torch.no_grad():
            net = extract(lite0, config)
            assert not net.slim and (net(x) - lite0(x)).abs().max().item() < 1e-5, config
        macs.append(bank_cost(lite0, config, (1, 3, 64, 64)).macs)
    assert macs[:4] == sorted(macs[:4], reverse=True) and len(set(macs[:4])) == 4
    lite0.set_config(lite0.largest_config())


def test_extracted_subnet_onnx_parity(lite0: SlimmableBank, tmp_path: Path) -> None:
    import onnxruntime as ort

    import edgedistill as ed

    config = (0.5, 0.25, 1.0, 0.75, 0.5, 0.25)
    net = extract(lite0, config)
    path = ed.export_onnx(net, tmp_path / "model.onnx", (1, 3, 64, 64))
    x = _x(6)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(x).numpy()).max() < 1e-3


def test_save_load_needs_no_weights_file(tmp_path: Path) -> None:
    ref, path = _saved(tmp_path, "mobilenetv2_100")
    bank = build_bank("timm", 7, 3, model="mobilenetv2_100", weights=str(path), switchable_bn=True, tri_head=True)
    bank.eval()
    assert "weights" not in bank.spec()
    out = save_bank(bank, tmp_path / "bank.safetensors")
    path.unlink()
    loaded = load_bank(out)
    x = _x(7)
    for config in (loaded.largest_config(), loaded.smallest_config(), (1.0, 0.5, 0.25, 1.0, 0.75, 0.5)):
        bank.set_config(config)
        loaded.set_config(config)
        with torch.no_grad():
            assert torch.allclose(loaded(x), bank(x), atol=1e-6)
            assert (extract(loaded, config)(x) - loaded(x)).abs().max().item() < 1e-5


def test_recalibrate_bn_at_a_narrow_config(lite0: SlimmableBank) -> None:
    bank = copy.deepcopy(lite0)
    recalibrate_bn(bank, [_x(8)], config=bank.smallest_config())
    with torch.no_grad():
        assert torch.isfinite(bank(_x(9))).all()


# ---- task options and errors ----------------------------------------------------------------------


def test_task_student_options_build_the_bank() -> None:
    s = StudentConfig.model_validate({"family": "timm", "options": {"model": "mobilenetv2_100"}})
    bank = build_bank(s.family, 3, 3, width_choices=tuple(s.width_choices), divisor=s.divisor, **s.options)
    assert bank.family == "timm" and bank.spec()["model"] == "mobilenetv2_100"


def test_task_weights_path_is_relative_to_the_task_file(tmp_path: Path) -> None:
    from edgedistill.pipeline.train import _absolute_root
    from edgedistill.task import load_task

    text = """name: t
data: {source: mnist}
student: {family: timm, options: {model: mobilenetv2_100, weights: w/mnv2.safetensors}}
"""
    (tmp_path / "task.yaml").write_text(text)
    cfg, base = _absolute_root(*load_task(tmp_path / "task.yaml"))
    assert cfg.student.options["weights"] == str((tmp_path / "w" / "mnv2.safetensors").resolve())
    packaged = cfg.student.model_copy(update={"options": {"weights": PACKAGED}})
    kept, _ = _absolute_root(cfg.model_copy(update={"student": packaged}), base)
    assert kept.student.options["weights"] == PACKAGED


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"model": "tf_efficientnet_lite9"}, ConfigError, "student.options.model: unknown timm model"),
        ({"model": "convnext_atto"}, ConfigError, "student.options.model: 'convnext_atto' is a ConvNeXt; supported"),
        ({"model": "resnext50_32x4d"}, ConfigError, "student.options.model: 'resnext50_32x4d' has grouped convs"),
        ({"model": LITE0, "weights": "nope/missing.safetensors"}, CheckpointError, "student.options.weights: .*"),
        ({"model": LITE0, "weights": "packaged:efficientnet_b7"}, ConfigError, "unknown packaged weights"),
        ({"model": "mobilenetv2_100", "weights": PACKAGED}, ConfigError, "holds 'tf_efficientnet_lite0' weights"),
    ],
)
def test_bad_options_fail_in_one_line(options: dict[str, str], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as e:
        build_bank("timm", 10, 3, **options)
    assert "\n" not in str(e.value)


def test_mismatched_or_unreadable_weights_fail_in_one_line(tmp_path: Path) -> None:
    _, path = _saved(tmp_path, "mobilenetv2_100")
    with pytest.raises(
        CheckpointError, match="student.options.weights: .* does not fit timm 'tf_efficientnet_lite0'"
    ) as e:
        build_bank("timm", 10, 3, model=LITE0, weights=str(path))
    assert "\n" not in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="student.options.weights: ") as e:
        build_bank("timm", 10, 3, model=LITE0, weights=str(junk))
    assert "\n" not in str(e.value)


# ---- real pretrained weights on real images -------------------------------------------------------------


def test_packaged_lite0_bank_top1_on_imagenet_samples(lite0: SlimmableBank) -> None:
    from PIL import Image

    from edgedistill.data.packages import pkg_dir
    from edgedistill.teachers.sources import load_teacher

    files = sorted((pkg_dir("foolbox") / "data").glob("imagenet_*.jpg"))
    assert len(files) == 20
    teacher = load_teacher(PACKAGED)
    lite0.set_config(lite0.largest_config())
    images = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy()) for f in files]
    x = torch.cat([teacher.input(img[None]) for img in images])
    labels = torch.tensor([int(f.stem.split("_")[-1]) for f in files])
    with torch.no_grad():
        bank_top1 = lite0(x).argmax(1)
    teacher_top1 = torch.stack([teacher.predict(img[None])[1].argmax(1)[0] for img in images])
    assert torch.equal(bank_top1, teacher_top1)
    assert int((bank_top1 == labels).sum()) >= 18  # 18/20, as the timm Lite0 itself


def _imagenet_samples() -> torch.Tensor:
    from PIL import Image

    from edgedistill.data.packages import pkg_dir
    from edgedistill.teachers.sources import load_teacher

    teacher = load_teacher(PACKAGED)  # its input pipeline: bicubic 256, centre crop 224, mean = std = 0.5
    files = sorted((pkg_dir("foolbox") / "data").glob("imagenet_*.jpg"))
    images = [torch.from_numpy(np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy()) for f in files]
    return torch.cat([teacher.input(img[None]) for img in images])


def _agreement_per_width(bank: SlimmableBank, x: torch.Tensor) -> dict[float, float]:
    """Top-1 agreement (%) of each narrower uniform width with the full net, BN recalibrated per width on `x`."""
    with torch.no_grad():
        bank.set_config(bank.largest_config())
        full = bank.eval()(x).argmax(1)
        out = {}
        for w in bank.width_choices[:-1]:
            recalibrate_bn(bank, [x], config=(w,) * bank.num_stages)
            out[w] = float((bank.eval()(x).argmax(1) == full).float().mean()) * 100
    return out


def test_importance_order_keeps_narrow_widths_closer_to_the_full_net(lite0: SlimmableBank) -> None:
    # Before any training: only BN is re-estimated per width (on the 20 samples themselves, no labels used).
    x = _imagenet_samples()
    sorted_ = _agreement_per_width(copy.deepcopy(lite0), x)
    unsorted = _agreement_per_width(
        build_bank("timm", 1000, 3, model=LITE0, weights=PACKAGED, importance_order=False).eval(), x
    )
    print(f"agreement with the full net, sorted {sorted_}, unsorted {unsorted}")  # -s shows the measured values
    assert sum(sorted_.values()) >= sum(unsorted.values())
    assert sorted_[0.75] >= unsorted[0.75] and sorted_[0.75] > 0
