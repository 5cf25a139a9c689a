"""`report.md` from a merged report dict (see `merge_run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedistill.report.classes import per_class_lines
from edgedistill.report.domains import domain_lines
from edgedistill.report.tables import fmt as _f
from edgedistill.report.tables import table as _table


def _verdict_lines(report: dict[str, Any]) -> list[str]:
    budget = report.get("budget")
    if budget is None:
        return ["**Verdict: UNKNOWN** (no budget)", ""]
    lines = [
        f"**Verdict: {report['verdict']}** against budget `{budget['name']}` ({budget.get('description', '')}), "
        f"artifact `{report['budget_target']}`.",
        "",
    ]
    rows = []
    for c in report["checks"]:
        measured = "–" if c["value"] is None else f"{c['value']:.3f} {c['unit']}"
        margin = "–" if c["margin_pct"] is None else f"{c['margin_pct']:+.1f}%"
        verdict = ("PASS" if c["passed"] else "FAIL") + (f" ({c['note']})" if c["note"] else "")
        rows.append([c["name"], f"{c['limit']:g} {c['unit']}", measured, margin, verdict])
    return [*lines, *_table(["limit", "budget", "measured", "margin", "verdict"], rows), ""]


def _train_lines(train: dict[str, Any] | None, search: dict[str, Any] | None) -> list[str]:
    lines = ["## Training and search", ""]
    if train is None:
        return [*lines, "No training record (train.json).", ""]
    data = train.get("data") or {}
    lines.append(
        f"Task `{train.get('task')}`, student `{train.get('family')}`, distiller `{train.get('distiller')}`, "
        f"{train.get('steps')} steps in {_f(train.get('train_seconds'), 0)} s; {data.get('labeled')} labeled, "
        f"{data.get('unlabeled')} unlabeled, {data.get('test')} test images."
    )
    lines.append("")
    teachers = train.get("teachers") or []
    if teachers:
        rows = [
            [f"`{t['source']}`", _f(t.get("score"), 3), _f(t.get("alpha"), 3), _f(t.get("test_accuracy"))]
            for t in teachers
        ]
        lines += [*_table(["teacher", "score", "α", "test top-1 %"], rows), ""]
    widths = train.get("width_accuracy") or {}
    if widths:
        lines += [*_table(["width", *widths], [["test top-1 %", *(_f(v) for v in widths.values())]]), ""]
    chosen = (search or {}).get("chosen") or train.get("chosen")
    if chosen:
        lines.append(
            f"Chosen subnet: widths {chosen.get('config')} (channels {chosen.get('channels')}), "
            f"{chosen.get('macs', 0) / 1e6:.2f} M MACs, {chosen.get('params', 0) / 1e6:.3f} M params"
            + (f"; {search['feasible']} of {search['evaluated']} configs fit." if search else ".")
        )
        lines.append("")
    return lines + _confidence_lines(search)


def _ci(c: dict[str, Any]) -> str:
    ci = c.get("upem_ci")
    return "–" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _measured_verdict(measured: dict[str, Any]) -> str:
    """`fits` or the limits exceeded, and `, INT8 UPEM 97.300` for an INT8 candidate (the choice compares these)."""
    q = measured.get("int8_quality")
    return ("fits" if measured["fits"] else "; ".join(measured["over"])) + ("" if q is None else f", INT8 UPEM {q:.3f}")


def _confidence_lines(search: dict[str, Any] | None) -> list[str]:
    """The chosen config and its runner-ups with the UPEM and its interval, and the within-the-noise warning."""
    if not search or not search.get("chosen"):
        return []
    conf = search.get("confidence") or {}
    level = f"{conf.get('level', 0.95):.0%}"
    group = [search["chosen"], *(search.get("runner_ups") or [])]
    int8 = any(c.get("int8_agreement") is not None for c in group)  # an INT8 budget's measured shortlist
    rows = [
        ["chosen" if i == 0 else f"runner-up {i}", str(c.get("config")), _f(c.get("macs", 0) / 1e6),
         _f(c.get("upem"), 3), _ci(c), *([_f(c.get("int8_agreement"), 3)] if int8 else [])]
        for i, c in enumerate(group)
    ]  # fmt: skip
    header = ["", "widths", "MACs M", f"UPEM ({search.get('upem')})", f"{level} CI", *(["INT8 UPEM"] if int8 else [])]
    lines = [*_table(header, rows), ""]
    if conf:
        how = f"{conf.get('method')}, {conf.get('resamples')} redraws of {conf.get('images')} images"
        lines += [f"Intervals: {how}.", ""]
    if conf.get("warning"):
        lines += [f"**Warning:** {conf['warning']}.", ""]
    log = search.get("measure_log") or []
    if log:
        lines += ["Measured end to end, in order:", ""]
        lines += [f"- {m['config']}: {_measured_verdict(m)} ({m['why']})" for m in log]
        lines.append("")
    return lines


def _export_lines(exports: list[dict[str, Any]]) -> list[str]:
    lines = ["## Exports", ""]
    if not exports:
        return [*lines, "No exported artifacts.", ""]
    rows = []
    for e in exports:
        acc, cost, cal = e.get("accuracy") or {}, e.get("cost") or {}, e.get("calibration") or {}
        rows.append(
            [
                e["target"],
                _f(acc.get("fp32")),
                _f(acc.get("quantized")),
                _f(acc.get("fp32_balanced")),
                _f(acc.get("balanced")),
                _f(acc.get("drop_pts")) + ("" if acc.get("metric", "top1") == "top1" else " (balanced)"),
                _f(acc.get("agreement")),
                _f(cost.get("macs", 0) / 1e6),
                _f(cost.get("params", 0) / 1e6, 3),
                str(cal.get("count", "–")),
            ]
        )
    header = [
        "artifact",
        "FP32 top-1 %",
        "quantized top-1 %",
        "FP32 balanced %",
        "balanced %",
        "drop pts",
        "agreement %",
        "MACs M",
        "params M",
        "calibration images",
    ]
    return [*lines, *_table(header, rows), ""]


SENSITIVITY_ROWS = 10  # worst layers shown per artifact; the manifest has them all


def _sensitivity_rows(layers: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for layer in layers[:SENSITIVITY_ROWS]:
        d = layer.get("disagreement_pct")
        rows.append(
            [
                f"`{layer['node']}`",
                layer["op_type"],
                _f(layer["local_sqnr_db"], 1),
                _f(layer["sqnr_db"], 1),
                "not measured" if d is None else _f(d, 1),
            ]
        )
    return rows


def _sensitivity_lines(exports: list[dict[str, Any]]) -> list[str]:
    """Per INT8 artifact: the worst layers by single-layer disagreement, then local SQNR (`manifest.sensitivity`)."""
    int8 = [e for e in exports if e.get("precision") == "int8"]
    if not int8:
        return []
    lines = [
        "## INT8 sensitivity",
        "",
        "Per quantized layer, on unlabeled pool images: *SQNR* is the signal-to-quantization-noise ratio of its "
        "output in the all-INT8 model against FP32 (higher is better, about 6 dB per bit), *local SQNR* that of the "
        "error the layer adds itself, and *disagreement* the share of images whose top-1 differs from FP32 when only "
        "that layer is quantized (measured for the layers of lowest local SQNR). Most sensitive first; keep those "
        "in float with `--fallback auto`.",
        "",
    ]
    for e in int8:
        s = e.get("sensitivity")
        lines += [f"### {e['target']}", "", *_ladder_lines(e.get("ladder"))]
        if not s:
            lines += ["No sensitivity report (exported with `--sensitivity-images 0` or by an older version).", ""]
            continue
        layers = s.get("layers") or []
        lines += [
            f"{len(layers)} quantized layers, {s['images']} images ({s['source']}); all-INT8: logits SQNR "
            f"{_f(s['output_sqnr_db'], 1)} dB, top-1 disagreement {_f(s['disagreement_pct'], 1)}%. Disagreement "
            f"measured for the {s['top_k']} layers of lowest local SQNR. Method: {s['method']}.",
            "",
            *_table(["layer", "op", "local SQNR dB", "SQNR dB", "disagreement %"], _sensitivity_rows(layers)),
            "",
        ]
        if len(layers) > SENSITIVITY_ROWS:
            lines += [f"{len(layers) - SENSITIVITY_ROWS} more layers in `export/{e['target']}/manifest.json`.", ""]
    return lines


def _ladder_lines(ladder: dict[str, Any] | None) -> list[str]:
    """The post-training rungs `--fallback auto` tried (`manifest.ladder`), with each rung's drop."""
    if not ladder:
        return []
    steps = " → ".join(f"{r['rung']} {_f(r['drop_pts'], 2)} pts" for r in ladder.get("rungs", []))
    kept = f"kept `{ladder['chosen']}`" if ladder.get("chosen") else "none fit"
    return [f"Post-training ladder (drop vs FP32): {steps}; {kept}.", ""]


