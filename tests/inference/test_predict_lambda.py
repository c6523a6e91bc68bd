"""The predict Lambda: event shapes, the endpoint call, and every status code it answers."""
from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from handlers import predict

ENDPOINT = "stepml-endpoint"
PREDICTION = {"predictions": [{"label": "cat", "index": 0, "probability": 0.9}],
              "model": {"arch": "resnet18"}}
IMAGE_B64 = base64.b64encode(b"\xff\xd8\xff fake jpeg").decode()
REAL_CLIENT = predict.runtime_client  # tests swap the module attribute; the cache lives here


@pytest.fixture(autouse=True)
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.delenv("CORS_ORIGIN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    REAL_CLIENT.cache_clear()
    yield
    REAL_CLIENT.cache_clear()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    monkeypatch.setattr(predict, "runtime_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _expect_invoke(stub: Stubber, request: dict, reply: dict = PREDICTION) -> None:
    raw = json.dumps(reply).encode()
    stub.add_response("invoke_endpoint",
                      {"Body": StreamingBody(io.BytesIO(raw), len(raw)),
                       "ContentType": "application/json"},
                      {"EndpointName": ENDPOINT, "ContentType": "application/json",
                       "Accept": "application/json",
                       "Body": json.dumps(request, separators=(",", ":"))})


def _model_error(stub: Stubber, original_status: int, original_message: str) -> None:
    stub.add_client_error("invoke_endpoint", service_error_code="ModelError",
                          service_message="Received client error from model",
                          http_status_code=424,
                          modeled_fields={"OriginalStatusCode": original_status,
                                          "OriginalMessage": original_message})


def _check(response: dict, status: int, code: str | None = None) -> dict:
    assert response["statusCode"] == status, response
    assert response["headers"] == {"Content-Type": "application/json",
                                   "Access-Control-Allow-Origin": "*"}
    body = json.loads(response["body"])
    if code is not None:
        assert body["error"] == code and body["message"], body
        assert "Traceback" not in response["body"]
    return body


# --------------------------------------------------------------------------- event shapes
def _proxy_v1(body: str | None, b64: bool = False, headers: dict | None = None) -> dict:
    return {"resource": "/predict", "path": "/predict", "httpMethod": "POST",
            "headers": headers or {"Content-Type": "application/json"},
            "queryStringParameters": None, "requestContext": {"stage": "prod"},
            "body": body, "isBase64Encoded": b64}


def _function_url(body: str, b64: bool = True, headers: dict | None = None) -> dict:
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/",
            "headers": headers or {"content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/"}},
            "body": body, "isBase64Encoded": b64}


