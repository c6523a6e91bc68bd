"""handlers.common: error translation, settings, small helpers."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from handlers import common
from handlers.errors import TransientAwsError
from tests.handlers.conftest import FakeLambdaContext


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeEndpoint")


def raising(error: Exception):
    @common.state_handler
    def handler(doc: dict) -> dict:
        raise error

    return handler


@pytest.mark.parametrize(("code", "status"), [
    ("ThrottlingException", 400), ("Throttling", 400), ("TooManyRequestsException", 429),
    ("RequestLimitExceeded", 503), ("SlowDown", 503), ("InternalFailure", 500),
    ("SomethingNew", 503),
])
def test_throttling_and_5xx_become_transient(code: str, status: int) -> None:
    original = client_error(code, status)
    with pytest.raises(TransientAwsError, match=code) as raised:
        raising(original)({}, FakeLambdaContext())
    assert raised.value.__cause__ is original


@pytest.mark.parametrize("code", ["ValidationException", "ResourceNotFoundException", "AccessDenied"])
def test_deterministic_errors_pass_through(code: str) -> None:
    original = client_error(code)
    with pytest.raises(ClientError) as raised:
        raising(original)({}, FakeLambdaContext())
    assert raised.value is original


def test_other_exceptions_pass_through() -> None:
    with pytest.raises(KeyError):
        raising(KeyError("training_job"))({}, FakeLambdaContext())


def test_handler_returns_the_document() -> None:
    @common.state_handler
    def handler(doc: dict) -> dict:
        return common.with_section(doc, "model", {"name": "m"})

    doc = {"run_id": "r", "model": {"kept": True}}
    assert handler(doc, FakeLambdaContext()) == {"run_id": "r", "model": {"kept": True, "name": "m"}}
    assert doc == {"run_id": "r", "model": {"kept": True}}


def test_split_s3_uri() -> None:
    assert common.split_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b/")
    assert common.split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3"):
        common.split_s3_uri("https://bucket/a")


def test_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_TEST_SETTING", "value")
    monkeypatch.delenv("STEPML_TEST_MISSING", raising=False)
    assert common.setting("STEPML_TEST_SETTING") == "value"
    assert common.setting("STEPML_TEST_MISSING", "fallback") == "fallback"
    with pytest.raises(RuntimeError, match="STEPML_TEST_MISSING"):
        common.setting("STEPML_TEST_MISSING")


QUOTA_REFUSALS = [
    ("ResourceLimitExceeded", "The account-level service limit 'ml.c5.xlarge for training job usage' "
     "is 0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances.",
     "Raise 'ml.c5.xlarge for training job usage'"),
    ("InvalidParameterValueException", "Specified ReservedConcurrentExecutions for function "
     "decreases account's UnreservedConcurrentExecution below its minimum value of [10].",
     "--quota-code L-B99A9384"),
    ("VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit of 0",
     "--quota-code L-1216C47A"),
]


@pytest.mark.parametrize(("code", "message", "fix"), QUOTA_REFUSALS)
def test_quota_refusals_become_quota_exceeded_naming_the_fix(code: str, message: str, fix: str) -> None:
    from handlers.errors import QuotaExceeded

    error = ClientError({"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "CreateTrainingJob")
    with pytest.raises(QuotaExceeded) as raised:
        raising(error)({}, FakeLambdaContext())
    assert message in str(raised.value) and fix in str(raised.value)


def test_other_invalid_parameters_are_not_quota_errors() -> None:
    error = client_error("InvalidParameterValueException")
    with pytest.raises(ClientError):
        raising(error)({}, FakeLambdaContext())
