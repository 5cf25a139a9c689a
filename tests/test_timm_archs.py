"""The `timm` student on MobileNetV3-Large and ResNet-18/50 (adapters `MobileNetV3`, `ResNet`).

No pretrained weights of these ship offline, so each test saves a seeded timm model with randomised BN (the same
randomiser as the scratch families' parity tests) to a local file and builds the bank from it with `weights:`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from test_models import randomize_bn
from torch import nn

from edgedistill.errors import CheckpointError
from edgedistill.models import SlimmableBank, bank_cost, build_bank, count_cost, extract, load_bank, save_bank
from edgedistill.models.timm_adapters import TIMM_ADAPTERS
from edgedistill.models.timm_adapters.inverted_residual import reorder_block
from edgedistill.models.timm_adapters.resnet import reorder_resnet_block

ARCHS = {"mobilenetv3_large_100": 5, "resnet18": 4, "resnet50": 4}  # model -> elastic stages
X = (2, 3, 64, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


def _timm(name: str) -> nn.Module:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    randomize_bn(model)
    with torch.no_grad():  # residual branches add a fraction to the stream, as in trained ResNets (timm inits these
        for m in model.modules():  # gammas at 0); at ~1 the 16 Bottlenecks of resnet50 grow features to ~700
            last = getattr(m, "bn3", None) if hasattr(m, "conv3") else getattr(m, "bn2", None)
            if isinstance(last, nn.BatchNorm2d) and hasattr(m, "downsample"):
                last.weight.mul_(0.2)
    return model


def _x(seed: int, shape: tuple[int, ...] = X) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, Path]]:
    """Per architecture: the reference timm model and its state dict as a safetensors file."""
    out = {}
    folder = tmp_path_factory.mktemp("weights")
    for name in ARCHS:
        model = _timm(name)
        path = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        out[name] = (model, path)
    return out


@pytest.fixture(scope="module")
def banks(saved: dict[str, tuple[nn.Module, Path]]) -> dict[str, SlimmableBank]:
    """Per architecture: a 7-class bank built from the saved weights."""
    return {name: build_bank("timm", 7, 3, model=name, weights=str(path)).eval() for name, (_, path) in saved.items()}


def _feats(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)  # type: ignore[operator]


# ---- full width is the pretrained model ----------------------------------------------------------


@pytest.mark.parametrize("name", ARCHS)
def test_full_width_equals_timm(saved: dict[str, tuple[nn.Module, Path]], banks: dict[str, SlimmableBank], name: str):
    ref, path = saved[name]
    same = build_bank("timm", 1000, 3, model=name, weights=str(path)).eval()  # keeps the pretrained classifier
    new = banks[name]
    x = _x(1)
    with torch.no_grad():
        assert (same(x) - ref(x)).abs().max().item() <= 1e-4
        assert (new.forward_features(x) - _feats(ref, x)).abs().max().item() <= 1e-4
        assert new(x).shape == (2, 7)
    assert new.num_stages == same.num_stages == ARCHS[name]
    assert new.feature_dim() == ref.get_classifier().in_features


def test_adapters_are_keyed_by_timm_class() -> None:
    assert {"EfficientNet", "MobileNetV3", "ResNet"} <= set(TIMM_ADAPTERS.names())
    assert TIMM_ADAPTERS.get("ResNet").classifier == "fc"


def test_mobilenetv3_head_conv_runs_after_pooling(banks: dict[str, SlimmableBank]) -> None:
    bank = banks["mobilenetv3_large_100"]
    assert bank.net.num_features == 960 and bank.feature_dim() == 1280  # conv_head: 960 -> 1280 on pooled features
    assert bank.net.blocks[0][0].conv_pw.out_channels == 16  # the depthwise-separable first stage is not elastic


def test_grayscale_resnet_adapts_the_stem(saved: dict[str, tuple[nn.Module, Path]]) -> None:
    ref, path = saved["resnet18"]
    bank = build_bank("timm", 3, 1, model="resnet18", weights=str(path)).eval()
    assert torch.allclose(bank.net.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))
    with torch.no_grad():
        assert bank(_x(2, (2, 1, 64, 64))).shape == (2, 3)


# ---- importance ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ARCHS)
def test_reorder_is_function_preserving(name: str) -> None:
    from timm.models._efficientnet_blocks import InvertedResidual
    from timm.models.resnet import BasicBlock, Bottleneck

    model = _timm(name)
    permuted = copy.deepcopy(model)
    g = torch.Generator().manual_seed(0)
    for i, block in enumerate(
        b for b in permuted.modules() if isinstance(b, InvertedResidual | BasicBlock | Bottleneck)
    ):
        random = i % 2 == 0
        if isinstance(block, InvertedResidual):
            reorder_block(block, torch.randperm(block.conv_pw.out_channels, generator=g) if random else None)
        else:
            mids = {"conv1": block.conv1.out_channels} | (
                {"conv2": block.conv2.out_channels} if hasattr(block, "conv3") else {}
            )
            perms = {k: torch.randperm(n, generator=g) for k, n in mids.items()} if random else None
            applied = reorder_resnet_block(block, perms)
            assert all(sorted(p.tolist()) == list(range(mids[k])) for k, p in applied.items())
    assert any((p != q).any() for p, q in zip(permuted.parameters(), model.parameters(), strict=True))
    x = _x(3)
    with torch.no_grad():
        assert (permuted(x) - model(x)).abs().max().item() <= 1e-4


def test_banks_keep_most_important_channels_first(banks: dict[str, SlimmableBank]) -> None:
    def descending(importance: torch.Tensor) -> bool:
        return bool(torch.all(importance[:-1] >= importance[1:]))

    def l1(conv: nn.Conv2d) -> torch.Tensor:
        return conv.weight.detach().abs().sum(dim=(0, 2, 3))

    r50, r18, mbv3 = banks["resnet50"].net, banks["resnet18"].net, banks["mobilenetv3_large_100"].net
    assert descending(l1(r50.layer2[1].conv2)) and descending(l1(r50.layer2[1].conv3))
    assert descending(l1(r18.layer3[0].conv2))
    assert descending(l1(mbv3.blocks[2][1].conv_pwl))


# ---- narrower widths, extract, cost, serialization ------------------------------------------------------


def _hook_macs(net: nn.Module, shape: tuple[int, int, int, int]) -> int:
    """Conv + linear MACs counted by hand from each layer's output size (batch 1), independent of the flop counter."""
    total = 0

    def conv(m: nn.Conv2d, _: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, _: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear) for m in net.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        net(torch.zeros(shape))
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("name", ARCHS)
def test_narrow_widths_extract_and_cost(banks: dict[str, SlimmableBank], name: str) -> None:
    bank = banks[name]
    x, shape = _x(4), (1, 3, 64, 64)
    uniform = [(w,) * bank.num_stages for w in reversed(bank.width_choices)]
    macs = []
    for config in [*uniform, bank.sample_config(torch.Generator().manual_seed(1))]:
        bank.set_config(config)
        net = extract(bank, config)
        with torch.no_grad():
            assert not net.slim and (net(x) - bank(x)).abs().max().item() <= 1e-4, config
        cost = count_cost(net, shape)
        assert cost.macs == _hook_macs(net, shape)
        assert cost.params == sum(p.numel() for p in net.parameters())
        macs.append(cost.macs)
    assert macs[: len(uniform)] == sorted(macs[: len(uniform)], reverse=True) and len(set(macs)) >= len(uniform)
    assert bank_cost(bank, config, shape) == cost
    bank.set_config(bank.largest_config())


