"""`stepml local-cloud` serves a port that plain boto3 clients (endpoint_url) can use."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3

STEPML = Path(sys.executable).with_name("stepml")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listening on {port}")


def test_standalone_local_cloud_answers_standard_clients():
    port = free_port()
    server = subprocess.Popen([str(STEPML), "local-cloud", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port)
        session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        url = f"http://127.0.0.1:{port}"
        sfn = session.client("stepfunctions", endpoint_url=url)
        machine = sfn.create_state_machine(
            name="hello", roleArn="arn:aws:iam::123456789012:role/r",
            definition='{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}')
        execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")
        assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == ["hello"]
        listed = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
        assert [e["executionArn"] for e in listed] == [execution["executionArn"]]
        assert session.client("lambda", endpoint_url=url).list_functions()["Functions"] == []
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}" in output
    assert server.returncode in (0, -15)
