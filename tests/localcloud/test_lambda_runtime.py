"""Lambda on the local cloud runs the deployed code: warm reuse, cold starts, parallelism,
timeouts, Lambda's error shape, reserved-concurrency throttling and provisioned pre-warming."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud
from tests.localcloud.lambda_helpers import create_function, invoke

NO_RETRIES = Config(retries={"total_max_attempts": 1}, max_pool_connections=50)

ECHO = """
import os

def handler(event, context):
    return {
        "event": event,
        "pid": os.getpid(),
        "function_name": context.function_name,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
    }
"""

# Each invocation registers itself in a directory, then waits until `expect` have registered
# (or gives up): two invocations can only both see 2 if they ran at the same time.
RENDEZVOUS = """
import os, time

def handler(event, context):
    folder = event["folder"]
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.time() + event.get("wait_s", 5)
    while time.time() < deadline and len(os.listdir(folder)) < event["expect"]:
        time.sleep(0.02)
    if event.get("hold_until"):
        while not os.path.exists(event["hold_until"]) and time.time() < deadline + 10:
            time.sleep(0.02)
    return {"seen": len(os.listdir(folder)), "pid": os.getpid()}
"""

RAISES = """
class ModelNotReady(Exception):
    pass

def handler(event, context):
    raise ModelNotReady("endpoint is still Creating")
"""

SLEEPS = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "done"
"""


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud() as running:
        yield running


def stats(cloud: LocalCloud, name: str):
    return cloud.extensions["awslambda.runtime"].stats[name]


def test_invoke_runs_the_code_with_context_and_environment(cloud):
    create_function(cloud, "echo", ECHO, Environment={"Variables": {"GREETING": "hi"}})
    response, payload = invoke(cloud, "echo", {"n": 1})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert payload["event"] == {"n": 1}
    assert payload["function_name"] == "echo"
    assert payload["greeting"] == "hi"
    assert payload["endpoint"] == cloud.url
    assert 0 <= payload["remaining_ms"] <= 5000  # never more than the configured timeout
    assert len(payload["request_id"]) == 36


def test_warm_worker_is_reused_and_first_call_is_a_cold_start(cloud):
    create_function(cloud, "warm", ECHO)
    _, first = invoke(cloud, "warm")
    _, second = invoke(cloud, "warm")
    assert first["pid"] == second["pid"]
    assert stats(cloud, "warm").cold_starts == 1
    assert stats(cloud, "warm").invocations == 2


def test_concurrent_invocations_run_in_parallel_on_separate_workers(cloud, tmp_path):
    create_function(cloud, "rendezvous", RENDEZVOUS, timeout=15)
    event = {"folder": str(tmp_path), "expect": 2}
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: invoke(cloud, "rendezvous", event)[1], range(2)))
    assert [r["seen"] for r in results] == [2, 2]
    assert results[0]["pid"] != results[1]["pid"]


def test_timeout_kills_the_worker_and_reports_task_timed_out(cloud):
    create_function(cloud, "sleepy", SLEEPS, timeout=1)
    response, payload = invoke(cloud, "sleepy", {"sleep": 30})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert stats(cloud, "sleepy").timeouts == 1
    response, payload = invoke(cloud, "sleepy", {"sleep": 0})
    assert payload == "done" and "FunctionError" not in response


def test_handler_exception_comes_back_in_lambdas_error_shape(cloud):
    create_function(cloud, "raises", RAISES)
    response, payload = invoke(cloud, "raises")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ModelNotReady"
    assert payload["errorMessage"] == "endpoint is still Creating"
    assert any("raise ModelNotReady" in line for line in payload["stackTrace"])


def test_log_tail_is_returned_when_asked(cloud):
    create_function(cloud, "logs", "def handler(e, c):\n    print('hello from the handler')\n    return 1\n")
    response = cloud.boto3_client("lambda").invoke(FunctionName="logs", LogType="Tail")
    import base64

    tail = base64.b64decode(response["LogResult"]).decode()
    assert "hello from the handler" in tail and "REPORT RequestId" in tail


def test_reserved_concurrency_throttles_the_call_past_the_cap(cloud, tmp_path):
    create_function(cloud, "capped", RENDEZVOUS, timeout=20)
    client = cloud.boto3_client("lambda", config=NO_RETRIES)
    client.put_function_concurrency(FunctionName="capped", ReservedConcurrentExecutions=2)
    release = tmp_path / "release"
    folder = tmp_path / "arrivals"
    folder.mkdir()
    event = {"folder": str(folder), "expect": 2, "hold_until": str(release)}
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(invoke, cloud, "capped", event) for _ in range(2)]
        _wait_for(lambda: len(list(folder.iterdir())) == 2)
        with pytest.raises(ClientError) as throttled:
            client.invoke(FunctionName="capped", Payload=json.dumps(event))
        release.touch()
        assert all(future.result()[1]["seen"] == 2 for future in running)
    error = throttled.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "TooManyRequestsException"
    assert stats(cloud, "capped").throttles == 1
    # Capacity is back once the in-flight calls finish.
    response = client.invoke(FunctionName="capped", Payload=json.dumps(
        {"folder": str(folder), "expect": 0}))
    assert response["StatusCode"] == 200


