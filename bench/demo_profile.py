"""Profile of `make demo`: wall time of each command and of every stage inside them.

Runs the four `make demo` commands, each in its own process as `make demo` does, from a fresh run folder (so the
teacher cache, which lives in the run folder, starts cold):

    edgedistill train --budget budgets/demo-cpu.yaml --out RUN --overwrite
    edgedistill export --run RUN
    edgedistill bench --run RUN --widths
    edgedistill report RUN

and times each. `train` reports its own stages (`train.json` `stage_seconds`: data, teacher check + ranking + cache,
training steps, BN recalibration and evaluation of every uniform width, search, chosen-subnet evaluation). With
`--cprofile`, every command also runs under cProfile (slower: the figures then add the profiler's overhead) and the
cumulative time of the calls listed in `CALLS` is reported, which splits export and bench into their parts.

Usage (nothing else on the cores): python bench/demo_profile.py [--run runs/demo-profile] [--cprofile]
Writes bench/results/demo_profile.{md,json} (`--label NAME` keeps several profiles side by side in them).
"""

from __future__ import annotations

import argparse
import json
import pstats
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgedistill.bench.machine import machine_info, package_versions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

# (file suffix, function name) of the calls whose cumulative time splits a command into its parts
CALLS = {
    "train": [
        ("pipeline/train.py", "_check_teachers"),
        ("teachers/cache.py", "_compute_entry"),
        ("distill/multisource.py", "prepare_teachers"),
        ("distill/trainer.py", "distill"),
        ("models/bn.py", "recalibrate_bn"),
        ("distill/evaluate.py", "accuracy"),
        ("pipeline/search.py", "choose_subnet"),
        ("search/verify.py", "verify"),
    ],
    "export": [
        ("pipeline/context.py", "load_context"),
        ("export/torch2onnx.py", "torch_to_onnx"),
        ("export/torch2onnx.py", "onnx_parity"),
        ("export/accuracy.py", "onnx_accuracy"),
        ("export/onnx2ort_int8.py", "quantize_onnxruntime"),
        ("export/layer_report.py", "export_sensitivity"),
    ],
    "bench": [
        ("bench/launch.py", "run_isolated"),
        ("pipeline/bench.py", "calibration_input"),
        ("pipeline/bench_widths.py", "bench_widths"),
        ("export/torch2onnx.py", "torch_to_onnx"),
    ],
    "report": [("pipeline/report.py", "write_report")],
}


def commands(run: str, budget: str) -> list[tuple[str, list[str]]]:
    """`make demo`'s four commands (the CLI arguments after `edgedistill`)."""
    return [
        ("train", ["train", "--budget", budget, "--out", run, "--overwrite"]),
        ("export", ["export", "--run", run]),
        ("bench", ["bench", "--run", run, "--widths"]),
        ("report", ["report", run]),
    ]


