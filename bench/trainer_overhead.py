"""Trainer overhead: the bank's training step against a bare hand-written loop on the same batches.

The trainer step is `TrainLoop.draw()` + `update()` as `edgedistill train` runs it: draw the batch (labeled + unlabeled,
teacher targets from the cache), augment, normalise, sample K widths, run them, the distiller's and the bank's
loss terms, one backward, AdamW, the schedule and the logs. The bare loop is what one would write by hand for
the same sandwich step: for each of the same K width configs, forward the same (already augmented) batch,
cross-entropy on the labels plus in-place KD from the largest width, then one backward and one AdamW step, on a
copy of the same bank. Both run in one process, interleaved in rounds (trainer steps, then the bare loop
replaying exactly those steps' batches and configs); the first round is a warm-up. Ratio = trainer / bare per
round (median per-step time), the median over rounds is the result.

Usage (nothing else on the cores):
    python bench/trainer_overhead.py [--task tasks/demo-mnist.yaml] [--steps 20] [--rounds 6] [--threads 2]
Writes bench/results/trainer_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgedistill.bench.machine import machine_info, package_versions
from edgedistill.budget import load_budget
from edgedistill.data import build_task_data
from edgedistill.distill.amp import resolve_device
from edgedistill.distill.loop import StepInputs, TrainLoop
from edgedistill.inputs import preprocess_for
from edgedistill.models import SlimmableBank
from edgedistill.pipeline.train import build_student, teacher_targets
from edgedistill.task import load_task

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_step(bank: SlimmableBank, opt: torch.optim.Optimizer, b: StepInputs) -> float:
    """The hand-written sandwich step: K forwards (CE + in-place KD from the largest), one backward, AdamW."""
    opt.zero_grad(set_to_none=True)
    n, total = len(b.labels), torch.zeros((), device=b.x.device)
    largest = None
    for config in b.configs:
        bank.set_config(config)
        logits = bank(b.x)
        loss = F.cross_entropy(logits[:n], b.labels)
        if largest is None:
            largest = torch.softmax(logits.detach(), dim=1)
        else:
            loss = loss - (largest * F.log_softmax(logits, dim=1)).sum(1).mean()
        total = total + loss / len(b.configs)
    total.backward()
    opt.step()
    return float(total.detach())


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def measure(loop: TrainLoop, bare: SlimmableBank, steps: int, rounds: int, device: torch.device) -> list[dict]:
    """Per round: median seconds per trainer step (and its batch-drawing share) and per bare step."""
    opt = torch.optim.AdamW(bare.parameters(), lr=loop.cfg.lr, weight_decay=loop.cfg.weight_decay)
    loop.bank.train()
    bare.train()
    out = []
    for r in range(rounds + 1):  # round 0: warm-up (allocator, oneDNN primitives for new shapes)
        drawn: list[StepInputs] = []
        trainer, draw = [], []
        for _ in range(steps):
            t0 = time.perf_counter()
            b = loop.draw(0)
            _sync(device)
            draw.append(time.perf_counter() - t0)
            trainer.append(draw[-1] + _timed(lambda b=b: loop.update(b), device))
            drawn.append(b)
        plain = [_timed(lambda b=b: bare_step(bare, opt, b), device) for b in drawn]
        if r:
            row = {
                "trainer_s": statistics.median(trainer),
                "draw_s": statistics.median(draw),
                "bare_s": statistics.median(plain),
            }
            row["ratio"] = row["trainer_s"] / row["bare_s"]
            out.append(row)
            print(
                f"round {r}: trainer {row['trainer_s'] * 1e3:.1f} ms, bare {row['bare_s'] * 1e3:.1f} ms, "
                f"ratio {row['ratio']:.3f}",
                flush=True,
            )
    return out


def _markdown(rec: dict[str, Any]) -> str:
    m, s = rec["machine"], rec["summary"]
    lines = [
        "# Trainer overhead: the bank's training step vs a bare hand-written loop",
        "",
        f"Command: `{rec['command']}` ({rec['created']}).  ",
        f"Machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['usable_cores']} usable cores, {m['platform']}; "
        f"device {rec['device']}, {rec['threads']} torch threads; "
        + ", ".join(f"{k} {v}" for k, v in rec["versions"].items())
        + ".  ",
        f"Task `{rec['task']}` (distiller `{rec['distiller']}`, bank loss `{rec['bank_loss']}`), student "
        f"`{rec['family']}`, batch {rec['batch']} ({rec['batch_labeled']} labeled + {rec['batch_unlabeled']} "
        f"unlabeled), K = {rec['num_sampled']} widths per step, channels_last {rec['channels_last']}; "
        f"{rec['steps']} steps per round, {len(rec['rounds'])} rounds after a warm-up round.",
        "",
        "Trainer step: `TrainLoop.draw()` + `update()` (draw + augment + K forwards + distiller and bank loss terms + "
        "backward + AdamW + schedule + logs). Bare step: the same K width configs on the same augmented batch, CE + "
        "in-place KD from the largest width, one backward, AdamW, on a copy of the bank. Times are the median per step "
        "of a round.",
        "",
        "| round | trainer ms/step | of it: drawing the batch | bare loop ms/step | ratio |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rec["rounds"], 1):
        lines.append(
            f"| {i} | {r['trainer_s'] * 1e3:.1f} | {r['draw_s'] * 1e3:.1f} | {r['bare_s'] * 1e3:.1f} "
            f"| {r['ratio']:.3f} |"
        )
    lines += [
        "",
        f"**Ratio (median over rounds): {s['ratio']:.3f}×** (goal ≤ 1.15×; "
        f"{'met' if s['ratio'] <= 1.15 else 'missed'}). Drawing the batch: {s['draw_share'] * 100:.1f}% of a "
        "trainer step.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", type=Path, default=REPO / "tasks" / "demo-mnist.yaml")
    p.add_argument("--budget", type=Path, default=REPO / "budgets" / "demo-cpu.yaml")
    p.add_argument("--steps", type=int, default=20, help="steps per round")
    p.add_argument("--rounds", type=int, default=6, help="timed rounds (after one warm-up round)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--teacher-cache", type=Path, default=REPO / "runs" / "trainer-overhead" / "teachers")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cfg, base = load_task(a.task)
    data = build_task_data(cfg.data, base)
    resolved = load_budget(a.budget)
    pre = preprocess_for(resolved, data)
    targets, _ = teacher_targets(cfg, data, a.teacher_cache, device, base)
    bank = build_student(cfg, resolved, data.num_classes)
    loop = TrainLoop(bank, data, pre, cfg.train, device, targets, data.domains)
    bare = copy.deepcopy(bank)  # after TrainLoop: on the device, in the same memory format
    rounds = measure(loop, bare, a.steps, a.rounds, device)
    ratio = statistics.median(r["ratio"] for r in rounds)
    draw_share = statistics.median(r["draw_s"] / r["trainer_s"] for r in rounds)
    t = cfg.train
    rec = {
        "command": " ".join(["python", "bench/trainer_overhead.py", *(sys.argv[1:] if argv is None else argv)]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": package_versions(["torch", "numpy"]),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "task": cfg.name,
        "distiller": t.distiller,
        "bank_loss": t.bank.loss,
        "family": bank.family,
        "batch": t.batch_labeled + loop.batch_unlabeled,
        "batch_labeled": t.batch_labeled,
        "batch_unlabeled": loop.batch_unlabeled,
        "num_sampled": t.num_sampled,
        "channels_last": t.channels_last,
        "steps": a.steps,
        "rounds": rounds,
        "summary": {"ratio": ratio, "draw_share": draw_share, "goal": 1.15, "met": ratio <= 1.15},
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "trainer_overhead.json").write_text(json.dumps(rec, indent=2) + "\n")
    (a.out / "trainer_overhead.md").write_text(_markdown(rec))
    print(f"ratio {ratio:.3f} (goal <= 1.15); wrote {a.out / 'trainer_overhead.md'}")


if __name__ == "__main__":
    main()