def test_search_counts_costs_on_meta_plain_nets(banks: dict[str, SlimmableBank]) -> None:
    """`search`'s `count` cost model builds each config's plain net on `meta`; it must match the real subnet."""
    from edgedistill.search.costs import CostEstimator, CostInputs

    for name in ("mobilenetv3_large_100", "resnet50"):
        bank = banks[name]
        config = bank.sample_config(torch.Generator().manual_seed(3))
        costs = CostEstimator(CostInputs(bank, (1, 3, 64, 64)))(config)
        real = bank_cost(bank, config, (1, 3, 64, 64))
        assert (costs.macs, costs.params) == (real.macs, real.params), name


def test_resnet_params_follow_the_mid_channels(banks: dict[str, SlimmableBank]) -> None:
    """Parameters of a ResNet subnet = the full net's minus what its narrower mid channels drop, by hand."""
    for name in ("resnet18", "resnet50"):
        bank = banks[name]
        full = count_cost(extract(bank, bank.largest_config()), X).params
        config = (0.25, 0.5, 0.75, 0.5)
        widths, fulls = bank.slot_channels(config), bank.channels

        def block_params(block: nn.Module, ch: dict[str, int], prefix: str) -> int:
            if hasattr(block, "conv3"):  # conv1, bn1, conv2 (3x3), bn2, conv3
                m1, m2 = ch[f"{prefix}.conv1"], ch[f"{prefix}.conv2"]
                return block.conv1.in_channels * m1 + 2 * m1 + 9 * m1 * m2 + 2 * m2 + m2 * block.conv3.out_channels
            m = ch[f"{prefix}.conv1"]  # conv1 (3x3), bn1, conv2 (3x3)
            return 9 * block.conv1.in_channels * m + 2 * m + 9 * m * block.conv2.out_channels

        blocks = [(f"layer{s}.{i}", b) for s in range(1, 5) for i, b in enumerate(getattr(bank.net, f"layer{s}"))]
        dropped = sum(block_params(b, fulls, p) - block_params(b, widths, p) for p, b in blocks)
        assert dropped > 0 and count_cost(extract(bank, config), X).params == full - dropped, name