def _calls(prof: Path, wanted: list[tuple[str, str]]) -> dict[str, float]:
    """Cumulative seconds of each wanted function (summed over its definitions that match)."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.items():
        for suffix, fn in wanted:
            if name == fn and filename.replace("\\", "/").endswith(suffix):
                key = f"{suffix.rsplit('/', 1)[-1].removesuffix('.py')}.{fn}"
                out[key] = out.get(key, 0.0) + ct
    return {k: round(v, 2) for k, v in out.items()}


def run_demo(run: str, budget: str, profile: bool) -> dict[str, Any]:
    """Time every command; with `profile`, also the listed calls inside each."""
    out: dict[str, Any] = {"commands": {}, "calls": {}}
    with tempfile.TemporaryDirectory(prefix="demo-profile-") as tmp:
        for name, args in commands(run, budget):
            prof = Path(tmp) / f"{name}.prof"
            head = [sys.executable, "-m", "cProfile", "-o", str(prof)] if profile else [sys.executable]
            t = time.perf_counter()
            subprocess.run([*head, "-m", "edgedistill", *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            out["commands"][name] = round(time.perf_counter() - t, 1)
            print(f"{name}: {out['commands'][name]} s", flush=True)
            if profile:
                out["calls"][name] = _calls(prof, CALLS[name])
    train = json.loads((REPO / run / "train.json").read_text())
    out["total"] = round(sum(out["commands"].values()), 1)
    out["stage_seconds"] = train["stage_seconds"]
    out["width_accuracy"] = train["width_accuracy"]
    out["chosen"] = {k: train["chosen"][k] for k in ("config", "macs", "test_accuracy")}
    manifest = json.loads((REPO / run / "export" / "onnxruntime-int8" / "manifest.json").read_text())
    out["int8"] = {k: manifest["accuracy"][k] for k in ("fp32", "artifact", "drop_pts")}
    deployed = REPO / run / "bench" / "deployed.json"  # precision auto: what bench deployed
    out["deployed"] = json.loads(deployed.read_text())["target"] if deployed.is_file() else "onnxruntime-int8"
    return out


def _markdown(record: dict[str, Any]) -> str:
    lines = [
        "# `make demo` profile",
        "",
        "Each profile runs `make demo`'s four commands (`train --overwrite`, `export`, `bench --widths`,",
        "`report`), each in its own process, from a fresh run folder: the teacher cache starts cold. Seconds of wall",
        "time; `train`'s stages come from its `train.json` (`stage_seconds`). Profiles with cProfile on add its",
        "overhead to every figure; they split the commands into their calls.",
        "",
    ]
    for label, p in record["profiles"].items():
        m = p["machine"]
        lines += [
            f"## {label}",
            "",
            f"Command: `{p['command']}` ({p['created']}, commit `{p['commit']}`).  ",
            f"Machine: {m['cpu']} ({', '.join(m['cpu_flags'])}), {m['usable_cores']} usable cores; "
            + ", ".join(f"{k} {v}" for k, v in p["versions"].items())
            + ".",
            "",
            "| command | " + " | ".join(p["commands"]) + " | **`make demo`** |",
            "|---" * (len(p["commands"]) + 2) + "|",
            "| seconds | " + " | ".join(f"{v:.1f}" for v in p["commands"].values()) + f" | **{p['total']:.1f}** |",
            "",
            "| `train` stage | " + " | ".join(p["stage_seconds"]) + " |",
            "|---" * (len(p["stage_seconds"]) + 1) + "|",
            "| seconds | " + " | ".join(f"{v:.1f}" for v in p["stage_seconds"].values()) + " |",
            "",
        ]
        for cmd, calls in p.get("calls", {}).items():
            if calls:
                lines += [
                    f"`{cmd}` under cProfile (cumulative seconds, calls overlap): "
                    + ", ".join(f"`{k}` {v:.1f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
                    + ".",
                    "",
                ]
        acc = " / ".join(f"{w}: {a:.2f}" for w, a in p["width_accuracy"].items())
        c, i8 = p["chosen"], p["int8"]
        lines += [
            f"Accuracy (test top-1 %, 10,000 images): widths {acc}; chosen subnet {c['config']} "
            f"({c['macs'] / 1e6:.2f} M MACs) {c['test_accuracy']:.2f}; ONNX Runtime FP32 {i8['fp32']:.2f}, "
            f"INT8 {i8['artifact']:.2f} (drop {i8['drop_pts']:+.2f} pts); deployed "
            f"{p.get('deployed', 'onnxruntime-int8')}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/demo-profile", help="run folder (replaced)")
    p.add_argument("--budget", default="budgets/demo-cpu.yaml")
    p.add_argument("--cprofile", action="store_true", help="also split each command into its calls (slower)")
    p.add_argument("--label", default=None, help="name of this profile in the results (default: by mode)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    machine = machine_info()
    result = run_demo(a.run, a.budget, a.cprofile)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    profile = {
        "command": shlex.join(["python", "bench/demo_profile.py", *(sys.argv[1:] if argv is None else argv)]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() or None,
        "machine": machine,
        "versions": package_versions(["torch", "onnxruntime", "numpy"]),
    } | result
    path = a.out / "demo_profile.json"
    record = json.loads(path.read_text()) if path.is_file() else {"profiles": {}}
    record["profiles"][a.label or ("cProfile" if a.cprofile else "wall time")] = profile
    a.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    (a.out / "demo_profile.md").write_text(_markdown(record))
    print(f"make demo: {result['total']:.1f} s; wrote {a.out / 'demo_profile.md'}")


if __name__ == "__main__":
    main()
