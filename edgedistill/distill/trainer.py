"""Sandwich training of the slimmable bank with distillation (the `distill` stage)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgedistill.data.augment import affine_draws, random_affine
from edgedistill.data.images import TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.distill import distributed
from edgedistill.distill.amp import amp_dtype, autocast
from edgedistill.distill.checkpoint import load_latest, save_checkpoint
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.distillers import DISTILLERS, StepBatch
from edgedistill.distill.losses import weighted_sum
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.distill.sampler import sandwich_configs
from edgedistill.errors import CheckpointError
from edgedistill.models import SlimmableBank
from edgedistill.models.serialize import check_tensors


@dataclass
class TrainState:
    """What a finished (or resumed) training produced."""

    steps: int
    resumed_from: int | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def _schedule(cfg: TrainConfig) -> callable:  # type: ignore[valid-type]
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

    def sample(self, gen: torch.Generator, bl: int, bu: int, temperature: float) -> tuple:
        """(labeled images, labels, unlabeled images, teacher soft labels, teacher features) of this rank."""
        sl, su = self.d.shard(bl, "train.batch_labeled"), self.d.shard(bu, "train.batch_unlabeled")
        il = torch.randint(len(self.xl), (bl,), generator=gen)[sl]
        iu = torch.randint(len(self.xu), (bu,), generator=gen)[su]
        self.rows = torch.cat([torch.arange(bl)[sl], bl + torch.arange(bu)[su]])
        probs = feats = None
        if self.teachers is not None and bu:
            probs, feats = self.teachers.batch(iu.numpy(), temperature, self.xu.device)
        dev = self.xl.device
        return self.xl[il.to(dev)], self.yl[il.to(dev)], self.xu[iu.to(dev)], probs, feats


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
) -> TrainState:
    """Train `bank` in place on `data`; checkpoints go to `out_dir/checkpoint/`.

    Args:
        teachers: cached targets of the active teachers (weights α, features, target-class logits), needed by
            teacher distillers; their projectors are trained with the bank.
        resume: continue from the newest checkpoint in `out_dir/checkpoint/`.
    """
    distiller = DISTILLERS.get(cfg.distiller)(cfg, teachers, bank.feature_dim(bank.largest_config())).to(device)
    bank.to(device)
    dd = distributed.current()
    distributed.broadcast_parameters([bank, distiller], dd)
    if cfg.channels_last:
        bank.to(memory_format=torch.channels_last)
    params = [*bank.parameters(), *distiller.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    dtype = amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    gen = torch.Generator().manual_seed(cfg.seed)
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
            if "cuda_rng" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            start = resumed_from = int(state["step"])
            history = list(state.get("history", []))
            window = {k: list(v) for k, v in state.get("window", {}).items()}

    def features_and_logits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = bank.forward_features(x)
        return feats, bank.forward_head(feats)

    forward = torch.compile(features_and_logits) if cfg.compile else features_and_logits
    batches = _Batches(data, teachers, device, dd)
    bu = cfg.batch_unlabeled if distiller.uses_unlabeled else 0
    t0 = time.perf_counter()
    with _progress(show_progress) as progress:
        task = progress.add_task("train", total=cfg.steps, completed=start, info="")
        bank.train()
        for step in range(start, cfg.steps):
            xl, yl, xu, t_probs, t_feats = batches.sample(gen, cfg.batch_labeled, bu, cfg.kd_temperature)
            x = pre.to_unit(torch.cat([xl, xu]))
            if cfg.augment:
                x = random_affine(x, None, draws=affine_draws(cfg.batch_labeled + bu, gen)[batches.rows])
            x = pre.normalize(x)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            largest: torch.Tensor | None = None
            logs: dict[str, float] = {}
            for i, config in enumerate(sandwich_configs(bank, cfg.num_sampled, gen)):
                bank.set_config(config)
                with autocast(device, dtype):
                    feats, logits = forward(x)
                logits, n = logits.float(), len(xl)
                b = StepBatch(
                    logits[:n],
                    yl,
                    logits[n:] if bu else None,
                    largest,
                    feats[n:].float() if bu else None,
                    t_probs,
                    t_feats,
                )
                terms = distiller.terms(i, b)
                loss = weighted_sum(terms, distiller.weights) / cfg.num_sampled
                scaler.scale(loss).backward()
                if i == 0:
                    largest = torch.softmax(logits.detach(), dim=1)
                for k, v in terms.items():
                    logs[f"{k}{'' if i == 0 else '_sub'}"] = logs.get(k, 0.0) + float(v.detach())
            distributed.average_gradients(params, dd)
            scaler.step(opt)
            scaler.update()
            sched.step()
            for k, value in logs.items():
                window.setdefault(k, []).append(value)
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
                progress.update(task, completed=done, info=info)
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
                }
                save_checkpoint(ckpt_dir, done, state, cfg.keep_checkpoints)
    distributed.average_buffers(bank, dd)  # BN running statistics: the mean over ranks
    bank.set_config(bank.largest_config())
    return TrainState(steps=cfg.steps, resumed_from=resumed_from, seconds=time.perf_counter() - t0, history=history)


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not show,
    )
