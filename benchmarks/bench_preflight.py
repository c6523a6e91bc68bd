"""`stepml preflight --local` wall time, and the cost preview against a hand computation
(issue 14).

Preflight: the CLI as a user runs it (a fresh process: interpreter start, imports, every check,
the cost preview) against a running local cloud, once per account profile, median of 5; the
baseline, measured in the same run, is `stepml --help` (the CLI's own start-up), so the ratio
says what the checks add.

Cost: the preview for the default config against the same figures worked out by hand below,
line by line, from AWS's published us-east-1 on-demand prices (the snapshot's values, typed in
again here rather than read from it).

Run: .venv/bin/python -m benchmarks.bench_preflight
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.machine import write_report
from infra_scripts import cost
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from statemachine.config import PipelineConfig

STEPML = [str(Path(sys.executable).with_name("stepml"))]  # the console script a user runs
RUNS = 5

# Published prices (us-east-1, on-demand), worked by hand for the default config.
HAND = {
    "training": 1 * 1.0 * 0.204,  # 1 × ml.c5.xlarge × the 1 h training deadline
    "transitions": (16 + 2 * (3600 + 600) / 30) * 0.025 / 1000,  # states + Wait/Check polls
    "s3 requests": 10_000 * (0.005 + 0.0004) / 1000,
    "endpoint at min": 1 * 730 * 0.102,  # ml.c5.large, 730 h a month
    "endpoint at max": 2 * 730 * 0.102,
    "provisioned": 80 * 0.5 * 730 * 3600 * 0.0000041667,  # 80 × 512 MB around the clock
    "s3 storage": 1 * 0.023,
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done.returncode


def preflight_times(profile: str) -> dict[str, Any]:
    settings = LocalCloudSettings(options={"account": {"profile": profile}})
    with LocalCloud(settings=settings) as cloud:
        env = {**os.environ, "STEPML_CONFIG": "/nonexistent.toml"}
        baseline = [timed([*STEPML, "--help"], env)[0] for _ in range(RUNS)]
        runs = [timed([*STEPML, "preflight", "--local", "--endpoint-url", cloud.url], env)
                for _ in range(RUNS)]
    seconds = [s for s, _ in runs]
    return {"profile": profile, "exit_codes": sorted({code for _, code in runs}),
            "median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2),
            "baseline_median_s": round(statistics.median(baseline), 2),
            "ratio": round(statistics.median(seconds) / statistics.median(baseline), 2)}


def cost_comparison() -> dict[str, Any]:
    estimate = cost.estimate(PipelineConfig(), cost.SnapshotPrices("us-east-1"))
    months = cost.monthly_totals(estimate)
    preview = {"run": estimate.total("run"), "month at min": months["min"],
               "month at max": months["max"]}
    hand = {"run": HAND["training"] + HAND["transitions"] + HAND["s3 requests"],
            "month at min": HAND["endpoint at min"] + HAND["provisioned"] + HAND["s3 storage"],
            "month at max": HAND["endpoint at max"] + HAND["provisioned"] + HAND["s3 storage"]}
    return {key: {"preview": round(preview[key], 2), "hand": round(hand[key], 2),
                  "difference_pct": round(100 * abs(preview[key] - hand[key]) / hand[key], 3)}
            for key in preview}


def markdown(preflight: list[dict[str, Any]], costs: dict[str, Any], load: str) -> str:
    lines = ["| `stepml preflight --local` | median | max | exit | baseline `stepml --help` | ratio |",
             "|---|---|---|---|---|---|"]
    for row in preflight:
        lines.append(f"| profile {row['profile']} | **{row['median_s']} s** | {row['max_s']} s | "
                     f"{row['exit_codes']} | {row['baseline_median_s']} s | {row['ratio']}× |")
    lines += ["", "| default config, us-east-1 | preview | hand | difference |", "|---|---|---|---|"]
    for key, row in costs.items():
        lines.append(f"| {key} | ${row['preview']:,.2f} | ${row['hand']:,.2f} | "
                     f"{row['difference_pct']} % |")
    lines += ["", f"Load average before: {load}."]
    return "\n".join(lines)


def main() -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    preflight = [preflight_times(profile) for profile in ("default", "new")]
    costs = cost_comparison()
    path = write_report("preflight", {"preflight": preflight, "cost": costs, "load_before": load},
                        markdown(preflight, costs, load))
    print(Path(path).read_text())


if __name__ == "__main__":
    main()
