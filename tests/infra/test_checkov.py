"""checkov on the generated templates finds nothing unexplained: no failed check, and every skip
is a waiver of ``infra_scripts/cfn/posture.py`` with its reason, each still needed.

checkov lives in its own venv (``make checkov``, which ``make test`` and ``make test-unit``
build): it pins boto3, networkx and packaging below this project's. Without it these tests fail,
never skip.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra_scripts import policies
from infra_scripts.cfn import posture
from infra_scripts.cfn.template import DEAD_LETTER_QUEUE, build_template, function_id, template_json
from statemachine.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = Path(sys.prefix) / "tools" / "checkov" / "bin" / "checkov"  # the Makefile's CHECKOV_VENV
TEMPLATES = {"stack": False, "bootstrap": True}
# Offline and quiet: no PyPI version check, no Prisma Cloud download (ids, severities).
OFFLINE = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE|ACCESS_KEY|API_KEY")

Results = dict[str, dict[str, list[dict[str, Any]]]]  # file stem → failed/skipped/passed → results


def pinned_version() -> str:
    [pin] = [line for line in (ROOT / "requirements-checkov.txt").read_text().splitlines()
             if line.startswith("checkov==")]
    return pin.removeprefix("checkov==")


def without_waivers(template: dict) -> dict:
    bare = copy.deepcopy(template)
    for resource in bare["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
        if resource.get("Metadata") == {}:
            del resource["Metadata"]
    return bare


def run_checkov(folder: Path) -> dict[str, Any]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make checkov` builds it (`make test` does)")
    files = [arg for path in sorted(folder.glob("*.json")) for arg in ("-f", str(path))]
    done = subprocess.run([str(CHECKOV), *files, "--framework", "cloudformation", "-o", "json",
                           "--compact", "--skip-download"], capture_output=True, text=True,
                          cwd=folder, env={**os.environ, **OFFLINE}, timeout=300)
    assert done.returncode in (0, 1), done.stderr  # 1: some check failed (the bare templates)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def checkov(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over both templates, each as generated and with its waivers removed."""
    folder = tmp_path_factory.mktemp("checkov")
    for name, bootstrap in TEMPLATES.items():
        template = build_template(PipelineConfig(), bootstrap)
        (folder / f"{name}.json").write_text(template_json(template))
        (folder / f"{name}-bare.json").write_text(template_json(without_waivers(template)))
    return run_checkov(folder)


@pytest.fixture(scope="module")
def results(checkov: dict[str, Any]) -> Results:
    by_file: Results = {}
    for outcome in ("failed", "skipped", "passed"):
        for result in checkov["results"][f"{outcome}_checks"]:
            stem = Path(result["file_path"]).stem
            by_file.setdefault(stem, {"failed": [], "skipped": [], "passed": []})[outcome].append(
                result)
    return by_file


def pairs(found: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(result["resource"], result["check_id"]) for result in found}


def test_checkov_is_the_pinned_version_and_parses_everything(checkov: dict[str, Any],
                                                             results: Results) -> None:
    assert checkov["summary"]["checkov_version"] == pinned_version()
    assert checkov["summary"]["parsing_errors"] == 0
    assert set(results) == {name + suffix for name in TEMPLATES for suffix in ("", "-bare")}


@pytest.mark.parametrize("name", TEMPLATES)
def test_checkov_fails_no_check(results: Results, name: str) -> None:
    assert sorted(pairs(results[name]["failed"])) == []
    assert results[name]["passed"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_waiver_is_still_needed(results: Results, name: str) -> None:
    """What the waivers skip is exactly what checkov fails once they are taken away."""
    assert pairs(results[name]["skipped"]) == pairs(results[f"{name}-bare"]["failed"])


def test_every_skip_is_a_waiver_with_its_own_reason(results: Results) -> None:
    for name in TEMPLATES:
        for result in results[name]["skipped"]:
            comment = result["check_result"]["suppress_comment"]
            waiver = posture.waiver_of(result["check_id"], comment)
            assert waiver, (result["resource"], result["check_id"], comment)
            assert waiver.name == result["check_name"]  # the README names checks as checkov does
    reasons = [w.reason for waivers in posture.WAIVERS.values() for w in waivers]
    assert len(set(reasons)) == len(reasons)  # no blanket reason copied across checks
    assert all(len(reason) >= 150 for reason in reasons)


def test_function_environments_hold_no_secrets() -> None:
    """CKV_AWS_173's waiver rests on this: nothing secret in any function's environment."""
    for resource in build_template(PipelineConfig())["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function":
            variables = resource["Properties"]["Environment"]["Variables"]
            assert not [name for name in variables if SECRET_NAME.search(name)]
            assert "AKIA" not in json.dumps(variables)


def test_the_upload_functions_failed_events_go_to_its_encrypted_queue() -> None:
    resources = build_template(PipelineConfig())["Resources"]
    function = resources[function_id(policies.ON_UPLOAD_MODULE)]["Properties"]
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]}}
    queue = resources[DEAD_LETTER_QUEUE]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True  # what CKV_AWS_27's waiver says
    assert queue["QueueName"] == {"Fn::Sub": policies.ON_UPLOAD_DLQ}
    others = [r for key, r in resources.items() if r["Type"] == "AWS::Lambda::Function"
              and key != function_id(policies.ON_UPLOAD_MODULE)]
    assert not [r for r in others if "DeadLetterConfig" in r["Properties"]]  # all synchronous
    [send] = [s for s in policies.on_upload_policy()["Statement"] if "sqs:SendMessage" in s["Action"]]
    assert (send["Action"], send["Resource"]) == (["sqs:SendMessage"], policies.ON_UPLOAD_DLQ_ARN)


def test_the_readme_lists_every_waiver() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert posture.readme_table() in readme, \
        "the README's posture table is stale; `python -m infra_scripts.cfn.posture` prints it"