def test_provisioned_concurrency_prewarms_workers_on_the_alias(cloud):
    client = cloud.boto3_client("lambda")
    create_function(cloud, "prewarmed", ECHO)
    version = client.publish_version(FunctionName="prewarmed")["Version"]
    client.create_alias(FunctionName="prewarmed", Name="live", FunctionVersion=version)
    put = client.put_provisioned_concurrency_config(
        FunctionName="prewarmed", Qualifier="live", ProvisionedConcurrentExecutions=3)
    assert put["RequestedProvisionedConcurrentExecutions"] == 3
    _wait_for(lambda: client.get_provisioned_concurrency_config(
        FunctionName="prewarmed", Qualifier="live")["Status"] == "READY")
    config = client.get_provisioned_concurrency_config(FunctionName="prewarmed", Qualifier="live")
    assert config["AllocatedProvisionedConcurrentExecutions"] == 3
    cold_before = stats(cloud, "prewarmed").cold_starts
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: invoke(cloud, "prewarmed", Qualifier="live"), range(3)))
    assert stats(cloud, "prewarmed").cold_starts == cold_before
    listed = client.list_provisioned_concurrency_configs(FunctionName="prewarmed")
    assert len(listed["ProvisionedConcurrencyConfigs"]) == 1
    client.delete_provisioned_concurrency_config(FunctionName="prewarmed", Qualifier="live")
    with pytest.raises(ClientError) as missing:
        client.get_provisioned_concurrency_config(FunctionName="prewarmed", Qualifier="live")
    assert missing.value.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException"


def test_provisioned_concurrency_rejects_latest_and_more_than_reserved(cloud):
    client = cloud.boto3_client("lambda")
    create_function(cloud, "bounded", ECHO)
    version = client.publish_version(FunctionName="bounded")["Version"]
    client.put_function_concurrency(FunctionName="bounded", ReservedConcurrentExecutions=2)
    for qualifier, count in (("$LATEST", 1), (version, 3)):
        with pytest.raises(ClientError) as refused:
            client.put_provisioned_concurrency_config(
                FunctionName="bounded", Qualifier=qualifier, ProvisionedConcurrentExecutions=count)
        assert refused.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_bad_input_gets_aws_errors_and_the_cloud_keeps_serving(cloud):
    client = cloud.boto3_client("lambda", config=NO_RETRIES)
    create_function(cloud, "healthy", ECHO)
    create_function(cloud, "no-module", ECHO, handler="missing.handler")
    create_function(cloud, "no-function", ECHO, handler="app.nothing_here")
    with pytest.raises(ClientError) as unknown:
        client.invoke(FunctionName="does-not-exist", Payload=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    _, payload = invoke(cloud, "no-module")
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'missing'" in payload["errorMessage"]
    _, payload = invoke(cloud, "no-function")
    assert payload["errorType"] == "Runtime.HandlerNotFound"
    with pytest.raises(ClientError) as not_json:
        client.invoke(FunctionName="healthy", Payload=b"{not json")
    assert not_json.value.response["Error"]["Code"] == "InvalidRequestContentException"
    assert not_json.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    response, payload = invoke(cloud, "healthy", {"still": "serving"})
    assert payload["event"] == {"still": "serving"} and "FunctionError" not in response


def test_a_worker_that_dies_mid_invocation_is_replaced(cloud):
    create_function(cloud, "crashes", "import os\ndef handler(e, c):\n    if e.get('die'):\n"
                    "        os._exit(3)\n    return os.getpid()\n")
    response, payload = invoke(cloud, "crashes", {"die": True})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    response, pid = invoke(cloud, "crashes")
    assert isinstance(pid, int) and "FunctionError" not in response


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_cloud_lists_functions_through_the_standard_client(cloud):
    names = {f["FunctionName"] for f in cloud.boto3_client("lambda").list_functions()["Functions"]}
    assert "echo" in names
    assert threading.active_count() >= 1


def test_handler_output_lands_in_cloudwatch_logs(cloud):
    create_function(cloud, "logged",
                    "def handler(e, c):\n    print('training started', e['n'])\n    return 1\n")
    invoke(cloud, "logged", {"n": 7})
    logs = cloud.boto3_client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/lambda/logged")["logStreams"]
    assert len(streams) == 1 and "[$LATEST]" in streams[0]["logStreamName"]
    events = logs.get_log_events(logGroupName="/aws/lambda/logged",
                                 logStreamName=streams[0]["logStreamName"])["events"]
    messages = [event["message"] for event in events]
    assert "training started 7" in messages
    assert any(message.startswith("REPORT RequestId") for message in messages)


WHO_AM_I = """
import os
import boto3

def handler(event, context):
    return {"arn": boto3.client("sts").get_caller_identity()["Arn"],
            "has_token": bool(os.environ.get("AWS_SESSION_TOKEN"))}
"""


def test_an_invocation_runs_as_its_execution_role(cloud):
    """Issue 12: Lambda gives the handler its execution role's temporary credentials
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN), never the cloud's own keys."""
    create_function(cloud, "who-am-i", WHO_AM_I)
    _, payload = invoke(cloud, "who-am-i")
    assert payload["arn"] == f"arn:aws:sts::{cloud.account_id}:assumed-role/test-lambda-role/who-am-i"
    assert payload["has_token"] is True
