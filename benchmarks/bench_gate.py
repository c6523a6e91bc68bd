"""Seconds the model registry and the evaluation gate add to `stepml run` (issue 13).

Runs the whole pipeline in-process on a fresh local cloud (as `stepml run` does, SageMaker
backend, the default sample) and reads, from the execution's history, how long its
RegisterModel and EvaluationGate states took (entered → exited, the Lambda sandbox's start
included). The same-run baseline is the run's own wall time. Goal: ≤ 5 s added.

Not counted: the evaluation inside the training job (per-class metrics on the test split, and
the live model scored on it when there is one); on a fresh cloud there is no live model, so a
first `stepml run` does not score a baseline.

Run: .venv/bin/python -m benchmarks.bench_gate [--runs 2]
"""

from __future__ import annotations

import argparse
import statistics

from rich.console import Console

from benchmarks.machine import write_report
from infra_scripts.run import run_pipeline
from statemachine.config import PipelineConfig

GATE_STATES = ("RegisterModel", "EvaluationGate")


def run_once() -> dict:
    outcome = run_pipeline(PipelineConfig(), "sagemaker", Console(quiet=True))
    ran = [outcome.view.states[name] for name in GATE_STATES if name in outcome.view.states]
    states = {run.name: round((run.exited - run.entered).total_seconds(), 2) for run in ran if run.exited}
    added = sum(states.values())
    decision = outcome.output.get("gate_decision", {}).get("decision")
    return {"status": outcome.status, "run_seconds": round(outcome.seconds, 1), "states": states,
            "added_seconds": round(added, 2), "decision": decision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    runs = [run_once() for _ in range(parser.parse_args().runs)]
    rows = "\n".join(
        f"| {i} | {r['status']} ({r['decision']}) | {r['run_seconds']:.1f} s | "
        + " | ".join(f"{r['states'].get(s, float('nan')):.2f} s" for s in GATE_STATES)
        + f" | {r['added_seconds']:.2f} s | {r['added_seconds'] / r['run_seconds']:.1%} |"
        for i, r in enumerate(runs, 1))
    median = statistics.median(r["added_seconds"] for r in runs)
    markdown = f"""
| run | result (gate) | `stepml run` wall time | RegisterModel | EvaluationGate | added | share of the run |
|---|---|---|---|---|---|---|
{rows}

Median added: **{median:.2f} s** (goal ≤ 5 s). State durations from the execution history
(entered → exited), each Lambda sandbox start included.
"""
    print(write_report("gate", {"runs": runs}, markdown).read_text())


if __name__ == "__main__":
    main()
