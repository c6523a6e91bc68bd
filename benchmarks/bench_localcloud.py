"""Local cloud overheads: Step Functions transition cost per warm no-op Lambda state, and Lambda
cold start vs warm invoke latency in the python3.11 runtime sandbox (awslambdaric over the local
Runtime API). The baseline, measured in the same run, is a control-plane call that reaches moto
and returns (ListAliases): warm invoke overhead is the invoke minus that round trip.

Run: .venv/bin/python -m benchmarks.bench_localcloud
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from benchmarks.machine import percentile, write_report
from infra_scripts.localcloud.core.server import LocalCloud
from tests.localcloud.lambda_helpers import create_function, lambda_role

NOOP = "def handler(event, context):\n    return event\n"
CHAIN_LENGTH = 20
EXECUTIONS = 5
COLD_FUNCTIONS = 20
WARM_INVOKES = 200


def chain_definition(function_arn: str, length: int) -> str:
    states: dict[str, Any] = {}
    for index in range(length):
        states[f"Noop{index}"] = {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
            "OutputPath": "$.Payload",
            **({"Next": f"Noop{index + 1}"} if index < length - 1 else {"End": True}),
        }
    return json.dumps({"StartAt": "Noop0", "States": states})


def wait_for_end(sfn: Any, arn: str) -> dict:
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.02)


def measure_transitions(cloud: LocalCloud) -> dict[str, Any]:
    function_arn = create_function(cloud, "noop", NOOP)["FunctionArn"]
    cloud.boto3_client("lambda").invoke(FunctionName="noop", Payload=b"{}")  # warm it
    sfn = cloud.boto3_client("stepfunctions")
    machine = sfn.create_state_machine(name="noop-chain", roleArn=lambda_role(cloud),
                                       definition=chain_definition(function_arn, CHAIN_LENGTH))
    per_state = []
    for run in range(EXECUTIONS):
        started = time.perf_counter()
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name=f"r{run}",
                                  input="{}")["executionArn"]
        described = wait_for_end(sfn, arn)
        assert described["status"] == "SUCCEEDED", described
        per_state.append((time.perf_counter() - started) * 1000 / CHAIN_LENGTH)
    return {"chain_length": CHAIN_LENGTH, "executions": EXECUTIONS,
            "per_state_ms_median": statistics.median(per_state), "per_state_ms_all": per_state}


def measure_invokes(cloud: LocalCloud) -> dict[str, Any]:
    client = cloud.boto3_client("lambda")
    cold = []
    for index in range(COLD_FUNCTIONS):
        create_function(cloud, f"cold{index}", NOOP)
        started = time.perf_counter()
        client.invoke(FunctionName=f"cold{index}", Payload=b"{}")
        cold.append((time.perf_counter() - started) * 1000)
    warm, baseline = [], []
    for _ in range(WARM_INVOKES):
        started = time.perf_counter()
        client.invoke(FunctionName="cold0", Payload=b"{}")
        warm.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.list_aliases(FunctionName="cold0")
        baseline.append((time.perf_counter() - started) * 1000)
    warm_median, baseline_median = statistics.median(warm), statistics.median(baseline)
    return {"cold_ms_median": statistics.median(cold), "cold_ms_p99": percentile(cold, 0.99),
            "warm_ms_median": warm_median, "warm_ms_p99": percentile(warm, 0.99),
            "baseline_ms_median": baseline_median, "warm_overhead_ms_median": warm_median - baseline_median,
            "cold_samples": COLD_FUNCTIONS, "warm_samples": WARM_INVOKES}


def main() -> None:
    with LocalCloud() as cloud:
        invokes = measure_invokes(cloud)
        transitions = measure_transitions(cloud)
    rows = [
        (f"Step Functions transition, warm no-op Lambda state (median of {EXECUTIONS} runs of a "
         f"{CHAIN_LENGTH}-state chain)", f"{transitions['per_state_ms_median']:.1f} ms/state", "≤ 50 ms"),
        (f"Lambda cold start invoke, median / p99 ({COLD_FUNCTIONS} functions)",
         f"{invokes['cold_ms_median']:.1f} / {invokes['cold_ms_p99']:.1f} ms", "≤ 150 ms median"),
        (f"Lambda warm invoke, median / p99 ({WARM_INVOKES} calls)",
         f"{invokes['warm_ms_median']:.1f} / {invokes['warm_ms_p99']:.1f} ms", "—"),
        ("baseline: ListAliases round trip (moto, same server), median",
         f"{invokes['baseline_ms_median']:.1f} ms", "—"),
        ("Lambda warm invoke overhead over the baseline, median",
         f"{invokes['warm_overhead_ms_median']:.1f} ms", "≤ 5 ms"),
        ("cold / warm median ratio", f"{invokes['cold_ms_median'] / invokes['warm_ms_median']:.1f}×", "—"),
    ]
    markdown = "| measure | value | goal |\n|---|---|---|\n" + "\n".join(
        f"| {measure} | {value} | {goal} |" for measure, value, goal in rows)
    path = write_report("localcloud", {"transitions": transitions, "invokes": invokes}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
