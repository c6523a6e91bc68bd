"""`stepml run` end to end (issue 5): wall time of the command on the default sample, after
install, for both training backends, with the test accuracy it reached. Goal: ≤ 60 s, ≥ 0.9.

Run: .venv/bin/python -m benchmarks.bench_run
"""

from __future__ import annotations

import os
import re
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


def main() -> None:
    runs = [run_once(backend) for backend in ("sagemaker", "ec2")]
    rows = "\n".join(
        f"| `stepml run --backend {r['backend']}` | {r['seconds']:.1f} s | {r['test_acc']} | "
        f"{'SUCCEEDED' if r['succeeded'] else 'FAILED (exit ' + str(r['exit_code']) + ')'} |"
        for r in runs)
    markdown = f"""
| command | wall time | test accuracy | result |
|---|---|---|---|
{rows}

Goal: ≤ 60 s with test accuracy ≥ 0.9. Wall time of the whole command (Python start, local
cloud, deploy, dataset generation and upload, the execution, summary).
"""
    print(write_report("run", {"runs": runs}, markdown).read_text())


if __name__ == "__main__":
    main()
