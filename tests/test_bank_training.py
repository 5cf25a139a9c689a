"""Bank training (issue 5): SEED loss, OSTC tri-classifier, BN recalibration at the largest width, option grid."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.data import Preprocess, build_task_data
from edgedistill.data.config import DataConfig
from edgedistill.data.images import ImageSet, TaskData
from edgedistill.distill.bank_loss import BANK_LOSSES, CONFIDENCE, BankOutputs, ensemble, sharpen
from edgedistill.distill.config import BankConfig, TrainConfig, UdonConfig
from edgedistill.distill.distillers import DISTILLERS, StepBatch
from edgedistill.distill.domains import DOMAIN_SAMPLERS
from edgedistill.distill.losses import LOSSES
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.step import step_loss
from edgedistill.distill.trainer import distill
from edgedistill.errors import ConfigError
from edgedistill.models import SlimBatchNorm2d, build_bank, extract, load_bank, recalibrate_bn, save_bank
from edgedistill.models.slimmable import COSINE_SCALE, CosineLinear

# ---- SEED on hand-computed tensors -----------------------------------------------------------------

# One image, two classes, two sampled nets: p0 = (3/4, 1/4), p1 = (1/2, 1/2).
Z = [torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, 0.0]])]


def _kl(q: list[float], p: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(q, p, strict=True))


@pytest.mark.parametrize(
    ("weighting", "q"),
    [
        # uniform: p̄ = (5/8, 3/8); squared and renormalised (τ = 1/2): (25/34, 9/34)
        ("uniform", [25 / 34, 9 / 34]),
        # max-prob: w = (3/4, 1/2): p̄ = (13/20, 7/20) → (169/218, 49/218)
        ("max-prob", [169 / 218, 49 / 218]),
        # entropy: w1 = 1 − H(uniform)/log 2 = 0, so p̄ = p0 → (9/10, 1/10)
        ("entropy", [9 / 10, 1 / 10]),
    ],
)
def test_seed_golden_value(weighting: str, q: list[float]) -> None:
    seed = BANK_LOSSES.get("seed")(TrainConfig(bank=BankConfig(weighting=weighting, sharpen=0.5)))
    assert torch.allclose(seed.target(Z), torch.tensor([q]), atol=1e-6)
    zs = [z.clone().requires_grad_(True) for z in Z]
    terms = seed.terms(BankOutputs(adapt=zs, deployed=zs, pseudo_head=None, num_labeled=1))
    expected = [_kl(q, [0.75, 0.25]), _kl(q, [0.5, 0.5])]
    assert [round(float(t["seed"].detach()), 6) for t in terms] == [round(e, 6) for e in expected]
    sum(t["seed"] for t in terms).backward()
    # stop-gradient target: d KL(q ‖ softmax(z)) / dz = softmax(z) − q for each net separately
    for z, p in zip(zs, ([0.75, 0.25], [0.5, 0.5]), strict=True):
        assert z.grad is not None and torch.allclose(z.grad, torch.tensor([p]) - torch.tensor([q]), atol=1e-6)


def test_confidence_weights_and_sharpen() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert torch.allclose(CONFIDENCE.get("entropy")(p), torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.allclose(CONFIDENCE.get("max-prob")(p), torch.tensor([1.0, 1 / 3]))
    assert torch.allclose(CONFIDENCE.get("uniform")(p), torch.ones(2))
    uniform = torch.full((1, 3), 1 / 3)
    assert torch.allclose(ensemble([uniform, uniform], "entropy"), uniform)  # all-zero weights still average
    assert torch.allclose(sharpen(torch.tensor([[0.6, 0.4]]), 1.0), torch.tensor([[0.6, 0.4]]))
    assert sharpen(torch.tensor([[0.6, 0.4]]), 0.1)[0, 0] > 0.98


def test_inplace_is_the_ensemble_of_the_largest() -> None:
    inplace = BANK_LOSSES.get("inplace")(TrainConfig())
    zs = [z.clone().requires_grad_(True) for z in Z]
    terms = inplace.terms(BankOutputs(zs, zs, None, 1))
    assert terms[0] == {} and set(terms[1]) == {"inplace"}
    assert math.isclose(float(terms[1]["inplace"]), _kl([0.75, 0.25], [0.5, 0.5]), rel_tol=1e-6)


# ---- OSTC: which head each loss reaches --------------------------------------------------------------


class _FakeTeachers:
    """Two teachers' cached targets for an unlabeled pool of `n` images (random, deterministic)."""

    def __init__(self, n: int, classes: int = 10) -> None:
        rng = np.random.default_rng(0)
        f = [rng.standard_normal((n, d)).astype(np.float32) for d in (6, 4)]
        self.targets = TeacherTargets(
            ["a", "b"],
            [0.6, 0.4],
            [x / np.linalg.norm(x, axis=1, keepdims=True) for x in f],  # type: ignore[misc]
            [rng.standard_normal((n, classes)).astype(np.float32) for _ in range(2)],
        )


