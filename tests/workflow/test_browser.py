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
        page.goto(server.url + "/")
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
