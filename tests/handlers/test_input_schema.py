"""The execution input's JSON Schema (issue 14): valid draft-07, what the config fills in and
the README's example pass it, the README's table is rendered from it, and a bad input is
refused before StartExecution by `stepml run`, `stepml deploy` and the upload trigger."""

from __future__ import annotations

import json
import re

import pytest
from jsonschema import Draft7Validator

from handlers import input_schema, on_upload
from handlers.errors import InvalidInput
from infra_scripts import input_doc
from tests.handlers.conftest import BUCKET, CONFIG, DATASET_URI, Counts, call


def test_the_schema_is_valid_draft_07() -> None:
    Draft7Validator.check_schema(input_schema.schema())


def test_every_default_the_config_fills_in_passes() -> None:
    input_schema.check_input({**CONFIG.execution_defaults(), "dataset": DATASET_URI})


def test_the_readme_example_passes_and_its_table_is_the_schemas() -> None:
    readme = input_doc.README.read_text(encoding="utf-8")
    section = readme[readme.index("## Execution input"):readme.index("## Configuration")]
    example = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert example, "the README's execution input example is missing"
    input_schema.check_input(json.loads(example.group(1)))
    assert input_doc.readme_with_table(readme) == readme, "regenerate: python -m infra_scripts.input_doc"


@pytest.mark.parametrize(("given", "message"), [
    ({"dataset": DATASET_URI, "training": {"instance_count": 1.5}},
     "training.instance_count must be integer"),
    ({"dataset": DATASET_URI, "tuning": {"max_jobs": 2, "ranges": {"lr": [0.1]}}}, "tuning.ranges.lr"),
    ({"dataset": DATASET_URI, "predict": {"reserved_concurrency": -1}}, "predict.reserved_concurrency"),
    ({"dataset": DATASET_URI, "training": {"instance_type": "c5.xlarge"}}, "training.instance_type"),
    ({"dataset": DATASET_URI, "poll_seconds": -1}, "poll_seconds"),
    ({"dataset": {"uri": DATASET_URI}}, "dataset must be an s3:// prefix"),
    (["not", "an", "object"], "execution input must be a JSON object"),
])
def test_messages_name_the_field(given: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        input_schema.check_input(given)


class RefusingStepFunctions:
    """Any StartExecution call fails the test: the schema must refuse first."""

    def start_execution(self, **_: object) -> dict:
        raise AssertionError("StartExecution was called with an invalid input")


def test_stepml_run_refuses_before_start_execution() -> None:
    from infra_scripts.run import start_execution

    with pytest.raises(InvalidInput, match="training.backend"):
        start_execution(RefusingStepFunctions(), "arn:aws:states:us-east-1:1:stateMachine:x",
                        {"dataset": DATASET_URI, "training": {"backend": "tpu"}})


def test_deploy_refuses_a_bad_trigger_input_before_creating_anything() -> None:
    from infra_scripts.cfn.validation import DeployError
    from infra_scripts.deploy import Deployer

    deployer = Deployer.for_local_cloud(CONFIG, "http://127.0.0.1:9", trigger_input={"poll_seconds": "1"})
    with pytest.raises(DeployError, match="trigger input: poll_seconds must be integer"):
        deployer.deploy()  # nothing listens on port 9: any AWS call would fail differently


def test_upload_trigger_rejects_a_bad_execution_input_and_starts_nothing(
        aws: Counts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTION_INPUT", json.dumps({"training": {"backend": "tpu"}}))
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:none")
    monkeypatch.setattr(on_upload, "start", lambda *_: pytest.fail("StartExecution was called"))
    event = {"detail": {"bucket": {"name": BUCKET}, "object": {"key": "datasets/sample/_READY", "etag": "e"}}}
    answer = call(on_upload, event)
    assert answer["started"] is False and answer["statusCode"] == 400
    assert answer["error"] == "InvalidExecutionInput" and "training.backend" in answer["message"]
