"""Prefix every line read from stdin with the seconds since the start, and end with the longest gap between lines.

Used to check that a long command streams progress: `edgedistill train ... 2>&1 | python bench/line_gaps.py`.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    start = last = time.monotonic()
    gap = 0.0
    for line in sys.stdin:
        now = time.monotonic()
        gap, last = max(gap, now - last), now
        sys.stdout.write(f"[{now - start:7.1f}s] {line}")
        sys.stdout.flush()
    sys.stdout.write(f"[longest gap between lines: {gap:.1f}s]\n")


if __name__ == "__main__":
    main()
