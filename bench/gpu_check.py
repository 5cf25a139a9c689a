"""The prepared GPU check: one script, one results file, at most 8 minutes on one GPU (`make gpu-check`).

    python bench/gpu_check.py [--out bench/results] [--dry-run]

Parts, each timed and written to `gpu_check.json` (+ a short `gpu_check.md`):

1. `amp_training`: bf16 AMP training of the 224-px pretrained bank (student family `timm`, `tf_efficientnet_lite0`,
   weights `packaged:efficientnet_lite0`) through edgedistill's trainer, against a bare timm training loop of the
   same network and batch in the same process, interleaved round by round (the first round of each is warm-up).
   The trainer runs CE only on the largest width, without augmentation, so both loops do the same work; the goal is
   edgedistill >= 80% of the bare loop's images/s. Checkpoint writes are timed apart and left out of the rate.
2. `resume`: the deterministic-resume check on CUDA: a run interrupted right after a checkpoint and resumed reaches
   bitwise the same weights as the uninterrupted run (`train.deterministic` kernels, bf16 autocast).
3. `teacher_cache`: the CUDA path of the teacher cache against its CPU path (features and logits of the same images).
4. `ort_cuda`: ONNX Runtime's CUDAExecutionProvider on an exported subnet (parity with the CPU provider, p50
   latency), or why it is not available.

`--dry-run` runs every part on the CPU at tiny sizes (seconds; for the tests): its numbers mean nothing and its
results file must not be committed. Without `--dry-run` a machine without CUDA is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

# cuBLAS reads it when its first handle is made: the resume part's deterministic kernels need it set before then.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedistill.data.images import ImageSet, TaskData  # noqa: E402
from edgedistill.data.preprocess import Preprocess  # noqa: E402
from edgedistill.distill import trainer  # noqa: E402
from edgedistill.distill.amp import deterministic  # noqa: E402
from edgedistill.distill.config import TrainConfig  # noqa: E402
from edgedistill.errors import BackendUnavailable, EdgedistillError  # noqa: E402
from edgedistill.models import build_bank, extract  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GOAL = 0.80  # edgedistill's training throughput as a share of the bare timm loop's


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: the GPU check, or the CPU dry run."""

    device: str
    amp: str  # train.amp
    image: int
    batch: int
    rounds: int  # timed rounds per loop, after one warm-up round
    round_steps: int
    warmup_steps: int
    resume_steps: int
    teacher_images: int
    teachers: tuple[str, ...]
    ort_runs: int
    ort_lite0: bool  # export the 224-px Lite0 subnet (False: a tiny resnet_cifar, which exports in seconds)


GPU = Sizes("cuda", "bf16", 224, 128, 3, 30, 10, 9, 2048, ("ccexam:usps", "packaged:efficientnet_lite0"), 300, True)
DRY = Sizes("cpu", "off", 32, 4, 1, 2, 1, 3, 16, ("ccexam:usps",), 10, False)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _images(n: int, size: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8)


def _task(size: int, n: int = 512) -> TaskData:
    labeled = ImageSet(_images(n, size, 3, 0), np.arange(n, dtype=np.int64) % 10)
    test = ImageSet(_images(16, size, 3, 1), np.arange(16, dtype=np.int64) % 10)
    return TaskData(
        "synthetic-224", [str(i) for i in range(10)], labeled, ImageSet(_images(16, size, 3, 2)), test, MEAN, STD
    )


