"""The shared head and output of the benchmark reports: where they ran, and printed + saved text."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pldc_core.atomic import write_text  # noqa: E402


def machine_line(seconds: float | None = None) -> str:
    """``machine: x86_64, 2 cores, load average 0.31[; 12 s in all]``."""
    line = f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    return line if seconds is None else f"{line}; {seconds:.0f} s in all"


def emit(lines: list[str], out: str | None) -> None:
    """Print the report and, if ``out`` is given, write it there (atomically)."""
    report = "\n".join(lines)
    print(report)
    if out:
        write_text(out, report + "\n")
