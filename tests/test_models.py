"""Tests for edgedistill.models: slimmable banks, extraction parity, BN recalibration, cost, serialization."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from edgedistill.errors import CheckpointError, DataError, RegistryError
from edgedistill.models import (
    Cost,
    SlimmableBank,
    build_bank,
    count_cost,
    extract,
    load_bank,
    load_subnet,
    recalibrate_bn,
    save_bank,
    save_subnet,
)
from edgedistill.models.cost import bank_cost
from edgedistill.models.slimmable import SlimBatchNorm2d, SlimConv2d, SlimLinear

# Small inputs keep the whole file fast on CPU.
FAMILIES = {"resnet_cifar": (2, 3, 32, 32), "mobilenet": (2, 3, 64, 64)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models gain nothing from intra-op threads


def _bank(family: str, **kwargs) -> SlimmableBank:
    torch.manual_seed(0)
    return build_bank(family, num_classes=10, in_chans=FAMILIES[family][1], **kwargs)


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN stats and affine params, so parity tests exercise the stat slicing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _configs(bank: SlimmableBank, n_random: int = 4) -> list[tuple[float, ...]]:
    g = torch.Generator().manual_seed(1234)
    return [bank.largest_config(), bank.smallest_config()] + [bank.sample_config(g) for _ in range(n_random)]


# ---- extract parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_extract_matches_bank(family: str) -> None:
    bank = _bank(family).eval()
    randomize_bn(bank)
    x = torch.randn(FAMILIES[family], generator=torch.Generator().manual_seed(1))
    for config in _configs(bank):
        bank.set_config(config)
        with torch.no_grad():
            expected, feats = bank(x), bank.forward_features(x)
            net = extract(bank, config)
            got, net_feats = net(x), net.forward_features(x)
        assert not net.training and bank.config == config
        assert feats.shape[1] == net_feats.shape[1] == bank.feature_dim(config)
        assert (got - expected).abs().max().item() < 1e-5, config
        assert torch.equal(net.forward_head(net_feats), got)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_extract_after_train_pass(family: str) -> None:
    bank = _bank(family)
    x = torch.randn(FAMILIES[family], generator=torch.Generator().manual_seed(2))
    config = bank.sample_config(torch.Generator().manual_seed(3))
    bank.set_config(config)
    bank.train()
    with torch.no_grad():
        bank(x)  # running stats now differ per channel
    bank.eval()
    with torch.no_grad():
        diff = (extract(bank, config)(x) - bank(x)).abs().max().item()
    assert diff < 1e-5


def test_extracted_net_has_real_narrow_layers() -> None:
    bank = _bank("resnet_cifar")
    net = extract(bank, bank.smallest_config())
    assert not any(isinstance(m, (SlimConv2d, SlimBatchNorm2d, SlimLinear)) for m in net.modules())
    assert net.stem[0].weight.shape == (8, 3, 3, 3)
    assert net.stages[1][0].conv2.weight.shape == (16, 16, 3, 3)
    assert net.classifier.weight.shape == (10, 32)
    assert net.stages[2][0].bn2.running_mean.shape == (32,)
    assert bank.stem[0].weight.shape == (32, 3, 3, 3)  # the bank keeps its full weights

    mbank = _bank("mobilenet")
    mnet = extract(mbank, mbank.smallest_config())
    dw = mnet.stages[1][0].conv_dw
    assert (
        dw.groups == dw.in_channels == dw.out_channels == dw.weight.shape[0] < mbank.stages[1][0].conv_dw.out_channels
    )
    spec = mnet.spec()
    assert spec["slim"] is False and spec["channels"]["stages.0"] == 8 and spec["config"] == [0.25] * 7


def test_spec_rebuilds_same_architecture() -> None:
    for family in FAMILIES:
        bank = _bank(family, divisor=4, width_choices=(0.5, 1.0))
        for model in (bank, extract(bank, bank.smallest_config())):
            rebuilt = build_bank(**json.loads(json.dumps(model.spec())))
            assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
                k: v.shape for k, v in model.state_dict().items()
            }


def test_training_step_updates_only_active_slice() -> None:
    bank = _bank("resnet_cifar").train()
    bank.set_config((0.5, 0.25, 0.25))
    x = torch.randn(FAMILIES["resnet_cifar"], generator=torch.Generator().manual_seed(5))
    bank(x).logsumexp(1).sum().backward()
    conv, fc = bank.stages[1][0].conv2.weight.grad, bank.classifier.weight.grad
    assert conv.shape == (64, 64, 3, 3) and conv[:16, :16].abs().sum() > 0
    assert conv[16:].abs().sum() == 0 and conv[:, 16:].abs().sum() == 0
    assert fc[:, :32].abs().sum() > 0 and fc[:, 32:].abs().sum() == 0


# ---- width configs -------------------------------------------------------------------------------


def test_set_config_validates() -> None:
    bank = _bank("resnet_cifar")
    with pytest.raises(ValueError, match="needs 3 values"):
        bank.set_config((1.0, 1.0))
    with pytest.raises(ValueError, match="not one of width_choices"):
        bank.set_config((1.0, 0.3, 1.0))
    with pytest.raises(ValueError, match="fixed widths"):
        extract(bank, bank.largest_config()).set_config(bank.largest_config())
    bank.set_config([0.5, 0.25, 1.0])
    assert bank.config == (0.5, 0.25, 1.0)
    assert bank.stage_channels(bank.config) == [16, 16, 128]


def test_sample_config_is_deterministic() -> None:
    bank = _bank("mobilenet")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    seq1 = [bank.sample_config(g1) for _ in range(20)]
    assert seq1 == [bank.sample_config(g2) for _ in range(20)]
    assert len(set(seq1)) > 1 and all(w in bank.width_choices for c in seq1 for w in c)
    assert len(_bank("resnet_cifar").all_configs()) == 4**3


def test_unknown_family_suggests_close_name() -> None:
    with pytest.raises(RegistryError, match="did you mean 'resnet_cifar'"):
        build_bank("resnet_cfar", num_classes=10, in_chans=3)


# ---- cost ----------------------------------------------------------------------------------------


def test_count_cost_resnet18_golden() -> None:
    torchvision = pytest.importorskip("torchvision")
    cost = count_cost(torchvision.models.resnet18(), (1, 3, 224, 224))
    assert abs(cost.macs - 1.82e9) / 1.82e9 < 0.01
    assert cost.params == 11_689_512


def test_bank_cost_shrinks_with_width() -> None:
    bank = _bank("resnet_cifar")
    big, small = (bank_cost(bank, c, (1, 3, 32, 32)) for c in (bank.largest_config(), bank.smallest_config()))
    assert isinstance(big, Cost) and big.macs > 10 * small.macs and big.params > 10 * small.params
    assert big.params == sum(p.numel() for p in bank.parameters())
    with pytest.raises(ValueError, match="bank_cost"):
        count_cost(bank, (1, 3, 32, 32))


# ---- BN recalibration ----------------------------------------------------------------------------


def _batches(n: int, shape: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * 2 + 1 for _ in range(n)]


def _manual_stats(conv: nn.Module, batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        outs = [conv(x) for x in batches]
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for o in outs]).mean(0)
    return mean, var


def test_recalibrate_bn_recomputes_stats_and_restores_state() -> None:
    bank = _bank("resnet_cifar").eval()
    randomize_bn(bank)
    batches = _batches(3, (8, 3, 32, 32))
    recalibrate_bn(bank, batches, config=bank.largest_config())
    mean, var = _manual_stats(bank.stem[0], batches)
    bn = bank.stem[1]
    torch.testing.assert_close(bn.running_mean, mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bn.running_var, var, atol=1e-4, rtol=1e-4)
    assert not bank.training and not bn.training
    assert all(m.momentum == 0.1 for m in bank.modules() if isinstance(m, nn.BatchNorm2d))


def test_recalibrate_bn_at_small_config_and_max_images() -> None:
    bank = _bank("resnet_cifar").train()
    config = (0.5, 0.25, 0.75)
    batches = _batches(4, (8, 3, 32, 32), seed=1)
    recalibrate_bn(bank, batches, config=config, max_images=20)  # 8 + 8 + 4 images
    assert bank.training and bank.config == config
    used = [batches[0], batches[1], batches[2][:4]]
    bank.set_config(config)
    mean, var = _manual_stats(bank.stem[0], used)
    bn = bank.stem[1]
    torch.testing.assert_close(bn.running_mean[:16], mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(bn.running_var[:16], var, atol=1e-4, rtol=1e-4)
    assert torch.all(bn.running_mean[16:] == 0) and int(bn.num_batches_tracked) == 3


def test_recalibrate_bn_on_plain_net_and_errors() -> None:
    bank = _bank("mobilenet")
    net = extract(bank, bank.smallest_config())
    batches = _batches(2, (4, 3, 64, 64))
    recalibrate_bn(net, batches)
    mean, _ = _manual_stats(net.stem[0], batches)
    torch.testing.assert_close(net.stem[1].running_mean, mean, atol=1e-4, rtol=1e-4)
    assert not net.training
    with pytest.raises(ValueError, match="slimmable bank"):
        recalibrate_bn(net, batches, config=bank.smallest_config())
    with pytest.raises(DataError, match="no images"):
        recalibrate_bn(net, [])


# ---- serialization -------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_load_round_trip(family: str, tmp_path: Path) -> None:
    bank = _bank(family).eval()
    randomize_bn(bank)
    x = torch.randn(FAMILIES[family], generator=torch.Generator().manual_seed(4))
    config = bank.sample_config(torch.Generator().manual_seed(9))
    save_bank(bank, tmp_path / "bank.safetensors")
    loaded = load_bank(tmp_path / "bank.safetensors")
    assert loaded.spec() == bank.spec() and not loaded.training
    for model in (bank, loaded):
        model.set_config(config)
    with torch.no_grad():
        assert torch.equal(bank(x), loaded(x))

    net = extract(bank, config)
    save_subnet(net, tmp_path / "net.safetensors")
    net2 = load_subnet(tmp_path / "net.safetensors")
    assert net2.spec() == net.spec()
    with torch.no_grad():
        assert torch.equal(net(x), net2(x))


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    bank = _bank("resnet_cifar")
    good = save_bank(bank, tmp_path / "bank.safetensors")

    with pytest.raises(CheckpointError, match="no such file"):
        load_bank(tmp_path / "missing.safetensors")

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_bank(truncated)

    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_bank(text)

    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in bank.state_dict().items()}, str(bare))
    with pytest.raises(CheckpointError, match="metadata"):
        load_bank(bare)

    wrong = tmp_path / "wrong.safetensors"
    other = _bank("resnet_cifar", base_channels=(16, 32, 64))
    save_file(
        {k: v.contiguous() for k, v in bank.state_dict().items()}, str(wrong), {"edgedistill": json.dumps(other.spec())}
    )
    with pytest.raises(CheckpointError, match=r"wrong\.safetensors.*shape"):
        load_bank(wrong)

    with pytest.raises(CheckpointError, match="holds a bank"):
        load_subnet(good)
