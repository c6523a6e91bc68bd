"""`stepml run` end to end with the local cloud's identity checks on (the default: every request's
SigV4 signature verified, every role's request authorized against its policies) vs off
(`--no-iam`), in the same run: alternating on/off, REPEATS each, SageMaker backend. Figure: the
ratio of the medians. Goal: ≤ 1.1×.

Run: .venv/bin/python -m benchmarks.bench_enforcement
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import write_report

STEPML = Path(sys.executable).with_name("stepml")
REPEATS = 3
MODES = {"on": [], "off": ["--no-iam"]}


def run_once(mode: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(STEPML), "run", "--backend", "sagemaker", *MODES[mode]],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"},
                          timeout=900)
    return {"mode": mode, "seconds": round(time.perf_counter() - started, 1),
            "succeeded": done.returncode == 0 and "SUCCEEDED" in done.stdout}


def main() -> None:
    runs = [run_once(mode) for _ in range(REPEATS) for mode in MODES]
    medians = {mode: statistics.median(r["seconds"] for r in runs if r["mode"] == mode)
               for mode in MODES}
    ratio = medians["on"] / medians["off"]
    rows = [f"| {mode} | {medians[mode]:.1f} s "
            f"({', '.join(str(r['seconds']) for r in runs if r['mode'] == mode)}) | "
            f"{'/'.join('SUCCEEDED' if r['succeeded'] else 'FAILED' for r in runs if r['mode'] == mode)} |"
            for mode in MODES]
    markdown = f"""
| identity checks | `stepml run --backend sagemaker`, median (runs) | result |
|---|---|---|
{chr(10).join(rows)}

On / off: **{ratio:.2f}×** (goal ≤ 1.1×). Off is `--no-iam`: no signature verification, no
policy evaluation. Runs alternate on/off.
"""
    print(write_report("enforcement", {"runs": runs, "medians_s": medians, "ratio": round(ratio, 3)},
                       markdown).read_text())


if __name__ == "__main__":
    main()
