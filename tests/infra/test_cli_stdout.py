"""Commands whose stdout is a document print only that document (issue 14): the SageMaker SDK's
config-lookup lines go to stderr, so `stepml template > t.json` feeds cfn-lint and
CloudFormation, and `stepml definition` feeds the Step Functions console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("command", "key"), [("template", "Resources"), ("definition", "States")])
def test_document_commands_print_only_json(command: str, key: str) -> None:
    done = subprocess.run([sys.executable, "-c", "from infra_scripts.cli import main; main()",
                           command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert key in json.loads(done.stdout)  # the whole of stdout parses
    assert "Not applying SDK defaults" not in done.stdout + done.stderr
