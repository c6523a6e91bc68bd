"""The console in a real browser: Debian's chromium driven by Playwright (never a downloaded
browser). Loads the console, opens a failed execution, checks the state colours, clicks Redrive
and watches the execution go RUNNING → SUCCEEDED; saves a screenshot to test-artifacts/."""

from __future__ import annotations

import os
import shutil

import pytest

from infra_scripts.console.server import ConsoleServer
from infra_scripts.executions import Clients
from statemachine.graph import STATUS_COLORS
from tests.workflow.helpers import calls, chain_definition, create_machine, start, wait_status

CHROMIUM = os.environ.get("STEPML_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# In CI (CI=true, as .ci/run sets) a missing browser fails the run instead of skipping the test.
REQUIRED = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]



def require(available: bool, reason: str) -> None:
    if available:
        return
    if REQUIRED:
        pytest.fail(f"{reason}; CI=true requires the browser test", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    require(False, "playwright not installed (dev extra)")
require(os.path.exists(CHROMIUM), f"chromium not found at {CHROMIUM} (`make test` installs Debian's)")


def rgb(hex_color: str) -> str:
    value = hex_color.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i:i + 2], 16) for i in (0, 2, 4)))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def fill_of(page, state: str) -> str:
    return page.eval_on_selector(f'#graph g.state[data-state="{state}"] .shape',
                                 "node => getComputedStyle(node).fill")


def test_console_shows_colours_and_redrives_a_failed_execution(cloud, step_arn, calls_dir, browser,
                                                               artifacts_dir):
    machine = create_machine(cloud, "wf-browser", chain_definition(step_arn))
    arn = start(cloud, machine, "browser-run", {"fail_once": ["Deploy"], "slow": 1.5})
    assert wait_status(cloud, arn)["status"] == "FAILED"
    server = ConsoleServer(Clients(cloud.region, cloud.url)).start()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(server.url_with_token)
        page.click(f'#state-machines li[data-arn="{machine}"]')
        page.click(f'#executions tr[data-arn="{arn}"]')
        page.wait_for_function("document.getElementById('execution-status').textContent === 'FAILED'")
        assert fill_of(page, "Prepare") == rgb(STATUS_COLORS["succeeded"][0])
        assert fill_of(page, "Deploy") == rgb(STATUS_COLORS["failed"][0])
        assert fill_of(page, "Done") == rgb(STATUS_COLORS["not_run"][0])
        page.click('#graph g.state[data-state="Deploy"]')
        assert "EndpointNotReady" in page.inner_text("#state-details")

        page.click("#redrive-button")
        page.wait_for_function("document.getElementById('execution-status').textContent === 'RUNNING'",
                               timeout=10_000)
        page.wait_for_function("document.getElementById('execution-status').textContent === 'SUCCEEDED'",
                               timeout=20_000)
        page.wait_for_function(  # the graph refreshes on the same poll
            "getComputedStyle(document.querySelector('#graph g.state[data-state=\"Done\"] .shape')).fill"
            f" === '{rgb(STATUS_COLORS['succeeded'][0])}'")
        assert fill_of(page, "Deploy") == rgb(STATUS_COLORS["succeeded"][0])
        assert page.is_hidden("#redrive-button")
        assert "redriven 1" in page.inner_text("#execution-redrives")
        page.screenshot(path=os.path.join(artifacts_dir, "console-redrive.png"), full_page=True)
    finally:
        page.close()
        server.stop()
    assert calls(calls_dir, "browser-run") == ["Prepare", "Train", "Deploy", "Deploy"]