def _latency_lines(latency: list[dict[str, Any]]) -> list[str]:
    lines = ["## Latency", ""]
    if not latency:
        return [*lines, "Not measured (run `edgedistill bench`).", ""]
    rows = []
    for r in latency:
        s = r["stats"]
        rows.append(
            [
                r["timed"],
                r["label"],
                f"{r.get('threads')}/{r.get('batch')}",
                *(_f(s[k], 3) for k in ("p50", "p90", "p99", "mean", "std", "min", "max")),
                _f(s.get("throughput_ips"), 0),
                _f(r.get("peak_rss_mb"), 0),
                _f((r.get("model_size_bytes") or 0) / 1e6, 3),
                f"{_f(r.get('load_ms'), 0)} + {_f(r.get('first_inference_ms'))}",
            ]
        )
    header = [
        "timed",
        "runtime",
        "threads/batch",
        "p50",
        "p90",
        "p99",
        "mean",
        "std",
        "min",
        "max",
        "img/s",
        "peak RSS MB",
        "size MB",
        "load + first ms",
    ]
    lines += [*_table(header, rows), ""]
    splits = [r for r in latency if r.get("split")]
    if splits:
        rows = [
            [r["timed"], r["label"], *(_f(r["split"][k]["p50"], 3) for k in ("pre", "infer", "post"))] for r in splits
        ]
        lines += [
            "Pre-processing / inference / post-processing, p50 ms:",
            "",
            *_table(["artifact", "runtime", "pre", "infer", "post"], rows),
            "",
        ]
    machine = latency[0].get("machine") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (latency[0].get("versions") or {}).items())
    lines.append(
        f"Machine: {machine.get('cpu')} ({machine.get('usable_cores')} usable cores, governor "
        f"{machine.get('governor')}), {machine.get('platform')}; {versions}."
    )
    return [*lines, ""]


