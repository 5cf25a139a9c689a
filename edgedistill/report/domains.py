"""report.md sections of a multi-domain run: the universal evaluation per domain and the domain sampler's p_d."""

from __future__ import annotations

from typing import Any

from edgedistill.report.tables import table as _table

MAX_ROWS = 8  # p_d over time: at most this many logged steps, evenly spaced, the last one included


def _universal_lines(u: dict[str, Any]) -> list[str]:
    k = u["map_k"]
    rows = [
        [label, name, *(f"{s[key]:.2f}" for key in ("top1", "recall_at_1", f"map_at_{k}"))]
        for which, label in (("subnet", "chosen subnet"), ("largest", "largest width"))
        for name, s in (u.get(which) or {}).items()
    ]
    return [
        "## Universal evaluation",
        "",
        "Per domain of the test split: top-1 over the domain's own classes; the embedding (the pooled features before "
        f"the head) ranks the domain's other test images by cosine similarity: recall@1 and mAP@{k}.",
        "",
        *_table(["network", "domain", "top-1 %", "recall@1 %", f"mAP@{k} %"], rows),
        "",
    ]


def _sampling_lines(ds: dict[str, Any]) -> list[str]:
    over = dict(ds.get("over_time") or {})
    steps = over.pop("step", [])
    if not steps:
        return []
    stride = max(1, -(-len(steps) // MAX_ROWS))
    picked = sorted({*range(len(steps) - 1, -1, -stride)})
    rows = [[str(steps[i]), *(f"{over[name][i]:.3f}" for name in over)] for i in picked]
    return [
        "## Domain sampling",
        "",
        f"Sampler `{ds.get('sampler')}` (floor {ds.get('floor')}): probability p_d of drawing each domain's batches, "
        "at logged steps (mean over the steps since the previous one).",
        "",
        *_table(["step", *over], rows),
        "",
    ]


def domain_lines(train: dict[str, Any] | None) -> list[str]:
    """The two sections from train.json's `universal` and `domain_sampling` (nothing for a one-domain run)."""
    if not train:
        return []
    lines = _universal_lines(train["universal"]) if train.get("universal") else []
    return lines + (_sampling_lines(train["domain_sampling"]) if train.get("domain_sampling") else [])
