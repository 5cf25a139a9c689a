"""Writing a benchmark's results: OUT.json (the record) and OUT.md (its table), and the machine line both carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def machine_line(m: dict[str, Any]) -> str:
    """`AMD EPYC (avx2, fma), 2 usable cores` from `edgedistill.bench.machine.machine_info()`."""
    return (
        f"{m.get('cpu', '?')} ({', '.join(m.get('cpu_flags', [])) or '?'}), {m.get('usable_cores', '?')} usable cores"
    )


def write_results(out: Path, record: dict[str, Any], markdown: list[str]) -> None:
    """OUT.json and OUT.md (the folder is created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(markdown))
