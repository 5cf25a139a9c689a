"""Sandwich training of the slimmable bank with distillation (the `distill` stage)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgedistill.data.images import TaskData
from edgedistill.data.preprocess import Preprocess
from edgedistill.distill import distributed
from edgedistill.distill.checkpoint import load_latest, save_checkpoint
from edgedistill.distill.config import TrainConfig
from edgedistill.distill.loop import TrainLoop
from edgedistill.distill.multisource import TeacherTargets
from edgedistill.errors import CheckpointError
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
    loop = TrainLoop(bank, data, pre, cfg, device, teachers, domains)
    dd = loop.dd
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
                loop.distiller.load_state_dict(state.get("distiller", {}))
            except RuntimeError as e:
                raise CheckpointError(f"{state['_path']}: does not fit this bank ({str(e).splitlines()[0]})") from None
            loop.load_state_dict(state)
            torch.set_rng_state(state["torch_rng"])
            if "cuda_rng" in state and device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            start = resumed_from = int(state["step"])
            history = list(state.get("history", []))
            window = {k: list(v) for k, v in state.get("window", {}).items()}

    t0 = time.perf_counter()
    with progress("train", cfg.steps, show=show_progress, unit="step", completed=start) as bar:
        bank.train()
        timing: dict[str, list[float]] = {}
        for step in range(start, cfg.steps):
            step_start = time.perf_counter()
            batch = loop.draw(step)
            logs = loop.update(batch)
            for k, value in logs.items():
                window.setdefault(k, []).append(value)
            timing.setdefault(f"{batch.x.shape[-2]}x{batch.x.shape[-1]}", []).append(time.perf_counter() - step_start)
            done = step + 1
            if done % 10 == 0 or done == cfg.steps:
                row = distributed.mean_over_ranks(
                    {"step": float(done), "lr": loop.sched.get_last_lr()[0]}
                    | {k: sum(v) / len(v) for k, v in window.items()},
                    dd,
                    device,
                )
                history.append(row)
                window.clear()
                info = " ".join(f"{k}={v:.3f}" for k, v in row.items() if k not in {"step", "lr"})
                bar.update(completed=done, info=info)
            else:  # every step counts for the plain lines' 20-s rule (a 224-px step takes seconds on a CPU)
                bar.update(completed=done)
            if (done % cfg.checkpoint_every == 0 or done == cfg.steps) and dd.is_main:
                state = loop.state_dict() | {
                    "torch_rng": torch.get_rng_state(),
                    "step": done,
                    "history": history,
                    "window": window,
                    **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                }
                save_checkpoint(ckpt_dir, done, state, cfg.keep_checkpoints)
    distributed.average_buffers(bank, dd)  # BN running statistics: the mean over ranks
    bank.set_config(bank.largest_config())
    return TrainState(
        steps=cfg.steps,
        resumed_from=resumed_from,
        seconds=time.perf_counter() - t0,
        history=history,
        domain_probabilities=None if loop.sampler is None else [float(p) for p in loop.sampler.probabilities()],
        step_seconds={k: round(sum(v) / len(v), 3) for k, v in timing.items()},
    )
