"""Sandwich training of the slimmable bank with distillation (the `distill` stage)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
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
from edgedistill.distill.checkpoint import load_latest, save_checkpoint
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, Distiller
from edgedistill.distill.domains import domain_loss, domain_setup, draw_rows
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.sampler import sandwich_configs
from edgedistill.distill.step import micro_batches, step_loss
from edgedistill.errors import CheckpointError, ConfigError
from edgedistill.models import SlimmableBank
from edgedistill.models.serialize import check_tensors
from edgedistill.progress import progress


@dataclass
class TrainState:
    """What a finished (or resumed) training produced."""

    steps: int
    resumed_from: int | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    domain_probabilities: list[float] | None = None  # the domain sampler's final p_d (None without domains)
    step_seconds: dict[str, float] = field(default_factory=dict)  # mean seconds per step, by training image size


def lr_schedule(cfg: TrainConfig) -> callable:  # type: ignore[valid-type]
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


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


def distill(
    bank: SlimmableBank,
    data: TaskData,
    pre: Preprocess,
    cfg: TrainConfig,
    out_dir: Path,
    device: torch.device,
    teachers: TeacherTargets | None = None,
    resume: bool = False,
    show_progress: bool = True,
    domains: np.ndarray | None = None,
) -> TrainState:
    """Train `bank` in place on `data`; checkpoints go to `out_dir/checkpoint/`.

    Args:
        teachers: cached targets of the active teachers (weights α, features, target-class logits), needed by
            teacher distillers; their projectors are trained with the bank.
        resume: continue from the newest checkpoint in `out_dir/checkpoint/`.
        domains: domain index (0..D-1) of every unlabeled image; each step's unlabeled batch then comes from one
            domain drawn by `train.udon.sampler` (UDON: in proportion to its recent teacher-vs-student loss).
            With labeled domains (`data.domains`) every row of a step's labeled and unlabeled batches draws its
            domain from the sampler's p_d (`train.udon.batches: mixed`), or the whole step one domain (`domain`).
    """
    dim = bank.feature_dim(bank.largest_config())
    classes = data.domain_classes or [list(range(data.num_classes))]
    distiller = DISTILLERS.get(cfg.distiller)(cfg, teachers, dim, classes).to(device)
    bank.to(device)
    dd = distributed.current()
    distributed.broadcast_parameters([bank, distiller], dd)
    if cfg.channels_last:
        bank.to(memory_format=torch.channels_last)
    groups = param_groups(bank, distiller, cfg)
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg))
    dtype = amp_dtype(cfg.amp, device)
    amp = (device, dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    bank_loss = BANK_LOSSES.get(cfg.bank.loss)(cfg) if distiller.bank_distillation else None
    if cfg.bank.tri_head and bank.adapt_heads is None:
        raise ConfigError("train.bank.tri_head: the bank was built without the OSTC heads (build it with tri_head)")
    if cfg.bank.tri_head and bank_loss is None:
        raise ConfigError(f"train.bank.tri_head: distiller '{cfg.distiller}' has no bank loss to train C_a with")
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler, pools, labeled_pools = domain_setup(cfg.udon, data, domains, _uses_unlabeled(distiller, cfg))
    ckpt_dir = out_dir / "checkpoint"
    start, resumed_from, history = 0, None, []
    window: dict[str, list[float]] = {}
    if resume:
        state = load_latest(
            ckpt_dir, required=("bank", "optimizer", "scheduler", "scaler", "generator", "torch_rng", "step")
        )
        if state is not None:
            check_tensors(Path(state["_path"]), bank.state_dict(), state["bank"])  # names the odd tensor
            try:
                bank.load_state_dict(state["bank"])
                distiller.load_state_dict(state.get("distiller", {}))
            except RuntimeError as e:
                raise CheckpointError(f"{state['_path']}: does not fit this bank ({str(e).splitlines()[0]})") from None
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if sampler is not None and "domains" in state:
                sampler.load_state_dict(state["domains"])
            if "cuda_rng" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            start = resumed_from = int(state["step"])
            history = list(state.get("history", []))
            window = {k: list(v) for k, v in state.get("window", {}).items()}

    def features_and_logits(x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = bank.forward_features(x)
        return feats, bank.forward_heads(feats)

    forward = torch.compile(features_and_logits) if cfg.compile else features_and_logits
    batches = _Batches(data, teachers, device, dd)
    bu = cfg.batch_unlabeled if distiller.uses_unlabeled else 0
    t0 = time.perf_counter()
    with progress("train", cfg.steps, show=show_progress, unit="step", completed=start) as bar:
        bank.train()
        timing: dict[str, list[float]] = {}
        for step in range(start, cfg.steps):
            step_start = time.perf_counter()
            domain, row_domains = None, None
            if sampler is not None and labeled_pools:  # labeled domains: each row from its domain's pools
                probs = sampler.probabilities()
                if cfg.udon.batches == "domain":
                    probs = np.eye(len(probs))[sampler.sample(gen)]
                il, dl = draw_rows(gen, probs, labeled_pools, cfg.batch_labeled)
                iu, du = draw_rows(gen, probs, pools, bu)
                xl, yl, xu, t_probs, t_feats = batches.take(il, iu, distiller.temperature)
                row_domains = torch.cat([dl, du])[batches.rows].to(device)
            else:
                domain = sampler.sample(gen) if sampler is not None else None
                pool = pools[domain] if domain is not None else None
                xl, yl, xu, t_probs, t_feats = batches.sample(gen, cfg.batch_labeled, bu, distiller.temperature, pool)
            sp = step_preprocess(pre, cfg, step)
            x = sp.to_unit(torch.cat([xl, xu]))
            if cfg.augment:
                x = random_affine(x, None, draws=affine_draws(cfg.batch_labeled + bu, gen)[batches.rows])
            x = sp.normalize(x)
            if distiller.strong_view and bu:  # FixMatch: a strongly augmented copy of the unlabeled images
                x = torch.cat([x, sp.normalize(strong_augment(sp.to_unit(xu), gen))])
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            configs = sandwich_configs(bank, cfg.num_sampled, gen)
            chunks = micro_batches(len(yl), len(xu), cfg.micro_batch)
            sums: dict[str, list[float]] = {}  # per log key: its value in every chunk that has it
            for li, ui in chunks:
                rows = torch.cat([li, len(yl) + ui, *([len(yl) + len(xu) + ui] if len(x) > len(yl) + len(xu) else [])])
                tp, tf = ([t[ui] for t in ts] if ts is not None else None for ts in (t_probs, t_feats))
                rd = None if row_domains is None else row_domains[torch.cat([li, len(yl) + ui]).to(device)]
                loss, part = step_loss(
                    bank, forward, distiller, bank_loss, configs, x[rows], yl[li], len(ui), tp, tf, amp, rd
                )
                scaler.scale(loss / len(chunks)).backward()
                for k, v in part.items():
                    sums.setdefault(k, []).append(v)
            logs = {k: sum(v) / len(v) for k, v in sums.items()}  # a domain absent from a chunk: not counted as 0
            distributed.average_gradients(params, dd)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if sampler is not None:
                if domain is not None:
                    sampler.update(domain, domain_loss(logs))
                for d in range(sampler.num_domains):  # labeled domains: each domain's rows' loss
                    if f"loss_domain{d}" in logs:
                        sampler.update(d, logs[f"loss_domain{d}"])
                logs |= {f"p_domain{d}": float(p) for d, p in enumerate(sampler.probabilities())}
            for k, value in logs.items():
                window.setdefault(k, []).append(value)
            timing.setdefault(f"{sp.height}x{sp.width}", []).append(time.perf_counter() - step_start)
            done = step + 1
            if done % 10 == 0 or done == cfg.steps:
                row = distributed.mean_over_ranks(
                    {"step": float(done), "lr": sched.get_last_lr()[0]}
                    | {k: sum(v) / len(v) for k, v in window.items()},
                    dd,
                    device,
                )
                history.append(row)
                window.clear()
                info = " ".join(f"{k}={v:.3f}" for k, v in row.items() if k not in {"step", "lr"})
                bar.update(completed=done, info=info)
            if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and dd.is_main:
                state = {
                    "bank": bank.state_dict(),
                    "distiller": distiller.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "step": done,
                    "history": history,
                    "window": window,
                    **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                } | ({"domains": sampler.state_dict()} if sampler is not None else {})
                save_checkpoint(ckpt_dir, done, state, cfg.keep_checkpoints)
    distributed.average_buffers(bank, dd)  # BN running statistics: the mean over ranks
    bank.set_config(bank.largest_config())
    return TrainState(
        steps=cfg.steps,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - t0,
        history=history,
        domain_probabilities=None if sampler is None else [float(p) for p in sampler.probabilities()],
        step_seconds={k: round(sum(v) / len(v), 3) for k, v in timing.items()},
    )


def step_preprocess(pre: Preprocess, cfg: TrainConfig, step: int) -> Preprocess:
    """The input pipeline of training step `step`: smaller images, but for every `full_size_every`-th step and the
    last `final_steps` (`train.resize`)."""
    r = cfg.resize
    if step >= cfg.steps - r.final_steps or (r.full_size_every is not None and step % r.full_size_every == 0):
        return pre
    return pre.scaled(r.scale)


def _uses_unlabeled(distiller: Distiller, cfg: TrainConfig) -> bool:
    """Whether steps draw unlabeled images (and so can be drawn per domain)."""
    return distiller.uses_unlabeled and cfg.batch_unlabeled > 0
