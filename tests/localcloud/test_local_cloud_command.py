"""`stepml local-cloud` serves a port that plain boto3 clients (endpoint_url) can use."""

from __future__ import annotations

import os
import shlex
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


def exported(line_source) -> dict[str, str]:
    """The variables of `export NAME=value` lines, as a shell would read them."""
    found = {}
    for line in line_source:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").strip().partition("=")
            found[name] = shlex.split(value)[0]
        if len(found) == 4:
            return found
    raise AssertionError(f"export lines missing: {found}")


def test_standalone_local_cloud_answers_standard_clients():
    port = free_port()
    server = subprocess.Popen([str(STEPML), "local-cloud", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "40"})  # a narrow terminal: no wrapping
    try:
        variables = exported(server.stdout)
        wait_for_port(port)
        assert set(variables) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                  "AWS_DEFAULT_REGION"}
        assert variables["AWS_ACCESS_KEY_ID"].startswith("LKIA")
        session = boto3.Session(aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
                                region_name=variables["AWS_DEFAULT_REGION"])
        url = variables["AWS_ENDPOINT_URL"]
        assert url == f"http://127.0.0.1:{port}"
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
    assert server.returncode in (0, -15)


def test_env_file_holds_the_exports_and_nothing_prints_them(tmp_path: Path):
    port, env_file = free_port(), tmp_path / "cloud.env"
    server = subprocess.Popen([str(STEPML), "local-cloud", "--port", str(port), "--env-file",
                               str(env_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists() or "AWS_DEFAULT_REGION" not in env_file.read_text():
            assert time.monotonic() < deadline, "no env file written"
            time.sleep(0.2)
        variables = exported(env_file.read_text().splitlines())
        assert env_file.stat().st_mode & 0o777 == 0o600
        sts = boto3.client("sts", endpoint_url=variables["AWS_ENDPOINT_URL"], region_name="us-east-1",
                           aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"])
        assert sts.get_caller_identity()["Account"]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert variables["AWS_SECRET_ACCESS_KEY"] not in output and f"source {env_file}" in output


def test_no_iam_warns_and_accepts_unsigned_requests_while_the_default_refuses_them():
    import urllib.error
    import urllib.request

    def unsigned_status(port: int) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/",
                                         data=b"Action=GetCallerIdentity&Version=2011-06-15")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    statuses, outputs = {}, {}
    for flags in ((), ("--no-iam",)):
        port = free_port()
        server = subprocess.Popen([str(STEPML), "local-cloud", "--port", str(port), *flags],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            exported(server.stdout)  # started: its export lines are out
            statuses[flags] = unsigned_status(port)
        finally:
            server.terminate()
            _, outputs[flags] = server.communicate(timeout=30)
    assert statuses == {(): 403, ("--no-iam",): 200}
    assert "warning: --no-iam" in outputs[("--no-iam",)] and "warning" not in outputs[()]