def _ostc_grads(**weights: float) -> dict[str, bool]:
    """Which heads get a non-zero gradient from one step of a tri-head bank with the given loss weights."""
    bank_w = {k: weights.pop(k) for k in ("lambda_seed", "lambda_pseudo", "pseudo_threshold") if k in weights}
    cfg = TrainConfig(bank=BankConfig(tri_head=True, **bank_w), **weights)
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16), tri_head=True)
    teachers = _FakeTeachers(6).targets
    distiller = DISTILLERS.get("distill-weighted")(cfg, teachers, bank.feature_dim(bank.largest_config()))
    loss_fn = BANK_LOSSES.get("seed")(cfg)
    probs, feats = teachers.batch(np.arange(6), 1.0, torch.device("cpu"))

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = bank.forward_features(x)
        return f, bank.forward_heads(f)

    x, y = torch.randn(10, 1, 28, 28), torch.randint(0, 10, (4,))
    configs = [bank.largest_config(), bank.smallest_config(), (0.5, 0.75, 0.25)]
    loss, _ = step_loss(bank, forward, distiller, loss_fn, configs, x, y, 6, probs, feats, (x.device, None))
    loss.backward()
    assert bank.adapt_heads is not None
    heads = {"a": bank.classifier, "s": bank.adapt_heads["s"], "t": bank.adapt_heads["t"]}
    return {k: m.weight.grad is not None and bool(m.weight.grad.abs().sum() > 0) for k, m in heads.items()}


def test_ostc_gradients_reach_only_the_intended_heads() -> None:
    no_bank = {"lambda_seed": 0.0, "lambda_pseudo": 0.0}
    assert _ostc_grads(**no_bank, lambda_kd=0.0) == {"a": False, "s": True, "t": False}  # CE → C_s
    assert _ostc_grads(**no_bank, lambda_sup=0.0) == {"a": False, "s": False, "t": True}  # teachers → C_t
    only_seed = {"lambda_sup": 0.0, "lambda_kd": 0.0, "lambda_pseudo": 0.0}
    assert _ostc_grads(**only_seed) == {"a": True, "s": False, "t": False}  # SEED → C_a only
    only_pseudo = {"lambda_sup": 0.0, "lambda_kd": 0.0, "lambda_seed": 0.0}
    no_heads = {"a": False, "s": False, "t": False}
    assert _ostc_grads(**only_pseudo) == no_heads  # a fresh bank's ensemble is never 95% sure: no pseudo-labels
    assert _ostc_grads(**only_pseudo, pseudo_threshold=0.0) == no_heads | {"t": True}  # ensemble pseudo-labels → C_t
    assert _ostc_grads() == {"a": True, "s": True, "t": True}