ATTACK_PAGE = """<!doctype html><html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="cloud-form" target="sink" method="POST" action="{cloud}/">
  <input name="Action" value="RunInstances"><input name="Version" value="2016-11-15">
  <input name="ImageId" value="ami-12c6146b"><input name="MinCount" value="1">
  <input name="MaxCount" value="1"><input name="UserData" value="{user_data}">
</form>
<form id="console-form" target="sink" method="POST" enctype="text/plain" action="{console}/api/redrive">
  <input name='{{"executionArn": "{execution}", "x": "' value='"}}'>
</form>
<script>
window.results = [];
const note = (what) => (r) => window.results.push(what + ": " + (r && r.type ? r.type : r));
const attempts = [
  fetch("{cloud}/", {{method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
    body: "Action=RunInstances&Version=2016-11-15&ImageId=ami-12c6146b&MinCount=1&MaxCount=1" +
      "&UserData={user_data_query}"}})
    .then(note("run-instances"), note("run-instances failed")),
  fetch("{cloud}/2015-03-31/functions", {{method: "POST", mode: "no-cors",
    headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{FunctionName: "evil", Runtime: "python3.11", Handler: "app.handler",
      Role: "arn:aws:iam::123456789012:role/x", Code: {{ZipFile: "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}}})}})
    .then(() => fetch("{cloud}/2015-03-31/functions/evil/invocations", {{method: "POST", mode: "no-cors"}}))
    .then(note("lambda"), note("lambda failed")),
  fetch("{cloud}/", {{method: "POST", headers: {{"X-Amz-Target": "AWSStepFunctions.StartExecution",
    "Content-Type": "application/x-amz-json-1.0"}}, body: JSON.stringify({{stateMachineArn: "{machine}"}})}})
    .then(note("start-execution"), note("start-execution failed")),
  fetch("{console}/api/redrive", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{executionArn: "{execution}"}})}})
    .then(note("console redrive"), note("console redrive failed")),
];
Promise.allSettled(attempts).then(() => {{
  document.getElementById("cloud-form").submit();
  setTimeout(() => {{ document.getElementById("console-form").submit();
    setTimeout(() => {{ window.done = true; }}, 1500); }}, 1500);
}});
</script></body></html>"""


def test_a_page_of_another_origin_can_change_nothing(cloud, step_arn, browser, tmp_path):
    """Issue 12: form POSTs and fetches from another origin against the local cloud (RunInstances
    with runnable user data, CreateFunction then Invoke, StartExecution) and the console's
    redrive are all refused; nothing is created or run."""
    import base64
    import http.server
    import threading
    import urllib.parse

    machine = create_machine(cloud, "wf-cross-origin", chain_definition(step_arn))
    arn = start(cloud, machine, "cross-origin-run", {"fail_once": ["Deploy"]})
    assert wait_status(cloud, arn)["status"] == "FAILED"
    marker = tmp_path / "ran"
    user_data = base64.b64encode(f"#!/bin/bash\n# localcloud: runnable\ntouch {marker}\n".encode()).decode()
    console = ConsoleServer(Clients(cloud.region, cloud.url)).start()
    page_html = ATTACK_PAGE.format(cloud=cloud.url, console=console.url, user_data=user_data,
                                   user_data_query=urllib.parse.quote(user_data, safe=""),
                                   execution=arn, machine=machine).encode()

    class AttackPage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *_: object) -> None:
            pass

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AttackPage)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        page.wait_for_function("window.done === true", timeout=20_000)
        results = page.evaluate("window.results")
    finally:
        page.close()
        attacker.shutdown()
        console.stop()
    assert "start-execution failed: TypeError: Failed to fetch" in results  # no CORS answered
    assert cloud.boto3_client("ec2").describe_instances()["Reservations"] == []
    assert not marker.exists()
    functions = cloud.boto3_client("lambda").list_functions()["Functions"]
    assert "evil" not in [f["FunctionName"] for f in functions]
    sfn = cloud.boto3_client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in listed] == ["cross-origin-run"]
    described = sfn.describe_execution(executionArn=arn)
    assert described["status"] == "FAILED" and not described.get("redriveCount")


def circle_values(page, selector: str) -> list[float]:
    return page.eval_on_selector_all(f"{selector} circle", "nodes => nodes.map(n => Number(n.dataset.y))")


@pytest.fixture
def training_logs(cloud):
    from tests.workflow.test_console_models import training_logs as put_training_logs

    with put_training_logs(cloud):
        yield