def test_save_load_round_trip(saved: dict[str, tuple[nn.Module, Path]], tmp_path: Path) -> None:
    for name in ("mobilenetv3_large_100", "resnet50"):
        _, weights = saved[name]
        bank = build_bank("timm", 4, 3, model=name, weights=str(weights), switchable_bn=True, tri_head=True).eval()
        loaded = load_bank(save_bank(bank, tmp_path / f"{name}.safetensors"))
        x = _x(5)
        for config in (loaded.smallest_config(), (0.5, 1.0, 0.25, 0.75, 0.5)[: bank.num_stages]):  # private, shared BN
            bank.set_config(config)
            loaded.set_config(config)
            with torch.no_grad():
                assert torch.allclose(loaded(x), bank(x), atol=1e-6)
                assert (extract(loaded, config)(x) - loaded(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "resnet18"])
def test_extracted_subnet_onnx_parity(banks: dict[str, SlimmableBank], name: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    import edgedistill as ed

    bank = banks[name]
    net = extract(bank, bank.sample_config(torch.Generator().manual_seed(2)))
    path = ed.export_onnx(net, tmp_path / "model.onnx", (1, 3, 64, 64))
    x = _x(6, (1, 3, 64, 64))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - net(x).numpy()).max() < 1e-3


# ---- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "weights_of", "match"),
    [
        ("resnet50", "resnet18", r"does not fit timm 'resnet50' \(missing \d+ tensors, e.g. 'layer1.0.bn3"),
        (
            "resnet18",
            "mobilenetv3_large_100",
            r"does not fit timm 'resnet18' \(missing \d+ tensors, e.g. 'conv1.weight'",
        ),
        ("mobilenetv3_large_100", "resnet18", "does not fit timm 'mobilenetv3_large_100'"),
    ],
)
def test_weights_of_another_architecture_fail_in_one_line(
    saved: dict[str, tuple[nn.Module, Path]], model: str, weights_of: str, match: str
) -> None:
    with pytest.raises(CheckpointError, match=f"student.options.weights: .*{match}") as e:
        build_bank("timm", 10, 3, model=model, weights=str(saved[weights_of][1]))
    assert "\n" not in str(e.value)


def test_mis_shaped_weights_name_the_tensor(saved: dict[str, tuple[nn.Module, Path]], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(saved["resnet18"][1]))
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"][:64]
    path = tmp_path / "cut.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"'layer2.0.conv1.weight' has shape \(64, 64, 3, 3\), the model expects"):
        build_bank("timm", 10, 3, model="resnet18", weights=str(path))


def test_pretrained_parameters_leave_out_a_new_classifier(saved: dict[str, tuple[nn.Module, Path]]) -> None:
    """What the trainer gives the pretrained learning rate: the timm net, without a classifier made for the task."""
    path = str(saved["resnet18"][1])
    new = build_bank("timm", 7, 3, model="resnet18", weights=path)
    kept = build_bank("timm", 1000, 3, model="resnet18", weights=path)
    fc = {id(p) for p in new.net.fc.parameters()}
    assert {id(p) for p in new.pretrained_parameters()} == {id(p) for p in new.net.parameters()} - fc
    assert len(kept.pretrained_parameters()) == len(list(kept.net.parameters()))
    assert build_bank("timm", 7, 3, model="resnet18").pretrained_parameters() == []