class _TimedSaves:
    """Wraps the trainer's checkpoint writer and adds up its seconds (they are left out of the training rate)."""

    def __init__(self) -> None:
        self.real, self.seconds = trainer.save_checkpoint, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        t = time.perf_counter()
        try:
            return self.real(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def _edgedistill_round(bank: Any, data: TaskData, s: Sizes, steps: int, out: Path) -> float:
    """Seconds of `steps` trainer steps (CE on the largest width), checkpoint writes excluded."""
    cfg = TrainConfig(
        distiller="ce-only",
        steps=steps,
        num_sampled=1,
        batch_labeled=s.batch,
        batch_unlabeled=0,
        warmup_steps=0,
        augment=False,
        amp=s.amp,  # type: ignore[arg-type]
        channels_last=True,
        checkpoint_every=steps,
        keep_checkpoints=1,
    )
    pre = Preprocess(s.image, s.image, 3, MEAN, STD)
    saves = _TimedSaves()
    trainer.save_checkpoint = saves  # type: ignore[assignment]
    try:
        state = trainer.distill(bank, data, pre, cfg, out, torch.device(s.device), show_progress=False)
    finally:
        trainer.save_checkpoint = saves.real
    return state.seconds - saves.seconds


def _bare_round(
    net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, s: Sizes, steps: int
) -> float:
    """Seconds of `steps` plain timm training steps on the same on-device uint8 images and batch."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if s.amp == "bf16" else None
    _sync(s.device)
    t = time.perf_counter()
    for _ in range(steps):
        i = torch.randint(len(x), (s.batch,), generator=gen).to(x.device)
        xb = ((x[i].float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(s.device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(net(xb), y[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # the trainer reads every step's loss too
    _sync(s.device)
    return time.perf_counter() - t


def amp_training(s: Sizes, tmp: Path) -> dict[str, Any]:
    """edgedistill's trainer vs a bare timm loop, interleaved; images/s of each and the ratio."""
    import timm

    data = _task(s.image)
    bank = build_bank("timm", 10, 3, model="tf_efficientnet_lite0", weights="packaged:efficientnet_lite0")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).to(s.device)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4)
    x = torch.from_numpy(data.labeled.images).to(s.device)
    y = torch.from_numpy(data.labeled.labels).to(s.device)  # type: ignore[arg-type]
    ours, bare = [], []
    for r in range(s.rounds + 1):
        steps = s.warmup_steps if r == 0 else s.round_steps
        t_ours = _edgedistill_round(bank, data, s, steps, tmp / f"train-{r}")
        t_bare = _bare_round(net, opt, x, y, s, steps)
        if r > 0:  # round 0 warms up both (cuDNN autotuning, allocator)
            ours.append(steps * s.batch / t_ours)
            bare.append(steps * s.batch / t_bare)
    ed, plain = statistics.median(ours), statistics.median(bare)
    return {
        "network": "tf_efficientnet_lite0 (edgedistill bank: timm family, packaged:efficientnet_lite0; bare: timm)",
        "image": s.image,
        "batch": s.batch,
        "amp": s.amp,
        "steps_per_loop": s.warmup_steps + s.rounds * s.round_steps,
        "rounds": s.rounds,
        "edgedistill_images_per_s": ed,
        "bare_timm_images_per_s": plain,
        "edgedistill_rounds": ours,
        "bare_rounds": bare,
        "ratio": ed / plain,
        "goal": GOAL,
        "meets_goal": ed / plain >= GOAL,
    }