def _precision_lines(report: dict[str, Any]) -> list[str]:
    """INT8 against the best FP32 timing on its device (flagged under 1.1×), and the `precision: auto` decision."""
    speedups = [s for e in report.get("exports", []) for s in e.get("int8_speedup") or []]
    lines: list[str] = []
    if speedups:
        pays = {True: "yes", False: "**no**"}
        rows = [
            [Path(str(s["artifact"])).name, s["runtime"], s["device"], _f(s["int8_p50_ms"], 3), s["best_fp32"] or "–",
             _f(s["best_fp32_p50_ms"], 3), _f(s["speedup_vs_best_fp32"]), pays.get(s["pays"], "–")]
            for s in speedups
        ]  # fmt: skip
        header = ["INT8 artifact", "runtime", "device", "INT8 p50 ms", "best FP32", "FP32 p50 ms", "speedup ×", "pays"]
        lines += ["## INT8 vs FP32", "", *_table(header, rows), ""]
        lines += [f"**Warning:** {s['warning']}." for s in speedups if s.get("warning")]
        lines += [""] if any(s.get("warning") for s in speedups) else []
    choice = report.get("precision_choice")
    if choice:
        lines += ["## Deployed precision (auto)", "", f"Deployed `{choice['target']}`:", ""]
        lines += [*(f"- {r}" for r in choice.get("reasons", [])), ""]
    return lines


def render_markdown(report: dict[str, Any], plots: dict[str, str]) -> str:
    """The whole report.md; `plots` maps a caption to a PNG path relative to the report."""
    lines = [f"# Report: {report['run']}", "", *_verdict_lines(report)]
    lines += _train_lines(report.get("train"), report.get("search"))
    lines += domain_lines(report.get("train"))
    lines += _export_lines(report.get("exports", []))
    lines += per_class_lines(report.get("exports", []), report.get("budget_target"))
    lines += _sensitivity_lines(report.get("exports", []))
    lines += _latency_lines(report.get("latency", []))
    lines += _precision_lines(report)
    for caption, rel in plots.items():
        lines += [f"![{caption}]({rel})", ""]
    if report.get("missing"):
        lines += ["## Missing parts", "", *(f"- {m}" for m in report["missing"]), ""]
    return "\n".join(lines)