SHAPES = {
    "direct url": ({"url": "s3://bucket/cat.jpg"}, {"url": "s3://bucket/cat.jpg"}),
    "direct image": ({"image": IMAGE_B64}, {"image": IMAGE_B64}),
    "direct, extra keys dropped": ({"url": " https://x.example/c.jpg ", "debug": True},
                                   {"url": "https://x.example/c.jpg"}),
    "direct, input under body": ({"body": {"url": "s3://b/k.jpg"}}, {"url": "s3://b/k.jpg"}),
    "api gateway v1": (_proxy_v1(json.dumps({"url": "s3://b/k.jpg"})), {"url": "s3://b/k.jpg"}),
    "api gateway v1 base64 body": (
        _proxy_v1(base64.b64encode(json.dumps({"image": IMAGE_B64}).encode()).decode(), True),
        {"image": IMAGE_B64}),
    "function url (v2, base64)": (
        _function_url(base64.b64encode(json.dumps({"url": "s3://b/k.jpg"}).encode()).decode()),
        {"url": "s3://b/k.jpg"}),
    "function url (v2, plain)": (_function_url(json.dumps({"image": IMAGE_B64}), b64=False),
                                 {"image": IMAGE_B64}),
    "raw image upload": (_function_url(IMAGE_B64, headers={"Content-Type": "image/jpeg"}),
                         {"image": IMAGE_B64}),
    "GET ?url=": ({**_proxy_v1(None), "httpMethod": "GET",
                   "queryStringParameters": {"url": "s3://b/q.jpg"}}, {"url": "s3://b/q.jpg"}),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_event_shapes_reach_the_endpoint(stub: Stubber, shape: str) -> None:
    event, forwarded = SHAPES[shape]
    _expect_invoke(stub, forwarded)
    assert _check(predict.handler(event, None), 200) == PREDICTION


# --------------------------------------------------------------------------- bad input → 400
BAD_EVENTS = {
    "empty event": ({}, 400, "MissingField"),
    "not an object": (["url"], 400, "InvalidJSON"),
    "url and image": ({"url": "s3://b/k", "image": IMAGE_B64}, 400, "InvalidField"),
    "url not a string": ({"url": 7}, 400, "InvalidField"),
    "blank image": ({"image": "  "}, 400, "InvalidField"),
    "proxy without body": (_proxy_v1(None), 400, "MissingField"),
    "proxy body not json": (_proxy_v1("{oops"), 400, "InvalidJSON"),
    "proxy body a list": (_proxy_v1("[1]"), 400, "InvalidJSON"),
    "proxy body without input": (_proxy_v1('{"name": "cat"}'), 400, "MissingField"),
    "proxy base64 not base64": (_function_url("%%%"), 400, "InvalidBase64"),
    "too large": ({"image": "A" * (6 * 1024 * 1024 + 1)}, 413, "PayloadTooLarge"),
}


@pytest.mark.parametrize("case", list(BAD_EVENTS))
def test_bad_input_answers_4xx_without_calling_the_endpoint(stub: Stubber, case: str) -> None:
    event, status, code = BAD_EVENTS[case]
    _check(predict.handler(event, None), status, code)  # the stub fails on any call


def test_missing_endpoint_setting(stub: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENDPOINT_NAME")
    _check(predict.handler({"url": "s3://b/k.jpg"}, None), 500, "ConfigurationError")


# --------------------------------------------------------------------------- endpoint errors
def test_model_4xx_passes_through(stub: Stubber) -> None:
    model_body = json.dumps({"error": "URLRefused", "message": "10.0.0.1 is private"})
    _model_error(stub, 422, model_body)
    response = predict.handler({"url": "https://10.0.0.1/x.jpg"}, None)
    assert _check(response, 422, "URLRefused") == json.loads(model_body)


def test_model_4xx_without_json_is_wrapped(stub: Stubber) -> None:
    _model_error(stub, 413, "Payload Too Large")
    body = _check(predict.handler({"image": IMAGE_B64}, None), 413, "ModelError")
    assert body["message"] == "Payload Too Large"


def test_model_5xx_is_502(stub: Stubber) -> None:
    for _ in range(predict.MODEL_FAILURE_ATTEMPTS):  # retried once, then reported
        _model_error(stub, 500, "Traceback (most recent call last): ...")
    body = _check(predict.handler({"image": IMAGE_B64}, None), 502, "ModelError")
    assert "Traceback" not in body["message"]
    stub.assert_no_pending_responses()


def test_a_model_5xx_is_retried_once_and_a_success_answers(stub: Stubber) -> None:
    """During a canary the retry is routed again, most likely to the old fleet."""
    _model_error(stub, 500, "boom")
    stub.add_response("invoke_endpoint", {"Body": io.BytesIO(b'{"predictions": []}'),
                                          "ContentType": "application/json"})
    assert predict.handler({"image": IMAGE_B64}, None)["statusCode"] == 200
    stub.assert_no_pending_responses()


@pytest.mark.parametrize("code, http_status", [
    ("ValidationError", 400), ("ServiceUnavailable", 503), ("ModelNotReadyException", 429),
    ("InternalFailure", 500),
])
def test_endpoint_errors_are_502(stub: Stubber, code: str, http_status: int) -> None:
    stub.add_client_error("invoke_endpoint", service_error_code=code,
                          service_message=f"Endpoint {ENDPOINT} of account 123456789012 ...",
                          http_status_code=http_status)
    body = _check(predict.handler({"image": IMAGE_B64}, None), 502, "EndpointError")
    assert code in body["message"] and "123456789012" not in body["message"]


def test_unreachable_endpoint_is_502(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable:
        def invoke_endpoint(self, **kwargs: object) -> None:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    monkeypatch.setattr(predict, "runtime_client", Unreachable)
    _check(predict.handler({"image": IMAGE_B64}, None), 502, "EndpointUnreachable")


def test_unexpected_failure_is_a_plain_500(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(predict, "runtime_client", boom)
    body = _check(predict.handler({"image": IMAGE_B64}, None), 500, "InternalError")
    assert "secret" not in body["message"]


# --------------------------------------------------------------------------- CORS, moto
def test_cors_origin_and_preflight(stub: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGIN", "https://app.example.com")
    preflight = predict.handler({**_function_url(""), "requestContext": {
        "http": {"method": "OPTIONS"}}}, None)
    assert preflight["statusCode"] == 204
    assert preflight["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"
    response = predict.handler({}, None)
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_against_moto_sagemaker_runtime() -> None:
    from moto.sagemakerruntime.models import sagemakerruntime_backends

    with mock_aws():
        backend = sagemakerruntime_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        backend.results_queue.append((json.dumps(PREDICTION), "application/json", "AllTraffic",
                                      ""))
        response = predict.handler(_proxy_v1(json.dumps({"url": "s3://b/k.jpg"})), None)
        assert _check(response, 200) == PREDICTION
        assert backend.results_queue == []  # our canned reply was consumed
        (recorded,) = [key for by_endpoint in backend.results.values() for key in by_endpoint]
        sent = json.loads(base64.b64decode(recorded))  # moto's record of the request
        assert (sent["Body"], sent["Accept"]) == ('{"url":"s3://b/k.jpg"}', "application/json")