def test_tri_head_bank_extracts_deployed_head_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16), tri_head=True).eval()
    assert bank.adapt_heads is not None
    with torch.no_grad():  # make C_a differ from the adaptation heads
        bank.adapt_heads["s"].weight.add_(1.0)
    config = (0.5, 0.25, 0.75)
    net = extract(bank, config)
    assert not any("adapt_heads" in k for k in net.state_dict()) and net.adapt_heads is None
    x = torch.randn(3, 1, 28, 28)
    bank.set_config(config)
    with torch.no_grad():
        assert torch.allclose(net(x), bank(x), atol=1e-5)
        assert torch.allclose(bank.forward_heads(bank.forward_features(x))["a"], bank(x))
    loaded = load_bank(save_bank(bank, tmp_path / "bank.safetensors"))
    assert loaded.tri_head and torch.equal(loaded.adapt_heads["s"].weight, bank.adapt_heads["s"].weight)


# ---- BN recalibration and the largest width ------------------------------------------------------------


def test_recalibration_changes_nothing_for_the_largest_width() -> None:
    """Recalibration only re-estimates BN statistics: weights are untouched (so the largest width's train-mode
    output is identical), and at the largest config it reproduces exactly the statistics of a plain network
    at full width calibrated on the same images, whatever widths accumulated the bank's stats before."""
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16))
    batches = [torch.randn(16, 1, 28, 28) for _ in range(3)]
    bank.train()
    for config in (bank.smallest_config(), (0.5, 0.75, 0.25)):  # stats polluted by narrower widths
        bank.set_config(config)
        bank(batches[0] * 3)
    bank.set_config(bank.largest_config())
    params = {k: v.clone() for k, v in bank.named_parameters()}
    with torch.no_grad():
        before_train_mode = bank(batches[0])
    recalibrate_bn(bank, batches, config=bank.largest_config())
    assert all(torch.equal(v, params[k]) for k, v in bank.named_parameters())
    plain = extract(bank, bank.largest_config())
    recalibrate_bn(plain, batches)
    assert all(torch.allclose(v, plain.state_dict()[k], atol=1e-6) for k, v in bank.state_dict().items())
    bank.eval()
    with torch.no_grad():
        first = bank(batches[1])
        recalibrate_bn(bank, batches, config=bank.largest_config())  # idempotent
        assert torch.allclose(bank(batches[1]), first, atol=1e-6)
        bank.train()
        assert torch.equal(bank(batches[0]), before_train_mode)  # batch statistics: same weights, same output


def test_switchable_bn_private_per_uniform_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16), switchable_bn=True)
    bn = bank.stem[1]
    assert isinstance(bn, SlimBatchNorm2d) and bn.private is not None and len(bn.private) == 4
    x = torch.randn(8, 1, 28, 28)
    bank.train()
    for i, w in enumerate(bank.width_choices):  # distinct stats and affine per uniform width
        bank.set_config((w,) * 3)
        assert bn.active() is bn.private[i]
        bank(x * (i + 1)).sum().backward()
    assert bn.weight.grad is None and bn.private[0].weight.grad is not None  # uniform widths: private BN only
    bank.set_config((0.5, 0.25, 1.0))
    assert bn.active() is bn and bank.bn_switch(bank.config) is None
    bank(x).sum().backward()
    assert bn.weight.grad is not None
    with torch.no_grad():
        for p in bank.parameters():
            p.add_(0.01 * torch.randn_like(p))
    shared = {k: v.clone() for k, v in bank.state_dict().items() if "private" not in k}
    full = {k: v.clone() for k, v in bank.state_dict().items() if ".private.3." in k}
    recalibrate_bn(bank, [x], config=(0.5,) * 3)  # touches width 0.5's private BNs only
    state = bank.state_dict()
    assert all(torch.equal(state[k], v) for k, v in (shared | full).items())
    bank.eval()
    for config in [(0.5,) * 3, (1.0,) * 3]:
        net = extract(bank, config)
        bank.set_config(config)
        with torch.no_grad():
            assert torch.allclose(net(x), bank(x), atol=1e-5)
    loaded = load_bank(save_bank(bank, tmp_path / "bank.safetensors"))
    assert loaded.switchable_bn and torch.equal(loaded.stem[1].private[2].running_mean, bn.private[2].running_mean)


