"""Universal student (issue 19): online domain teachers vs frozen external teachers vs labels alone, per domain.

One universal task (`tasks/universal-digits.yaml`: MNIST, optdigits in a 20x20 box, the Ising lattices; 10 labels
per class each, 22 classes) is built once, subsampled to a CPU-sized benchmark (see `BENCH`). For every training
seed, each variant trains a fresh full-width student (`resnet_cifar`, channels 16-32-64, cosine head) for the same
number of steps, then is evaluated per domain on the test split (BN recalibrated on the unlabeled pools): top-1
over the domain's classes, and the embedding's recall@1 and mAP@5 (queries against the domain's other test images).

- `specialist`: one student per domain, trained on that domain alone with labels only (`ce-only`), every step.
- `ce-only`: one universal student, labels alone.
- `udon-frozen`: the `udon` distiller with the two frozen external digit CNNs (ccexam USPS, SVHN) as teachers.
- `udon-online`: online domain teachers on the student's backbone (no external teacher), each a linear head.
- `udon-online-branch`: the same with a two-layer MLP branch per domain (`train.udon.teacher: branch`).
- `udon-online+frozen`: online domain teachers plus the two frozen external teachers (multi-source).

Each universal variant runs with the `uniform` and with the loss-driven `udon` domain sampler, on batches that mix
the domains (`train.udon.batches: mixed`, the default); `--batches domain` runs one domain per step instead, as in
UDON's paper (the ablation: `--variants ce-only udon-online --samplers udon --batches domain`).

    python bench/udon_quality.py [--seeds 0 1 2] [--variants specialist ce-only udon-frozen udon-online ...]
        [--samplers uniform udon] [--batches mixed domain] [--steps N] [--out bench/results/udon_quality]
    python bench/udon_quality.py --merge part1.json part2.json ... [--out bench/results/udon_quality]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import edgedistill as ed
from edgedistill.bench.machine import machine_info
from edgedistill.data import TaskData, build_task_data
from edgedistill.data.labeled import single_domain
from edgedistill.distill.amp import resolve_device
from edgedistill.distill.distillers import DISTILLERS
from edgedistill.distill.evaluate import universal_metrics
from edgedistill.distill.multisource import TeacherTargets, prepare_teachers
from edgedistill.distill.trainer import distill
from edgedistill.inputs import calibration_batches, preprocess_for
from edgedistill.io import atomic_write_json, atomic_write_text
from edgedistill.models import recalibrate_bn
from edgedistill.pipeline.train import build_student
from edgedistill.task import TaskConfig, load_task

REPO = Path(__file__).resolve().parents[1]
# variant → (distiller, train.udon overrides, uses the frozen external teachers)
VARIANTS: dict[str, tuple[str, dict[str, str], bool]] = {
    "specialist": ("ce-only", {}, False),
    "ce-only": ("ce-only", {}, False),
    "udon-frozen": ("udon", {}, True),
    "udon-online": ("udon-online", {}, False),
    "udon-online-branch": ("udon-online", {"teacher": "branch"}, False),
    "udon-online+frozen": ("udon-online", {}, True),
}
TEACHERS = ["ccexam:usps?crop=0.72", "ccexam:svhn?invert=1"]  # the frozen external teachers
BENCH: dict[str, Any] = {  # overrides of tasks/universal-digits.yaml that size the benchmark for 2 CPU cores
    "data": {"unlabeled": 3000, "test": 2000},
    "domains": [{"unlabeled": 3000}, {"unlabeled": 3000}],
    "student": {"family": "resnet_cifar", "width_choices": [1.0], "options": {"base_channels": [16, 32, 64]}},
    "train": {
        "steps": 300,
        "num_sampled": 1,
        "batch_labeled": 32,
        "batch_unlabeled": 64,
        "warmup_steps": 20,
        "bn_calibration_images": 1000,
        "checkpoint_every": 1000,
        "channels_last": False,
    },
}


def bench_task(steps: int | None) -> TaskConfig:
    """tasks/universal-digits.yaml with the `BENCH` overrides (and `steps`)."""
    cfg, _ = load_task(REPO / "tasks" / "universal-digits.yaml")
    domains = [d.model_copy(update=u) for d, u in zip(cfg.data.domains, BENCH["domains"], strict=True)]
    data = cfg.data.model_copy(update=BENCH["data"] | {"domains": domains})
    train = cfg.train.model_copy(update=BENCH["train"] | ({"steps": steps} if steps else {}))
    student = cfg.student.model_copy(update=BENCH["student"])
    return cfg.model_copy(update={"data": data, "train": train, "student": student})


def _variant(
    cfg: TaskConfig, seed: int, distiller: str, sampler: str, batches: str = "mixed", **udon_options: str
) -> TaskConfig:
    udon = cfg.train.udon.model_copy(update={"sampler": sampler, "batches": batches} | udon_options)
    train = cfg.train.model_copy(update={"seed": seed, "distiller": distiller, "udon": udon})
    return cfg.model_copy(update={"train": train})


def _train_and_eval(
    cfg: TaskConfig, data: TaskData, ctx: dict[str, Any], targets: TeacherTargets | None, out: Path
) -> dict[str, Any]:
    bank = build_student(cfg, ctx["resolved"], data.num_classes)
    pre, device = ctx["pre"], ctx["device"]
    state = distill(bank, data, pre, cfg.train, out, device, targets, show_progress=False, domains=data.domains)
    calib = calibration_batches(data, pre, cfg.train.bn_calibration_images, device)
    recalibrate_bn(bank, calib, config=bank.largest_config())
    scores = universal_metrics(bank, data, pre, device, cfg.train.udon.map_at_k, cfg.train.eval_batch)
    return {
        "domains": scores,
        "ms_per_step": round(1000 * state.seconds / cfg.train.steps, 2),
        "p_final": None if state.domain_probabilities is None else [round(p, 3) for p in state.domain_probabilities],
    }


def run(args: argparse.Namespace, on_row: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    cfg = bench_task(args.steps)
    resolved = ed.load_budget(args.budget)
    device = resolve_device(args.device)
    work = REPO / "runs" / "udon-quality"
    data = build_task_data(cfg.data, REPO / "tasks")  # one data split (data.seed); the seeds vary the training
    ctx = {"resolved": resolved, "pre": preprocess_for(resolved, data), "device": device}
    targets = None
    if any(VARIANTS[v][2] for v in args.variants):
        udon = DISTILLERS.get("udon")
        weigh = functools.partial(udon.weigh, cfg=cfg.train)
        ms = cfg.train.multisource
        targets, _ = prepare_teachers(TEACHERS, data, ms, weigh, "head", work / "teachers", device, REPO)
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for variant in args.variants:
            if variant == "specialist":
                for d in range(len(data.domain_names)):
                    own = single_domain(data, d)
                    vcfg = _variant(cfg, seed, "ce-only", "uniform")
                    result = _train_and_eval(vcfg, own, ctx, None, work / f"specialist-{own.name}-s{seed}")
                    rows.append({"variant": variant, "sampler": "-", "batches": "-", "seed": seed} | result)
                    print(json.dumps(rows[-1]), flush=True)
                    on_row(rows)
                continue
            for sampler in args.samplers:
                for batches in args.batches:
                    distiller, options, frozen = VARIANTS[variant]
                    vcfg = _variant(cfg, seed, distiller, sampler, batches, **options)
                    t = targets if frozen else None
                    result = _train_and_eval(vcfg, data, ctx, t, work / f"{variant}-{sampler}-{batches}-s{seed}")
                    rows.append({"variant": variant, "sampler": sampler, "batches": batches, "seed": seed} | result)
                    print(json.dumps(rows[-1]), flush=True)
                    on_row(rows)
    return rows


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (variant, sampler, batches): per-domain metric lists over seeds, the mean over domains per seed, ms/step."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["sampler"], r.get("batches", "mixed")), []).append(r)
    out = []
    for (variant, sampler, batches), group in groups.items():
        per_domain: dict[str, dict[str, list[float]]] = {}
        for r in group:
            for name, s in r["domains"].items():
                for key, value in s.items():
                    per_domain.setdefault(name, {}).setdefault(key, []).append(value)
        seeds = sorted({r["seed"] for r in group})
        mean_over_domains = {
            key: [
                statistics.mean(s[key] for r in group if r["seed"] == seed for s in r["domains"].values())
                for seed in seeds
            ]
            for key in ("top1", "recall_at_1")
        }
        ms = [sum(r["ms_per_step"] for r in group if r["seed"] == seed) for seed in seeds]
        out.append(
            {"variant": variant, "sampler": sampler, "batches": batches, "seeds": seeds, "domains": per_domain}
            | {"mean": mean_over_domains, "ms_per_step": statistics.mean(ms)}
        )
    return out


def _table(summary: list[dict[str, Any]], domains: list[str], key: str) -> list[str]:
    head = f"| variant | sampler | batches | {' | '.join(domains)} | mean | ms/step |"
    lines = [head, "|---|---|---|" + "---|" * (len(domains) + 2)]
    for s in summary:
        cells = [_mean_std(s["domains"][d][key]) if d in s["domains"] else "-" for d in domains]
        mean, name = _mean_std(s["mean"][key]), f"{s['variant']} | {s['sampler']} | {s['batches']}"
        lines.append(f"| {name} | {' | '.join(cells)} | {mean} | {s['ms_per_step']:.1f} |")
    return lines


def markdown(rows: list[dict[str, Any]], command: str, machine: dict[str, Any], config: dict[str, Any]) -> str:
    """The results page: top-1 and recall@1 tables (mean ± std over seeds), the config, every row."""
    summary = summarise(rows)
    domains = list(dict.fromkeys(d for r in rows for d in r["domains"]))
    sampled = [r for r in rows if r["p_final"] is not None]
    lines = [
        "# Universal student: online domain teachers vs frozen teachers vs labels alone",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores, {machine.get('platform')}, "
        f"torch {machine.get('torch')}, {machine.get('torch_threads')} threads  ",
        f"Task: `tasks/universal-digits.yaml` with `BENCH` of `bench/udon_quality.py`: {json.dumps(config)}",
        "",
        "## Top-1 % per domain (over the domain's own classes)",
        "",
        *_table(summary, domains, "top1"),
        "",
        "## Recall@1 % of the embedding per domain (queries against the domain's other test images)",
        "",
        *_table(summary, domains, "recall_at_1"),
        "",
        "Mean ± std over training seeds (one data split). `mean`: the mean over domains, per seed. ms/step: training "
        "time per step (the specialist row: its three students' sum, for the same number of steps each).",
        "",
        "## Every run",
        "",
        "| variant | sampler | batches | seed | "
        + " | ".join(f"{d} top-1 / R@1 / mAP@5" for d in domains)
        + " | p_d final |",
        "|---|---|---|---|" + "---|" * (len(domains) + 1),
    ]
    for r in rows:
        cells = []
        for d in domains:
            s = r["domains"].get(d)
            cells.append("" if s is None else " / ".join(f"{v:.1f}" for v in s.values()))
        p = "" if r["p_final"] is None else ", ".join(f"{v:.2f}" for v in r["p_final"])
        name = f"{r['variant']} | {r['sampler']} | {r.get('batches', 'mixed')} | {r['seed']}"
        lines.append(f"| {name} | {' | '.join(cells)} | {p} |")
    if sampled:
        lines += ["", f"p_d final: the `udon` sampler's probabilities of {', '.join(domains)} at the last step."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=Path, default=REPO / "budgets" / "demo-cpu.yaml", help="input size only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (data split: the task's)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--samplers", nargs="+", default=["uniform", "udon"], choices=["uniform", "udon"])
    p.add_argument("--batches", nargs="+", default=["mixed"], choices=["mixed", "domain"], help="train.udon.batches")
    p.add_argument("--steps", type=int, default=None, help=f"override the steps ({BENCH['train']['steps']})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge these result JSONs into --out")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "udon_quality")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    command = "python bench/udon_quality.py " + " ".join(sys.argv[1:])
    machine = machine_info() | {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    config = BENCH | ({"steps": args.steps} if args.steps else {})
    args.out.parent.mkdir(parents=True, exist_ok=True)

    spent = 0  # merged: the parts' seconds

    def write(rows: list[dict[str, Any]]) -> None:  # after every run, so an interrupted benchmark keeps its rows
        seconds = spent + round(time.perf_counter() - t0)
        payload = {"command": command, "machine": machine, "config": config, "seconds": seconds}
        atomic_write_json(args.out.with_suffix(".json"), payload | {"rows": rows, "summary": summarise(rows)})
        atomic_write_text(args.out.with_suffix(".md"), markdown(rows, command, machine, config))

    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        command = "; ".join(part["command"] for part in parts)
        machine, config = parts[-1]["machine"], parts[-1]["config"]
        spent = sum(part["seconds"] for part in parts)
        keyed = {
            (r["variant"], r["sampler"], r.get("batches"), r["seed"], *r["domains"]): r
            for part in parts
            for r in part["rows"]
        }
        write(list(keyed.values()))
    else:
        run(args, write)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