def resume(s: Sizes, tmp: Path) -> dict[str, Any]:
    """An interrupted and resumed run on the device reaches bitwise the same weights as the uninterrupted one."""
    n = s.resume_steps
    cut_at = n - n // 3
    rng = np.random.default_rng(0)
    labeled = ImageSet(rng.integers(0, 255, (32, 1, 16, 16), dtype=np.uint8), np.arange(32) % 4)
    data = TaskData("synthetic", list("abcd"), labeled, ImageSet(labeled.images), labeled, (0.5,), (0.5,))
    cfg = TrainConfig(
        distiller="ce-only", steps=n, checkpoint_every=cut_at, batch_labeled=8, batch_unlabeled=0, warmup_steps=1,
        num_sampled=3, amp=s.amp, deterministic=True,  # type: ignore[arg-type]
    )  # fmt: skip
    pre = Preprocess(16, 16, 1, (0.5,), (0.5,))

    def train(out: Path, resume: bool = False) -> torch.nn.Module:
        torch.manual_seed(0)
        bank = build_bank("resnet_cifar", 4, 1, width_choices=(0.5, 1.0), base_channels=(8, 8, 16))
        with deterministic(True):
            trainer.distill(bank, data, pre, cfg, out, torch.device(s.device), resume=resume, show_progress=False)
        return bank

    class Killed(Exception):
        pass

    reference = train(tmp / "full")
    real = trainer.save_checkpoint

    def save_then_die(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
        path = real(folder, step, state, keep)
        if step == cut_at:
            raise Killed
        return path

    trainer.save_checkpoint = save_then_die  # type: ignore[assignment]
    try:
        train(tmp / "cut")
    except Killed:
        pass
    finally:
        trainer.save_checkpoint = real
    torch.manual_seed(123)  # the RNG state must come from the checkpoint, not from here
    resumed = train(tmp / "cut", resume=True)
    ref, got = reference.state_dict(), resumed.state_dict()
    differ = [k for k in ref if not torch.equal(ref[k].cpu(), got[k].cpu())]
    return {"steps": n, "interrupted_after": cut_at, "amp": s.amp, "bitwise_identical": not differ, "differ": differ}


def teacher_cache(s: Sizes, tmp: Path) -> dict[str, Any]:
    """The teacher cache computed on the device against the CPU path, per teacher."""
    from edgedistill.teachers.cache import cache_teachers

    sets = {"unlabeled": ImageSet(_images(s.teacher_images, 28, 1, 3))}
    out = {}
    for source in s.teachers:
        t = time.perf_counter()
        (dev,) = cache_teachers([source], sets, tmp / "cache-device", device=s.device)
        t_dev = time.perf_counter() - t
        (cpu,) = cache_teachers([source], sets, tmp / "cache-cpu", device="cpu")
        f_dev, f_cpu = dev.sets["unlabeled"].features.read(), cpu.sets["unlabeled"].features.read()
        l_dev, l_cpu = dev.sets["unlabeled"].logits.read(), cpu.sets["unlabeled"].logits.read()
        out[source] = {
            "images": s.teacher_images,
            "device_seconds": t_dev,
            "features_max_abs_diff": float(np.abs(f_dev - f_cpu).max()),
            "logits_max_abs_diff": float(np.abs(l_dev - l_cpu).max()),
            "top1_agreement": float((l_dev.argmax(1) == l_cpu.argmax(1)).mean()),
        }
    return out


def ort_cuda(s: Sizes, tmp: Path) -> dict[str, Any]:
    """The 224-px subnet exported to ONNX, run with ONNX Runtime's CUDAExecutionProvider, against the CPU provider."""
    net = "tf_efficientnet_lite0" if s.ort_lite0 else "resnet_cifar (dry run)"
    from edgedistill.api.objects import export_onnx
    from edgedistill.bench.runtimes import ort_session

    if s.ort_lite0:
        bank = build_bank("timm", 10, 3, model="tf_efficientnet_lite0", weights="packaged:efficientnet_lite0")
    else:
        bank = build_bank("resnet_cifar", 10, 3, width_choices=(0.5, 1.0), base_channels=(8, 8, 16))
    subnet = extract(bank, bank.largest_config()).eval()
    path = export_onnx(subnet, tmp / "model.onnx", (1, 3, s.image, s.image))
    x = np.random.default_rng(0).standard_normal((1, 3, s.image, s.image), dtype=np.float32)
    cpu = ort_session(path, threads=4, device="cpu")
    try:
        cuda = ort_session(path, threads=1, device="cuda")
    except BackendUnavailable as e:
        return {"network": net, "image": s.image, "available": False, "why": str(e)}
    ref = cpu.run(None, {cpu.get_inputs()[0].name: x})[0]
    got = cuda.run(None, {cuda.get_inputs()[0].name: x})[0]
    times = []
    for _ in range(s.ort_runs):
        t = time.perf_counter()
        cuda.run(None, {cuda.get_inputs()[0].name: x})
        times.append((time.perf_counter() - t) * 1000)
    return {
        "network": net,
        "image": s.image,
        "available": True,
        "providers": cuda.get_providers(),
        "max_abs_diff_vs_cpu": float(np.abs(ref - got).max()),
        "p50_ms": statistics.median(times[len(times) // 10 :]),  # the first tenth is warm-up
        "runs": s.ort_runs,
    }


PARTS: dict[str, Callable[[Sizes, Path], dict[str, Any]]] = {
    "amp_training": amp_training,
    "resume": resume,
    "teacher_cache": teacher_cache,
    "ort_cuda": ort_cuda,
}


def machine(device: str) -> dict[str, Any]:
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    info: dict[str, Any] = {
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_pin": next((r for r in (metadata.requires("edgedistill") or []) if r.startswith("torch==")), None),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": version("timm"),
        "onnxruntime": version("onnxruntime") or version("onnxruntime-gpu"),
        "commit": commit.stdout.strip() or None,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": props.name,
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return info


def markdown(record: dict[str, Any]) -> str:
    m, p = record["machine"], record["parts"]
    lines = [
        "# GPU check" + (" (CPU dry run: not a measurement)" if record["dry_run"] else ""),
        "",
        f"Command: `{record['command']}`; {record['created']}; {record['total_seconds']:.0f} s in all.",
        "",
        f"Machine: {m.get('gpu', m['device'])}, torch {m['torch']} (pin {m['torch_pin']}), CUDA {m['cuda']}, "
        f"cuDNN {m['cudnn']}, timm {m['timm']}, onnxruntime {m['onnxruntime']}, commit {m['commit']}.",
        "",
        "| part | result | seconds |",
        "|---|---|---|",
    ]
    for name, part in p.items():
        text = f"error: {part['error']}" if "error" in part else SUMMARIES[name](part)
        lines.append(f"| {name} | {text} | {record['seconds'][name]:.1f} |")
    return "\n".join([*lines, ""])


def _amp_summary(p: dict[str, Any]) -> str:
    goal = f"goal ≥ {p['goal']:.0%}: {'met' if p['meets_goal'] else 'NOT met'}"
    rates = (
        f"edgedistill {p['edgedistill_images_per_s']:.0f} img/s vs bare timm {p['bare_timm_images_per_s']:.0f} img/s"
    )
    return f"{rates} = {p['ratio']:.0%} ({goal}); {p['image']} px, batch {p['batch']}, amp {p['amp']}"


def _cache_summary(p: dict[str, Any]) -> str:
    return "; ".join(
        f"{src}: max abs diff of features {v['features_max_abs_diff']:.2e}, top-1 agreement {v['top1_agreement']:.1%}"
        for src, v in p.items()
    )


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "amp_training": _amp_summary,
    "resume": lambda p: f"bitwise identical: {p['bitwise_identical']} ({p['steps']} steps, amp {p['amp']})",
    "teacher_cache": _cache_summary,
    "ort_cuda": lambda p: (
        f"CUDA EP p50 {p['p50_ms']:.3f} ms, max abs diff vs CPU {p['max_abs_diff_vs_cpu']:.2e}"
        if p["available"]
        else f"not available: {p['why']}"
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for gpu_check.json/.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, seconds: checks the script only")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device visible; run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else GPU
    torch.manual_seed(0)
    start = time.perf_counter()
    parts, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="edgedistill-gpu-check-") as tmp:
        for name, part in PARTS.items():
            t = time.perf_counter()
            try:
                parts[name] = part(sizes, Path(tmp) / name)
            except (EdgedistillError, RuntimeError) as e:  # one part failing must not cost the others' results
                parts[name] = {
                    "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                }
            seconds[name] = time.perf_counter() - t
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
    record = {
        "dry_run": args.dry_run,
        "command": " ".join(["python", "bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(sizes.device),
        "parts": parts,
        "seconds": seconds,
        "total_seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (args.out / "gpu_check.md").write_text(markdown(record), encoding="utf-8")
    print(markdown(record))
    print(args.out / "gpu_check.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