# ---- every option combination, 2 steps on real MNIST images -----------------------------------------


@pytest.fixture(scope="module")
def tiny_data() -> TaskData:
    return build_task_data(DataConfig(source="mnist", channels=1, labels_per_class=2, unlabeled=64, test=32))


_COMBOS = [
    (distiller, loss, weighting, tri, cl, bn)
    for distiller, loss, tri in itertools.product(["ce-only", "distill-weighted"], ["seed", "inplace"], [False, True])
    if not (tri and distiller == "ce-only")  # refused: see test_tri_head_needs_a_tri_head_bank_and_a_bank_loss
    for weighting in (["entropy", "max-prob", "uniform"] if loss == "seed" else ["entropy"])
    for cl, bn in itertools.product([False, True], ["recalibrate", "switchable"])
]
# The fast suite runs a subset that takes every option value at least once; the full product runs as slow.
_FAST = {
    ("distill-weighted", "seed", "entropy", True, True, "switchable"),
    ("distill-weighted", "seed", "max-prob", False, False, "recalibrate"),
    ("distill-weighted", "inplace", "entropy", True, False, "switchable"),
    ("ce-only", "seed", "uniform", False, True, "recalibrate"),
}


@pytest.mark.parametrize(
    ("distiller", "loss", "weighting", "tri", "channels_last", "bn"),
    [c if c in _FAST else pytest.param(*c, marks=pytest.mark.slow) for c in _COMBOS],
)
def test_two_steps_every_option(
    tiny_data: TaskData,
    tmp_path: Path,
    distiller: str,
    loss: str,
    weighting: str,
    tri: bool,
    channels_last: bool,
    bn: str,
) -> None:
    _two_steps(
        tiny_data, tmp_path, distiller, BankConfig(loss=loss, weighting=weighting, tri_head=tri, bn=bn), channels_last
    )


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "tri"), [("seed", True), ("inplace", False)])
def test_two_steps_compiled(tiny_data: TaskData, tmp_path: Path, loss: str, tri: bool) -> None:
    _two_steps(tiny_data, tmp_path, "distill-weighted", BankConfig(loss=loss, tri_head=tri), True, compile_=True)


@pytest.mark.gpu
@pytest.mark.parametrize("compile_", [False, True])
def test_two_steps_cuda_bf16(tiny_data: TaskData, tmp_path: Path, compile_: bool) -> None:
    """The same code path on CUDA: autocast bf16 (fp16 where bf16 is missing), channels_last, torch.compile."""
    bank_cfg = BankConfig(loss="seed", tri_head=True, bn="switchable")
    _two_steps(tiny_data, tmp_path, "distill-weighted", bank_cfg, True, compile_, device="cuda")


def _two_steps(
    data: TaskData,
    out: Path,
    distiller: str,
    bank_cfg: BankConfig,
    cl: bool,
    compile_: bool = False,
    device: str = "cpu",
) -> None:
    loss, tri = bank_cfg.loss, bank_cfg.tri_head
    cfg = TrainConfig(
        distiller=distiller,
        bank=bank_cfg,
        steps=2,
        num_sampled=3,
        batch_labeled=8,
        batch_unlabeled=8,
        warmup_steps=1,
        channels_last=cl,
        compile=compile_,
    )
    torch.manual_seed(0)
    bank = build_bank(
        "resnet_cifar", 10, 1, base_channels=(8, 8, 16), tri_head=tri, switchable_bn=bank_cfg.bn == "switchable"
    )
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    teachers = _FakeTeachers(len(data.unlabeled)).targets if distiller != "ce-only" else None
    pre = Preprocess(28, 28, 1, (0.13,), (0.31,))
    state = distill(bank, data, pre, cfg, out, torch.device(device), teachers, show_progress=False)
    bank.cpu()
    row = state.history[-1]
    assert state.steps == 2 and all(math.isfinite(v) for v in row.values())
    bank_term = {"seed": "seed_sub", "inplace": "inplace_sub"}[loss]
    assert (bank_term in row) == (distiller != "ce-only")
    assert ("pseudo_sub" in row) == (tri and distiller != "ce-only")
    changed = [k for k, v in bank.state_dict().items() if not torch.equal(v, before[k])]
    assert "classifier.weight" in changed and ("adapt_heads.s.weight" in changed) == tri
    assert ("stem.1.private.0.weight" in changed) == (bank_cfg.bn == "switchable")  # the smallest width's BN


