"""ConfigurePredictFunction and SmokeTest (the predict Lambda itself is tested elsewhere)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from handlers import common, configure_predict_function, smoke_test
from handlers.errors import SmokeTestFailed
from tests.handlers.conftest import (
    BUCKET,
    CONFIG,
    DATASET_URI,
    PREDICT_FUNCTION,
    REGION,
    call,
    call_twice,
    dataset_keys,
)


def lam() -> Any:
    return common.client("lambda")


@pytest.fixture
def provisioned(monkeypatch: pytest.MonkeyPatch, predict_function: str) -> dict[tuple[str, str], int]:
    """moto lacks the provisioned-concurrency APIs (PutProvisionedConcurrencyConfig answers
    "Not yet implemented"), so that one method of the handlers' cached Lambda client is replaced
    by a stand-in that keeps one setting per function and qualifier, as AWS does."""
    settings: dict[tuple[str, str], int] = {}

    def put_provisioned_concurrency_config(*, FunctionName: str, Qualifier: str,  # noqa: N803
                                           ProvisionedConcurrentExecutions: int) -> dict:  # noqa: N803
        settings[(FunctionName, Qualifier)] = ProvisionedConcurrentExecutions
        return {"RequestedProvisionedConcurrentExecutions": ProvisionedConcurrentExecutions,
                "Status": "IN_PROGRESS"}

    monkeypatch.setattr(common.client("lambda"), "put_provisioned_concurrency_config",
                        put_provisioned_concurrency_config)
    return settings


def published_versions() -> list[dict]:
    versions = lam().list_versions_by_function(FunctionName=PREDICT_FUNCTION)["Versions"]
    return [v for v in versions if v["Version"] != "$LATEST"]


def test_configure_predict_function(serving: dict, provisioned: dict) -> None:
    doc = call(configure_predict_function, serving)

    predict = doc["predict"]
    assert predict["function"] == PREDICT_FUNCTION
    assert predict["version"] == "1"
    assert predict["provisioned_status"] == "IN_PROGRESS"
    assert (predict["reserved_concurrency"], predict["provisioned_concurrency"]) == (100, 80)
    variables = lam().get_function_configuration(FunctionName=PREDICT_FUNCTION)["Environment"]["Variables"]
    assert variables == {"ENDPOINT_NAME": CONFIG.endpoint_name, "POWERTOOLS_SERVICE_NAME": "p"}
    [version] = published_versions()
    assert version["Version"] == "1"
    assert version["Environment"]["Variables"]["ENDPOINT_NAME"] == CONFIG.endpoint_name
    alias = lam().get_alias(FunctionName=PREDICT_FUNCTION, Name="live")
    assert alias["FunctionVersion"] == "1"
    assert predict["alias_arn"] == alias["AliasArn"]
    reserved = lam().get_function_concurrency(FunctionName=PREDICT_FUNCTION)
    assert reserved["ReservedConcurrentExecutions"] == 100
    assert provisioned == {(PREDICT_FUNCTION, "live"): 80}


def test_configure_predict_function_idempotent(serving: dict, provisioned: dict) -> None:
    doc = call_twice(configure_predict_function, serving)
    assert [v["Version"] for v in published_versions()] == [doc["predict"]["version"]]
    assert len(lam().list_aliases(FunctionName=PREDICT_FUNCTION)["Aliases"]) == 1
    assert provisioned == {(PREDICT_FUNCTION, "live"): 80}


def test_a_later_run_moves_the_alias(serving: dict, provisioned: dict) -> None:
    call(configure_predict_function, serving)
    later = {**serving, "run_id": "exec-2-0123abcd"}
    doc = call(configure_predict_function, later)
    assert doc["predict"]["version"] == "2"
    assert lam().get_alias(FunctionName=PREDICT_FUNCTION, Name="live")["FunctionVersion"] == "2"
    assert len(lam().list_aliases(FunctionName=PREDICT_FUNCTION)["Aliases"]) == 1


def test_no_provisioned_concurrency(serving: dict, provisioned: dict) -> None:
    doc = {**serving, "predict": {"reserved_concurrency": 5, "provisioned_concurrency": 0}}
    assert call(configure_predict_function, doc)["predict"]["provisioned_status"] == "NONE"
    assert provisioned == {}
    assert lam().get_function_concurrency(FunctionName=PREDICT_FUNCTION)["ReservedConcurrentExecutions"] == 5



def test_zero_reserved_means_no_reservation(serving: dict, provisioned: dict) -> None:
    """A new account's limit of 10 leaves nothing to reserve: 0 removes any reservation (a
    reservation of 0 would throttle every call)."""
    call(configure_predict_function, {**serving, "predict": {"reserved_concurrency": 5,
                                                              "provisioned_concurrency": 0}})
    call(configure_predict_function, {**serving, "predict": {"reserved_concurrency": 0,
                                                              "provisioned_concurrency": 0}})
    assert "ReservedConcurrentExecutions" not in lam().get_function_concurrency(FunctionName=PREDICT_FUNCTION)

# -- SmokeTest ---------------------------------------------------------------------------------

ALIAS_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:{PREDICT_FUNCTION}:live"


@pytest.fixture
def configured_predict(serving: dict) -> dict:
    return {**serving, "predict": {**serving["predict"], "function": PREDICT_FUNCTION,
                                   "version": "1", "alias_arn": ALIAS_ARN}}


def lambda_response(payload: dict, function_error: str | None = None) -> dict:
    body = json.dumps(payload).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
    if function_error:
        response["FunctionError"] = function_error
    return response


def prediction(label: str, probability: float = 0.93) -> dict:
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"predictions": [{"label": label, "probability": probability},
                                                {"label": "other", "probability": 1 - probability}]})}


@pytest.fixture
def predict_stub(aws: Any) -> Iterator[Stubber]:
    """moto's Lambda invoke can't run code without Docker: the handlers' cached Lambda client
    is stubbed (every call on it must be one the test expects)."""
    with Stubber(common.client("lambda")) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expected_invoke() -> dict:
    """The first test image in key order: datasets/sample/test/cat/0.png."""
    image = common.client("s3").get_object(
        Bucket=BUCKET, Key="datasets/sample/test/cat/0.png")["Body"].read()
    return {"FunctionName": ALIAS_ARN, "Payload": json.dumps({"image": base64.b64encode(image).decode()})}


def test_smoke_test(configured_predict: dict, predict_stub: Stubber) -> None:
    predict_stub.add_response("invoke", lambda_response(prediction("cat")), expected_invoke())
    doc = call(smoke_test, configured_predict)
    assert doc["smoke_test"] == {"image": f"{DATASET_URI}test/cat/0.png", "expected": "cat",
                                 "label": "cat", "probability": 0.93, "correct": True}


def test_smoke_test_idempotent(configured_predict: dict, predict_stub: Stubber) -> None:
    for _ in range(2):
        predict_stub.add_response("invoke", lambda_response(prediction("cat")), expected_invoke())
    assert call_twice(smoke_test, configured_predict)["smoke_test"]["correct"] is True


def test_smoke_test_wrong_label_is_reported_not_raised(configured_predict: dict,
                                                       predict_stub: Stubber) -> None:
    predict_stub.add_response("invoke", lambda_response(prediction("dog", 0.6)), expected_invoke())
    result = call(smoke_test, configured_predict)["smoke_test"]
    assert (result["label"], result["expected"], result["correct"]) == ("dog", "cat", False)


@pytest.mark.parametrize(("payload", "function_error"), [
    ({"statusCode": 502, "body": json.dumps({"error": "EndpointError", "message": "boom"})}, None),
    ({"errorMessage": "Task timed out after 30.00 seconds"}, "Unhandled"),
])
def test_smoke_test_failure(configured_predict: dict, predict_stub: Stubber, payload: dict,
                            function_error: str | None) -> None:
    predict_stub.add_response("invoke", lambda_response(payload, function_error), expected_invoke())
    with pytest.raises(SmokeTestFailed, match="predict returned"):
        call(smoke_test, configured_predict)


def test_smoke_test_without_test_images(configured_predict: dict, predict_stub: Stubber) -> None:
    for key in dataset_keys("test"):
        common.client("s3").delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(SmokeTestFailed, match="no test images"):
        call(smoke_test, configured_predict)
