"""`stepml console` JSON API: data for the page, and 4xx JSON (never a 500) for bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from infra_scripts.console.server import ConsoleServer
from infra_scripts.executions import Clients
from tests.workflow.helpers import chain_definition, create_machine, start, wait_status

UNKNOWN = "arn:aws:states:us-east-1:123456789012:execution:wf-console:no-such-run"


@pytest.fixture(scope="module")
def console(cloud):
    server = ConsoleServer(Clients(cloud.region, cloud.url)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def machine(cloud, step_arn) -> str:
    return create_machine(cloud, "wf-console", chain_definition(step_arn))


def call(console, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict]:
    """The console's own page's call: its token header, JSON bodies (``headers`` override)."""
    method = "POST" if body is not None else "GET"
    sent = {"X-Stepml-Token": console.token, "Content-Type": "application/json", **headers}
    request = urllib.request.Request(console.url + path, data=body, method=method,
                                     headers={k: v for k, v in sent.items() if v is not None})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_lists_state_machines_and_executions_and_describes_one(cloud, console, machine):
    arn = start(cloud, machine, "console-failed", {"fail_once": ["Deploy"]})
    wait_status(cloud, arn)
    status, machines = call(console, "/api/state-machines")
    assert status == 200 and machine in [m["arn"] for m in machines["stateMachines"]]
    status, listed = call(console, f"/api/executions?stateMachineArn={machine}")
    assert status == 200 and listed["executions"][0]["status"] == "FAILED"
    described = cloud.boto3_client("stepfunctions").describe_execution(executionArn=arn)
    expected = (described["stopDate"] - described["startDate"]).total_seconds()
    assert listed["executions"][0]["durationSeconds"] == round(expected, 1)
    status, detail = call(console, f"/api/execution?arn={arn}")
    assert status == 200 and detail["redrivable"] is True and detail["consoleUrl"] is None
    by_name = {s["name"]: s for s in detail["states"]}
    assert by_name["Prepare"]["status"] == "succeeded" and by_name["Deploy"]["status"] == "failed"
    assert by_name["Deploy"]["error"] == "EndpointNotReady"
    assert json.loads(by_name["Train"]["input"])["visited"] == ["Prepare"]
    assert 'data-state="Deploy"' in detail["svg"] and detail["events"][0]["type"] == "ExecutionStarted"


def test_redrive_through_the_console(cloud, console, machine):
    arn = start(cloud, machine, "console-redrive", {"fail_once": ["Train"]})
    wait_status(cloud, arn)
    status, body = call(console, "/api/redrive", json.dumps({"executionArn": arn}).encode())
    assert status == 200 and body["executionArn"] == arn
    assert wait_status(cloud, arn)["status"] == "SUCCEEDED"
    status, body = call(console, "/api/redrive", json.dumps({"executionArn": arn}).encode())
    assert status == 409 and body["error"] == "ExecutionNotRedrivable"


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    (f"/api/execution?arn={UNKNOWN}", None, 404, "ExecutionDoesNotExist"),
    ("/api/execution?arn=not-an-arn", None, 400, "InvalidArn"),
    ("/api/execution", None, 400, "MissingParameter"),
    ("/api/executions?stateMachineArn=arn:aws:states:us-east-1:123456789012:stateMachine:nope",
     None, 404, "StateMachineDoesNotExist"),
    ("/api/executions?stateMachineArn=%00%ff", None, 400, "InvalidArn"),
    ("/api/nothing-here", None, 404, "NotFound"),
    ("/api/redrive", b"{not json", 400, "InvalidJSON"),
    ("/api/redrive", b'["a list"]', 400, "MissingParameter"),
    ("/api/redrive", json.dumps({"executionArn": UNKNOWN}).encode(), 404, "ExecutionDoesNotExist"),
    ("/api/redrive", json.dumps({"executionArn": 42}).encode(), 400, "MissingParameter"),
])
def test_bad_requests_get_4xx_json(console, path, body, status, code):
    answered, payload = call(console, path, body)
    assert (answered, payload["error"]) == (status, code), payload
    assert "Traceback" not in payload["message"]


def test_the_page_is_served(console):
    with urllib.request.urlopen(console.url_with_token, timeout=10) as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html") and 'id="redrive-button"' in page
    assert "Access-Control-Allow-Origin" not in response.headers


def test_only_its_own_page_may_call_it(cloud, console, machine):
    """Issue 12: a token per start, its Host only, no other Origin, JSON POSTs only."""
    arn = start(cloud, machine, "console-guarded", {"fail_once": ["Deploy"]})
    assert wait_status(cloud, arn)["status"] == "FAILED"
    redrive = json.dumps({"executionArn": arn}).encode()
    host = console.url.removeprefix("http://")
    refusals = [
        (call(console, "/api/state-machines", **{"X-Stepml-Token": None}), 403, "InvalidToken"),
        (call(console, "/api/redrive", redrive, **{"X-Stepml-Token": "guess"}), 403, "InvalidToken"),
        (call(console, "/api/redrive", redrive, Host=f"rebound.example:{host.split(':')[1]}"), 403,
         "ForbiddenHost"),
        (call(console, "/api/redrive", redrive, Origin="http://evil.example"), 403, "ForbiddenOrigin"),
        (call(console, "/api/redrive", redrive, **{"Content-Type": "text/plain"}), 415,
         "UnsupportedMediaType"),
    ]
    for (status, payload), expected, code in refusals:
        assert (status, payload["error"]) == (expected, code), payload
    with pytest.raises(urllib.error.HTTPError) as page:
        urllib.request.urlopen(console.url + "/", timeout=10)
    assert page.value.code == 403
    described = cloud.boto3_client("stepfunctions").describe_execution(executionArn=arn)
    assert described["status"] == "FAILED" and not described.get("redriveCount")
