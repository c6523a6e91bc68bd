"""Describe the machine a benchmark ran on, for the report next to its numbers."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "platform": platform.platform(), "date": datetime.now(UTC).strftime("%Y-%m-%d")}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def write_report(name: str, data: dict[str, Any], markdown: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    machine = describe()
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps({"machine": machine, **data}, indent=2) + "\n")
    header = (f"_Measured {machine['date']} on {machine['cpus']} × {machine['cpu_model']}, "
              f"Python {machine['python']}._\n\n")
    path = RESULTS_DIR / f"{name}.md"
    path.write_text(header + markdown.strip() + "\n")
    return path