def test_tri_head_needs_a_tri_head_bank_and_a_bank_loss(tiny_data: TaskData, tmp_path: Path) -> None:
    pre, cpu = Preprocess(28, 28, 1, (0.1,), (0.3,)), torch.device("cpu")
    cfg = TrainConfig(distiller="distill-weighted", bank=BankConfig(tri_head=True), steps=1)
    teachers = _FakeTeachers(len(tiny_data.unlabeled)).targets
    with pytest.raises(ConfigError, match="without the OSTC heads"):
        distill(
            build_bank("resnet_cifar", 10, 1, base_channels=(8, 8, 16)), tiny_data, pre, cfg, tmp_path, cpu, teachers
        )
    cfg = cfg.model_copy(update={"distiller": "ce-only"})
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 8, 16), tri_head=True)
    with pytest.raises(ConfigError, match="no bank loss"):
        distill(bank, tiny_data, pre, cfg, tmp_path, cpu)


# ---- UDON: domain sampler, cosine heads, relational KD -------------------------------------------------


def test_udon_sampler_follows_losses_and_respects_the_floor() -> None:
    s = DOMAIN_SAMPLERS.get("udon")(3, beta=1.0, floor=0.1, window=2)
    assert np.allclose(s.probabilities(), 1 / 3)  # nothing seen yet
    s.update(0, 1.0)  # unseen domains count as the worst seen: still uniform
    assert np.allclose(s.probabilities(), 1 / 3)
    for d, loss in enumerate([3.0, 1.0, 0.0]):
        s.update(d, loss)
    # windowed means (1+3)/2 = 2, 1, 0 → 0.9 · (2/3, 1/3, 0) + 0.1/3
    assert np.allclose(s.probabilities(), [0.6 + 0.1 / 3, 0.3 + 0.1 / 3, 0.1 / 3])
    s.update(0, 3.0)  # the window drops the oldest loss: mean 3
    p = s.probabilities()
    assert np.isclose(p.sum(), 1.0) and p[0] > 0.7 and p.min() >= 0.1 / 3 - 1e-12
    sq = DOMAIN_SAMPLERS.get("udon")(3, beta=2.0, floor=0.0, window=2)
    for d, loss in enumerate([2.0, 1.0, 1.0]):
        sq.update(d, loss)
    assert np.allclose(sq.probabilities(), [4 / 6, 1 / 6, 1 / 6])
    gen = torch.Generator().manual_seed(0)
    draws = np.bincount([s.sample(gen) for _ in range(2000)], minlength=3) / 2000
    assert np.allclose(draws, p, atol=0.04)
    restored = DOMAIN_SAMPLERS.get("udon")(3, window=2)
    restored.load_state_dict(s.state_dict())
    assert np.allclose(restored.probabilities(), p)


