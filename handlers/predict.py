"""Predict Lambda: one image (URL or base64) → the SageMaker endpoint → top-k JSON.

Event shapes:
  direct invoke         {"url": "s3://…" | "https://…"} or {"image": "<base64>"}
  API Gateway / URL     {"body": "<JSON of the above>" | "<base64 image>", "isBase64Encoded": …,
                         "headers": {"content-type": …}, "queryStringParameters": {"url": …}}
Response: {"statusCode", "headers": {"Content-Type", "Access-Control-Allow-Origin"}, "body"}.
Env: ENDPOINT_NAME (required), CORS_ORIGIN (default "*").
Bad input → 400/413; a 4xx from the model passes through; other endpoint failures → 502.
Imports boto3 and Powertools only (the Lambda zip holds handlers/ alone).
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = Logger(service="stepml-predict")

JSON_TYPE = "application/json"
MAX_REQUEST_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's payload limit
_PROXY_KEYS = ("body", "httpMethod", "requestContext", "routeKey", "rawPath")


class RequestError(Exception):
    """A request we answer ourselves with `status` and {"error": code, "message": …}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        if _method(event) == "OPTIONS":
            return _preflight()
        request = json.dumps(parse_event(event), separators=(",", ":"))
        if len(request) > MAX_REQUEST_BYTES:
            raise RequestError(413, "PayloadTooLarge",
                               f"the request is {len(request)} bytes; the limit is "
                               f"{MAX_REQUEST_BYTES}")
        return invoke(_endpoint_name(), request)
    except RequestError as err:
        logger.info("request refused", extra={"status": err.status, "code": err.code})
        return _error(err.status, err.code, err.message)
    except Exception:  # never leak a stack trace to the caller
        logger.exception("predict failed")
        return _error(500, "InternalError", "internal error")


# --------------------------------------------------------------------------- event → request
def parse_event(event: Any) -> dict[str, str]:
    """{"url": …} or {"image": …} from a direct or a proxy event; RequestError otherwise."""
    if not isinstance(event, dict):
        raise RequestError(400, "InvalidJSON", "the event must be a JSON object")
    if any(key in event for key in _PROXY_KEYS):
        return _pick_input(_proxy_payload(event))
    return _pick_input(event)


def _proxy_payload(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("body")
    if isinstance(body, dict):  # a direct invoke that wrapped its input in "body"
        return body
    if body in (None, ""):
        query = event.get("queryStringParameters")
        return {"url": query["url"]} if isinstance(query, dict) and "url" in query else {}
    if not isinstance(body, str):
        raise RequestError(400, "InvalidJSON", "'body' must be a string")
    raw = _b64decode(body, "the base64-encoded body") if event.get("isBase64Encoded") else body
    if _header(event, "content-type").split(";")[0].strip().lower().startswith("image/"):
        data = raw if isinstance(raw, bytes) else raw.encode("latin-1", "replace")
        return {"image": base64.b64encode(data).decode("ascii")}
    return _json_object(raw)


def _pick_input(payload: dict[str, Any]) -> dict[str, str]:
    url, image = payload.get("url"), payload.get("image")
    if url is None and image is None:
        raise RequestError(400, "MissingField",
                           'expected {"url": "s3://…" | "https://…"} or {"image": "<base64>"}')
    if url is not None and image is not None:
        raise RequestError(400, "InvalidField", "give either 'url' or 'image', not both")
    name, value = ("url", url) if url is not None else ("image", image)
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, "InvalidField", f"'{name}' must be a non-empty string")
    return {name: value.strip()}


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, "InvalidJSON", f"the body is not valid JSON: {err}") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "InvalidJSON", "the body must be a JSON object")
    return payload


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "InvalidBase64", f"{what} is not valid base64") from None


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def _method(event: Any) -> str:
    if not isinstance(event, dict):
        return ""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    method = event.get("httpMethod") or (http.get("method") if isinstance(http, dict) else "")
    return str(method or "").upper()


# --------------------------------------------------------------------------- endpoint
# A model's own 5xx is retried once: inference is idempotent, and during a canary rollout the
# retry is routed again, most likely to the old fleet (botocore does not retry ModelError, a 424).
MODEL_FAILURE_ATTEMPTS = 2


def _model_failed(err: ClientError) -> bool:
    status = err.response.get("OriginalStatusCode")
    return err.response.get("Error", {}).get("Code") == "ModelError" and not (
        isinstance(status, int) and 400 <= status < 500)


def invoke(endpoint: str, request: str) -> dict[str, Any]:
    for attempt in range(1, MODEL_FAILURE_ATTEMPTS + 1):
        try:
            response = runtime_client().invoke_endpoint(
                EndpointName=endpoint, ContentType=JSON_TYPE, Accept=JSON_TYPE, Body=request)
            body = response["Body"].read()
            break
        except ClientError as err:
            if attempt < MODEL_FAILURE_ATTEMPTS and _model_failed(err):
                logger.warning("model failed; retrying once", extra={"endpoint": endpoint})
                continue
            return _endpoint_error(err)
        except BotoCoreError as err:
            logger.error("endpoint unreachable", extra={"endpoint": endpoint, "error": str(err)})
            return _error(502, "EndpointUnreachable", f"cannot reach endpoint {endpoint}")
    return _response(200, body.decode("utf-8", "replace"))


def _endpoint_error(err: ClientError) -> dict[str, Any]:
    code = err.response.get("Error", {}).get("Code", "Unknown")
    if code == "ModelError":
        status = err.response.get("OriginalStatusCode")
        original = str(err.response.get("OriginalMessage") or "")
        if isinstance(status, int) and 400 <= status < 500:  # the model judged the input bad
            return _response(status, _model_error_body(original))
        logger.error("model error",
                     extra={"original_status": status, "model_message": original[:500]})
        return _error(502, "ModelError", f"the model failed (status {status})")
    message = err.response.get("Error", {}).get("Message")
    logger.error("endpoint error", extra={"code": code, "error_message": message})
    return _error(502, "EndpointError", f"the endpoint call failed ({code})")


def _model_error_body(original: str) -> str:
    """The model's own {"error", "message"} JSON, or that shape around its first line.

    The PyTorch inference container answers a refused request with the handler's message and
    then the traceback, line by line: only the first line is for the caller.
    """
    first_line = original.split("\n", 1)[0]
    try:
        parsed = json.loads(first_line)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "error" in parsed:
        return first_line
    return json.dumps({"error": "ModelError", "message": first_line[:1000]})


def _endpoint_name() -> str:
    name = os.environ.get("ENDPOINT_NAME", "").strip()
    if not name:
        raise RequestError(500, "ConfigurationError", "ENDPOINT_NAME is not set")
    return name


@functools.cache
def runtime_client():
    """One client per warm container (created lazily, reused across invocations)."""
    config = Config(connect_timeout=5, read_timeout=65,  # InvokeEndpoint allows 60 s
                    retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("sagemaker-runtime", config=config)


# --------------------------------------------------------------------------- responses
def _headers() -> dict[str, str]:
    return {"Content-Type": JSON_TYPE,
            "Access-Control-Allow-Origin": os.environ.get("CORS_ORIGIN", "*")}


def _response(status: int, body: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": _headers(), "body": body}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return _response(status, json.dumps({"error": code, "message": message}))


def _preflight() -> dict[str, Any]:
    headers = _headers() | {"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                            "Access-Control-Allow-Headers": "Content-Type"}
    return {"statusCode": 204, "headers": headers, "body": ""}