def test_console_ml_section(cloud, browser, artifacts_dir, tmp_path_factory, training_logs):
    """The ML tab: training curves (one point per epoch), the registry table (statuses, the live
    marker, a rejected version's reason), the live endpoint's charts and a prediction from an
    uploaded PNG through the predict function (setup: tests/workflow/test_console_models.py)."""
    from tests.workflow.test_console_models import (
        LOGGED,
        REJECT_REASON,
        V1_HISTORY,
        expected_predictions,
        ml_stack,
        png,
    )

    stack = ml_stack(cloud, tmp_path_factory.mktemp("ml-stack"))
    server = ConsoleServer(stack.clients, config=stack.config).start()
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    shot = lambda name: os.path.join(artifacts_dir, name)  # noqa: E731
    try:
        page.goto(server.url_with_token + "#ml")
        page.wait_for_selector('#version-section[data-version="2"]')  # the live version comes first
        for chart, series in (("loss", "train_loss"), ("loss", "valid_loss"), ("accuracy", "valid_acc")):
            path = f'#{chart}-chart path[data-series="{series}"]'
            assert page.get_attribute(path, "data-points") == str(len(LOGGED))
        assert circle_values(page, '#accuracy-chart g[data-series="valid_acc"]') == [a for *_, a in LOGGED]
        assert circle_values(page, '#loss-chart g[data-series="train_loss"]') == [t for _, t, _, _ in LOGGED]
        assert "training logs" in page.inner_text("#curves-source")
        page.locator("#version-section").screenshot(path=shot("console-ml-curves.png"))

        rows = page.eval_on_selector_all("#registry tbody tr", "rows => rows.map(r => [r.dataset.version, "
                                         "r.dataset.status, r.dataset.live, r.dataset.rollout])")
        assert rows == [["4", "Rejected", "false", "RolledBack"], ["3", "Rejected", "false", ""],
                        ["2", "Approved", "true", "Live"], ["1", "Approved", "false", "Superseded"]]
        assert page.locator("#registry .live-marker").count() == 1
        assert page.locator('#registry tr[data-version="2"] .live-marker').is_visible()
        assert page.inner_text('#registry tr[data-version="3"] td.reason') == REJECT_REASON
        page.locator("#registry-section").screenshot(path=shot("console-ml-registry.png"))

        page.click('#registry tr[data-version="1"]')  # trained on EC2: the report's history
        page.wait_for_selector('#version-section[data-version="1"]')
        assert page.get_attribute('#accuracy-chart path[data-series="valid_acc"]', "data-points") == "2"
        assert circle_values(page, '#accuracy-chart g[data-series="valid_acc"]') == [
            row["valid_acc"] for row in V1_HISTORY]
        assert "evaluation report" in page.inner_text("#curves-source")

        page.wait_for_selector('#endpoint-section[data-loaded="true"]')
        assert page.inner_text("#endpoint-status") == "InService"
        assert circle_values(page, '#instances-chart g[data-series="instances"]') == [1, 2, 2]
        assert page.locator('#invocations-chart g[data-series="invocations"] rect').count() == 60
        assert page.locator('#activities tr[data-activity="Successful"]').count() == 1
        page.locator("#endpoint-section").screenshot(path=shot("console-ml-endpoint.png"))

        image = png((10, 120, 200))
        page.set_input_files("#predict-file", files=[{"name": "flower.png", "mimeType": "image/png",
                                                      "buffer": image}])
        page.wait_for_function("!document.getElementById('predict-button').disabled")
        page.fill("#predict-top-k", "3")
        page.click("#predict-button")
        page.wait_for_selector("#predictions li", timeout=30_000)
        items = page.eval_on_selector_all("#predictions li", "items => items.map(i => [i.dataset.label, "
                                          "Number(i.dataset.probability)])")
        assert items == [[p["label"], p["probability"]] for p in expected_predictions(image, 3)]
        assert page.inner_text("#predict-error") == ""
        page.locator("#try-it").screenshot(path=shot("console-ml-try-it.png"))
        page.screenshot(path=shot("console-ml.png"), full_page=True)
    finally:
        page.close()
        server.stop()