def test_relational_loss_and_udon_terms() -> None:
    f = torch.randn(5, 8)
    rel = LOSSES.get("relational")
    assert float(rel(f, f @ torch.linalg.qr(torch.randn(8, 8))[0])) < 1e-10  # rotation keeps the similarities
    assert float(rel(f, torch.randn(5, 3))) > 0
    d = DISTILLERS.get("udon")(TrainConfig(), _FakeTeachers(4).targets, 8)
    zl, zu, h = torch.randn(2, 10), torch.randn(4, 10, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    t_probs, t_feats = _FakeTeachers(4).targets.batch(np.arange(4), d.temperature, torch.device("cpu"))
    terms = d.terms(0, StepBatch(zl, torch.tensor([1, 2]), zu, None, h, t_probs, t_feats))
    assert set(terms) == {"ce", "kd", "relational"} and d.temperature == 0.1
    mixed = 0.6 * t_probs[0] + 0.4 * t_probs[1]
    expected = torch.nn.functional.kl_div(torch.log_softmax(zu / 0.1, 1), mixed, reduction="batchmean")
    assert torch.allclose(terms["kd"], expected, rtol=1e-5)  # plain KL at T = 0.1, no T² factor
    sum(terms.values()).backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_cosine_head_bank_extracts() -> None:
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 16, 16), cosine_head=True).eval()
    assert isinstance(bank.classifier, CosineLinear) and bank.classifier.bias is None
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        logits = bank(x)
        assert logits.abs().max() <= COSINE_SCALE + 1e-4
        for config in [bank.largest_config(), (0.25, 0.5, 0.75)]:
            net = extract(bank, config)
            bank.set_config(config)
            assert isinstance(net.classifier, CosineLinear) and torch.allclose(net(x), bank(x), atol=1e-5)


def test_two_steps_with_two_domains(tiny_data: TaskData, tmp_path: Path) -> None:
    """Real MNIST images as two domains (as is, and inverted); UDON distiller, cosine heads, cached teachers."""
    u = tiny_data.unlabeled
    half = len(u) // 2
    images = np.concatenate([u.images[:half], 255 - u.images[half:]])
    data = TaskData(
        tiny_data.name, tiny_data.class_names, tiny_data.labeled, ImageSet(images), tiny_data.test, (0.13,), (0.31,)
    )
    domains = np.repeat([0, 1], [half, len(u) - half])
    cfg = TrainConfig(
        distiller="udon",
        udon=UdonConfig(cosine_head=True),
        steps=3,
        num_sampled=2,
        batch_labeled=8,
        batch_unlabeled=8,
        warmup_steps=1,
        checkpoint_every=2,
    )
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 8, 16), cosine_head=True)
    teachers = _FakeTeachers(len(u)).targets
    pre = Preprocess(28, 28, 1, (0.13,), (0.31,))
    state = distill(bank, data, pre, cfg, tmp_path, torch.device("cpu"), teachers, show_progress=False, domains=domains)
    row = state.history[-1]
    assert {"kd", "relational", "seed_sub", "p_domain0", "p_domain1"} <= set(row)
    assert (
        math.isclose(row["p_domain0"] + row["p_domain1"], 1.0, rel_tol=1e-6)
        and min(row["p_domain0"], row["p_domain1"]) >= 0.05
    )
    ckpt = torch.load(next((tmp_path / "checkpoint").glob("*.pt")), weights_only=True)
    assert len(ckpt["domains"]["losses"]) == 2
    with pytest.raises(ConfigError, match="domains"):
        distill(bank, data, pre, cfg, tmp_path / "b", torch.device("cpu"), teachers, domains=domains[:3])


def test_pseudo_labels_only_where_the_ensemble_is_confident() -> None:
    """Golden value: rows under the threshold contribute 0, the mean is over all rows."""
    from edgedistill.distill.losses import confident_pseudo_label_ce

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([[0.97, 0.03], [0.4, 0.6], [0.01, 0.99]])
    ce = [math.log(1 + math.exp(-2.0)), None, math.log(2.0)]  # row 1 is under 0.95: masked
    got = confident_pseudo_label_ce(logits, target, 0.95)
    assert math.isclose(float(got), (ce[0] + ce[2]) / 3, rel_tol=1e-6)
    assert math.isclose(
        float(confident_pseudo_label_ce(logits, target, 0.0)),
        (ce[0] + math.log(1 + math.exp(-1.0)) + ce[2]) / 3,
        rel_tol=1e-6,
    )


