"""One training run's moving parts and its step: draw a batch, run the sampled widths, update the weights.

`TrainLoop` is what `distill` repeats; it is also what `bench/trainer_overhead.py` times against a bare loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedistill.data.augment import affine_draws, random_affine, strong_augment
from edgedistill.data.images import TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.distill import distributed
from edgedistill.distill.amp import amp_dtype
from edgedistill.distill.bank_loss import BANK_LOSSES
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, Distiller
from edgedistill.distill.domains import domain_loss, domain_setup, draw_rows
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.sampler import sandwich_configs
from edgedistill.distill.step import micro_batches, step_loss
from edgedistill.errors import ConfigError
from edgedistill.models import SlimmableBank, WidthConfig


def lr_schedule(cfg: TrainConfig) -> callable:  # type: ignore[valid-type]
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def step_preprocess(pre: Preprocess, cfg: TrainConfig, step: int) -> Preprocess:
    """The input pipeline of training step `step`: smaller images, but for every `full_size_every`-th step and the
    last `final_steps` (`train.resize`)."""
    r = cfg.resize
    if step >= cfg.steps - r.final_steps or (r.full_size_every is not None and step % r.full_size_every == 0):
        return pre
    return pre.scaled(r.scale)


class _Batches:
    """Seeded with-replacement sampling of labeled/unlabeled batches (uint8 images kept on the device).

    Every data-parallel rank draws the same global batch and keeps its own share of the rows (`rows`: their
    positions in the global labeled+unlabeled batch). Teacher targets are gathered per batch, per rank, from the
    memory-mapped cache.
    """

    def __init__(
        self, data: TaskData, teachers: TeacherTargets | None, device: torch.device, d: distributed.Dist
    ) -> None:
        assert data.labeled.labels is not None
        self.xl = torch.from_numpy(data.labeled.images).to(device)
        self.yl = torch.from_numpy(data.labeled.labels).to(device)
        self.xu = torch.from_numpy(data.unlabeled.images).to(device)
        self.teachers = teachers
        self.d = d
        self.rows = torch.arange(0)

    def sample(
        self, gen: torch.Generator, bl: int, bu: int, temperature: float, pool: torch.Tensor | None = None
    ) -> tuple:
        """(labeled images, labels, unlabeled images, teacher soft labels, teacher features) of this rank.

        `pool`: draw the unlabeled images from these indices only (one domain's images).
        """
        il = torch.randint(len(self.xl), (bl,), generator=gen)
        iu = torch.randint(len(self.xu) if pool is None else len(pool), (bu,), generator=gen)
        return self.take(il, iu if pool is None else pool[iu], temperature)

    def take(self, il: torch.Tensor, iu: torch.Tensor, temperature: float) -> tuple:
        """As `sample`, for the global batch of labeled rows `il` and unlabeled rows `iu` (this rank's share)."""
        bl, bu = len(il), len(iu)
        sl, su = self.d.shard(bl, "train.batch_labeled"), self.d.shard(bu, "train.batch_unlabeled")
        il, iu = il[sl], iu[su]
        self.rows = torch.cat([torch.arange(bl)[sl], bl + torch.arange(bu)[su]])
        probs = feats = None
        if self.teachers is not None and bu:
            probs, feats = self.teachers.batch(iu.numpy(), temperature, self.xu.device)
        dev = self.xl.device
        return self.xl[il.to(dev)], self.yl[il.to(dev)], self.xu[iu.to(dev)], probs, feats


def param_groups(bank: SlimmableBank, distiller: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer groups: layers loaded from pretrained weights at `pretrained_lr_scale` × lr, the rest at lr."""
    pretrained = bank.pretrained_parameters()
    seen = {id(p) for p in pretrained}
    new = [p for p in (*bank.parameters(), *distiller.parameters()) if id(p) not in seen]
    groups: list[dict[str, Any]] = [{"params": new, "lr": cfg.lr, "name": "new"}]
    if pretrained:
        groups.append({"params": pretrained, "lr": cfg.lr * cfg.pretrained_lr_scale, "name": "pretrained"})
    return groups


@dataclass
class StepInputs:
    """What one step trains on: normalised images (labeled, unlabeled, FixMatch strong view), labels, targets."""

    x: torch.Tensor
    labels: torch.Tensor
    num_unlabeled: int
    teacher_probs: list[torch.Tensor] | None
    teacher_feats: list[torch.Tensor] | None
    configs: list[WidthConfig]
    domain: int | None = None  # the step's one domain (unlabeled domains, or `udon.batches: domain`)
    row_domains: torch.Tensor | None = None  # labeled domains: the domain of every labeled + unlabeled row


class TrainLoop:
    """The bank, its distiller, optimizer, schedule and batch sampler; `draw(step)` + `update()` is one sandwich
    training step.

    Args:
        teachers: cached targets of the active teachers, needed by teacher distillers.
        domains: domain index of every unlabeled image (UDON domain sampling), or None.
    """

    def __init__(
        self,
        bank: SlimmableBank,
        data: TaskData,
        pre: Preprocess,
        cfg: TrainConfig,
        device: torch.device,
        teachers: TeacherTargets | None = None,
        domains: np.ndarray | None = None,
    ) -> None:
        self.bank, self.pre, self.cfg = bank, pre, cfg
        feature_dim = bank.feature_dim(bank.largest_config())
        classes = data.domain_classes or [list(range(data.num_classes))]
        self.distiller: Distiller = DISTILLERS.get(cfg.distiller)(cfg, teachers, feature_dim, classes).to(device)
        bank.to(device)
        self.dd = distributed.current()
        distributed.broadcast_parameters([bank, self.distiller], self.dd)
        if cfg.channels_last:
            bank.to(memory_format=torch.channels_last)
        groups = param_groups(bank, self.distiller, cfg)
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_schedule(cfg))
        dtype = amp_dtype(cfg.amp, device)
        self.amp = (device, dtype)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.bank_loss = BANK_LOSSES.get(cfg.bank.loss)(cfg) if self.distiller.bank_distillation else None
        if cfg.bank.tri_head and bank.adapt_heads is None:
            raise ConfigError("train.bank.tri_head: the bank was built without the OSTC heads (build it with tri_head)")
        if cfg.bank.tri_head and self.bank_loss is None:
            raise ConfigError(f"train.bank.tri_head: distiller '{cfg.distiller}' has no bank loss to train C_a with")
        self.gen = torch.Generator().manual_seed(cfg.seed)
        uses_unlabeled = self.distiller.uses_unlabeled and cfg.batch_unlabeled > 0
        self.sampler, self.pools, self.labeled_pools = domain_setup(cfg.udon, data, domains, uses_unlabeled)
        self.forward = torch.compile(self._features_and_logits) if cfg.compile else self._features_and_logits
        self.batches = _Batches(data, teachers, device, self.dd)
        self.batch_unlabeled = cfg.batch_unlabeled if self.distiller.uses_unlabeled else 0

    def _features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = self.bank.forward_features(x)
        return feats, self.bank.forward_heads(feats)

    def draw(self, step: int) -> StepInputs:
        """Training step `step`'s batch (augmented, normalised, at its `train.resize` size) and sampled widths."""
        cfg, bu = self.cfg, self.batch_unlabeled
        pre = step_preprocess(self.pre, cfg, step)
        temperature, domain, row_domains = self.distiller.temperature, None, None
        if self.sampler is not None and self.labeled_pools:  # labeled domains: each row from its domain's pools
            probs = self.sampler.probabilities()
            if cfg.udon.batches == "domain":
                probs = np.eye(len(probs))[self.sampler.sample(self.gen)]
            il, dl = draw_rows(self.gen, probs, self.labeled_pools, cfg.batch_labeled)
            iu, du = draw_rows(self.gen, probs, self.pools, bu)
            xl, yl, xu, t_probs, t_feats = self.batches.take(il, iu, temperature)
            row_domains = torch.cat([dl, du])[self.batches.rows].to(xl.device)
        else:
            domain = self.sampler.sample(self.gen) if self.sampler is not None else None
            pool = self.pools[domain] if domain is not None else None
            xl, yl, xu, t_probs, t_feats = self.batches.sample(self.gen, cfg.batch_labeled, bu, temperature, pool)
        x = pre.to_unit(torch.cat([xl, xu]))
        if cfg.augment:
            x = random_affine(x, None, draws=affine_draws(cfg.batch_labeled + bu, self.gen)[self.batches.rows])
        x = pre.normalize(x)
        if self.distiller.strong_view and bu:  # FixMatch: a strongly augmented copy of the unlabeled images
            x = torch.cat([x, pre.normalize(strong_augment(pre.to_unit(xu), self.gen))])
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        configs = sandwich_configs(self.bank, cfg.num_sampled, self.gen)
        return StepInputs(x, yl, len(xu), t_probs, t_feats, configs, domain, row_domains)

    def update(self, b: StepInputs) -> dict[str, float]:
        """One optimizer step on `b`, over its `train.micro_batch` chunks (gradients accumulated); returns the step's
        loss terms (and domain probabilities, with domains)."""
        self.opt.zero_grad(set_to_none=True)
        nl, nu = len(b.labels), b.num_unlabeled
        chunks = micro_batches(nl, nu, self.cfg.micro_batch)
        sums: dict[str, list[float]] = {}  # per log key: its value in every chunk that has it
        for li, ui in chunks:
            x = b.x
            if len(chunks) > 1:  # the chunk's labeled, unlabeled (and strong-view) rows
                x = b.x[torch.cat([li, nl + ui, *([nl + nu + ui] if len(b.x) > nl + nu else [])])]
            probs, feats = (
                [t[ui] for t in ts] if ts is not None else None for ts in (b.teacher_probs, b.teacher_feats)
            )
            rows = None if b.row_domains is None else b.row_domains[torch.cat([li, nl + ui]).to(b.row_domains.device)]
            loss, part = step_loss(
                self.bank, self.forward, self.distiller, self.bank_loss, b.configs, x, b.labels[li], len(ui),
                probs, feats, self.amp, rows,
            )  # fmt: skip
            self.scaler.scale(loss / len(chunks)).backward()
            for k, v in part.items():
                sums.setdefault(k, []).append(v)
        logs = {k: sum(v) / len(v) for k, v in sums.items()}  # a domain absent from a chunk: not counted as 0
        distributed.average_gradients(self.params, self.dd)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.sampler is not None:
            if b.domain is not None:
                self.sampler.update(b.domain, domain_loss(logs))
            for d in range(self.sampler.num_domains):  # labeled domains: each domain's rows' loss
                if f"loss_domain{d}" in logs:
                    self.sampler.update(d, logs[f"loss_domain{d}"])
            logs |= {f"p_domain{d}": float(p) for d, p in enumerate(self.sampler.probabilities())}
        return logs

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue this loop bit for bit (besides torch's global RNG)."""
        state = {
            "bank": self.bank.state_dict(),
            "distiller": self.distiller.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.gen.get_state(),
        }
        return state | ({"domains": self.sampler.state_dict()} if self.sampler is not None else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s keys (the bank and distiller are loaded by the caller, who checks them)."""
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["generator"])
        if self.sampler is not None and "domains" in state:
            self.sampler.load_state_dict(state["domains"])
