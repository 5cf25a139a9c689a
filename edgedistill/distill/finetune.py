"""Fine-tune-a-teacher baseline: one pretrained teacher, its classifier replaced by a target-class head,
fine-tuned end to end on the labeled split with the bank trainer's schedule and augmentation.

This is the "fine-tune a single pretrained model" comparison of Borup et al.; it uses the labels only (no
unlabeled pool) and the teacher's own input pipeline. The result is a (large) reference model, not a deployable
student.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from edgedistill.data.augment import random_affine
from edgedistill.data.images import TaskData
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.evaluate import accuracy
from edgedistill.distill.loop import lr_schedule
from edgedistill.errors import ConfigError
from edgedistill.teachers.sources import Teacher, load_teacher


@dataclass
class FinetuneResult:
    """What `finetune_teacher` reports (also written as finetune.json by the CLI)."""

    source: str
    steps: int
    test_accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def replace_head(teacher: Teacher, num_classes: int, gen: torch.Generator) -> nn.Linear:
    """The teacher's model with its classifier (`teacher.head`) swapped for a fresh `Linear(d, num_classes)`."""
    head = teacher.head
    if not isinstance(head, nn.Linear):
        raise ConfigError(
            f"teacher '{teacher.source}': no replaceable linear classifier (TorchScript/ExportedProgram teachers "
            "cannot be fine-tuned); use a timm, torchvision, state-dict or packaged teacher"
        )
    parent_name, _, attr = next(n for n, m in teacher.model.named_modules() if m is head).rpartition(".")
    parent = teacher.model.get_submodule(parent_name)
    new = nn.Linear(head.in_features, num_classes).to(head.weight.device)
    with torch.no_grad():  # seeded init, independent of the global RNG
        bound = 1.0 / head.in_features**0.5
        new.weight.copy_(torch.rand(new.weight.shape, generator=gen) * 2 * bound - bound)
        new.bias.zero_()
    setattr(parent, attr, new)
    teacher.head = new
    return new


def finetune_teacher(
    source: str,
    data: TaskData,
    cfg: TrainConfig,
    device: torch.device,
    base: Path | None = None,
    backbone_lr_scale: float = 0.1,
) -> FinetuneResult:
    """Fine-tune teacher `source` on `data.labeled` for `cfg.steps` steps; test accuracy on `data.test`.

    The new head trains at `cfg.lr`, the pretrained layers at `cfg.lr * backbone_lr_scale`; BatchNorm adapts to
    the target (train mode), augmentation is the trainer's random affine when `cfg.augment`.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    teacher = load_teacher(source, device, base)
    model, head = teacher.model, {id(p) for p in replace_head(teacher, data.num_classes, gen).parameters()}
    groups: list[dict] = [
        {"params": [p for p in model.parameters() if id(p) not in head], "lr": cfg.lr * backbone_lr_scale},
        {"params": [p for p in model.parameters() if id(p) in head], "lr": cfg.lr},
    ]
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(cfg))
    assert data.labeled.labels is not None and data.test.labels is not None
    xl = torch.from_numpy(data.labeled.images).to(device)
    yl = torch.from_numpy(data.labeled.labels).to(device)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        i = torch.randint(len(xl), (cfg.batch_labeled,), generator=gen).to(device)
        x = xl[i].float()
        if cfg.augment:
            x = random_affine(x / 255.0, gen) * 255.0  # the teacher input pipeline takes 0..255 values
        loss = nn.functional.cross_entropy(model(teacher.input(x)), yl[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            history.append({"step": float(step + 1), "ce": float(loss.detach())})
    seconds = time.perf_counter() - t0
    acc = accuracy(model, data.test.images, data.test.labels, teacher.input, device, cfg.eval_batch)
    return FinetuneResult(source, cfg.steps, round(acc, 2), round(seconds, 1), history)