def test_progressive_resizing_trains_small_then_at_the_budget_size(tiny_data: TaskData, tmp_path: Path) -> None:
    from edgedistill.distill.config import ResizeConfig

    cfg = TrainConfig(
        distiller="ce-only", steps=4, num_sampled=2, batch_labeled=4, warmup_steps=1,
        resize=ResizeConfig(scale=0.5, final_steps=1),
    )  # fmt: skip
    torch.manual_seed(0)
    bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 8, 16))
    sizes: list[tuple[int, int]] = []
    bank.stem.register_forward_pre_hook(lambda _m, args: sizes.append(tuple(args[0].shape[-2:])) and None)
    pre = Preprocess(32, 32, 1, (0.13,), (0.31,))
    state = distill(bank, tiny_data, pre, cfg, tmp_path, torch.device("cpu"), None, show_progress=False)
    assert set(state.step_seconds) == {"16x16", "32x32"} and min(state.step_seconds.values()) > 0
    per_step = [sizes[i] for i in range(0, len(sizes), 2)]  # two sampled widths per step
    assert per_step == [(16, 16)] * 3 + [(32, 32)]
    sizes.clear()
    cfg = cfg.model_copy(update={"resize": ResizeConfig(scale=0.5, full_size_every=2)})
    distill(bank, tiny_data, pre, cfg, tmp_path / "every", torch.device("cpu"), None, show_progress=False)
    assert [sizes[i] for i in range(0, len(sizes), 2)] == [(32, 32), (16, 16)] * 2
    assert Preprocess(224, 160, 3, (0.5,), (0.5,)).scaled(0.5) == Preprocess(112, 80, 3, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="resize.scale"):
        TrainConfig(resize={"scale": 0})  # type: ignore[arg-type]


def test_micro_batches_split_every_step_into_interleaved_chunks() -> None:
    from edgedistill.distill.step import micro_batches

    chunks = micro_batches(5, 12, 6)
    assert len(chunks) == 3 and all(len(li) and len(ui) for li, ui in chunks)
    assert sorted(int(i) for li, _ in chunks for i in li) == list(range(5))
    assert sorted(int(i) for _, ui in chunks for i in ui) == list(range(12))
    assert len(micro_batches(2, 40, 4)) == 2  # never a chunk without a labeled image
    assert len(micro_batches(8, 0, 4)) == 2 and len(micro_batches(8, 8, None)) == 1


def test_micro_batching_accumulates_gradients_of_the_same_step(tiny_data: TaskData, tmp_path: Path) -> None:
    """One chunk is the plain step, bit for bit; smaller chunks train too (BN sees smaller batches, so not equal)."""
    states = {}
    for micro in (None, 64, 6):
        cfg = TrainConfig(
            distiller="distill-weighted", steps=2, num_sampled=2, batch_labeled=4, batch_unlabeled=8,
            warmup_steps=1, micro_batch=micro,
        )  # fmt: skip
        torch.manual_seed(0)
        bank = build_bank("resnet_cifar", 10, 1, base_channels=(8, 8, 16))
        teachers = _FakeTeachers(len(tiny_data.unlabeled)).targets
        pre = Preprocess(28, 28, 1, (0.13,), (0.31,))
        state = distill(bank, tiny_data, pre, cfg, tmp_path / str(micro), torch.device("cpu"), teachers, False)
        assert all(math.isfinite(v) for v in state.history[-1].values())
        states[micro] = bank.state_dict()
    assert all(torch.equal(v, states[64][k]) for k, v in states[None].items())
    assert not all(torch.equal(v, states[6][k]) for k, v in states[None].items())
