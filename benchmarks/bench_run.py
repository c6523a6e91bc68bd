"""`stepml run` end to end: wall time of the command on the default sample, after install, for
both training backends (median of 3 each), with the test accuracy it reached. Every Lambda
state runs in the python3.11 runtime sandbox. Goal: ≤ 30 s median, ≥ 0.9.

Run: .venv/bin/python -m benchmarks.bench_run
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import write_report

STEPML = Path(sys.executable).with_name("stepml")
ACCURACY = re.compile(r"test accuracy\s*│\s*([0-9.]+)")


def run_once(backend: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(STEPML), "run", "--backend", backend], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "120"}, timeout=900)
    seconds = time.perf_counter() - started
    accuracy = ACCURACY.search(done.stdout)
    return {"backend": backend, "exit_code": done.returncode, "seconds": round(seconds, 1),
            "succeeded": "SUCCEEDED" in done.stdout and done.returncode == 0,
            "test_acc": float(accuracy.group(1)) if accuracy else None}


REPEATS = 3


def main() -> None:
    runs = [run_once(backend) for backend in ("sagemaker", "ec2") for _ in range(REPEATS)]
    rows = []
    for backend in ("sagemaker", "ec2"):
        mine = [r for r in runs if r["backend"] == backend]
        times = ", ".join(f"{r['seconds']:.1f}" for r in mine)
        results = "/".join("SUCCEEDED" if r["succeeded"] else f"FAILED (exit {r['exit_code']})" for r in mine)
        median = statistics.median(r["seconds"] for r in mine)
        accuracies = ", ".join(str(r["test_acc"]) for r in mine)
        rows.append(f"| `stepml run --backend {backend}` | {median:.1f} s ({times}) | {accuracies} "
                    f"| {results} |")
    markdown = f"""
| command | wall time, median (runs) | test accuracy | result |
|---|---|---|---|
{chr(10).join(rows)}

Goal: ≤ 30 s median with test accuracy ≥ 0.9. Wall time of the whole command (Python start,
local cloud, deploy, dataset generation and upload, the execution, summary).
"""
    print(write_report("run", {"runs": runs}, markdown).read_text())


if __name__ == "__main__":
    main()
