"""The one exception type serving code raises for bad input, and its JSON wire form.

Servers map an `InferenceError` to HTTP `status` with body `{"error": code, "message": text}`;
anything else is an internal error (500, no details).
"""
from __future__ import annotations

import json

try:  # inside SageMaker's PyTorch container the toolkit then answers with our status code
    from sagemaker_inference.errors import BaseInferenceToolkitError as _Base
except ImportError:
    _Base = Exception

# Codes, by HTTP status.
EMPTY_BODY = "EmptyBody"  # 400
INVALID_JSON = "InvalidJSON"  # 400
MISSING_FIELD = "MissingField"  # 400
INVALID_FIELD = "InvalidField"  # 400
INVALID_BASE64 = "InvalidBase64"  # 400
INVALID_IMAGE = "InvalidImage"  # 400 (not an image, truncated, corrupt, unsupported format)
BAD_REQUEST = "BadRequest"  # 400 (HTTP-level: bad Content-Length, chunking)
NOT_FOUND = "NotFound"  # 404
METHOD_NOT_ALLOWED = "MethodNotAllowed"  # 405
NOT_ACCEPTABLE = "NotAcceptable"  # 406
PAYLOAD_TOO_LARGE = "PayloadTooLarge"  # 413 (body, decoded base64 or download over the cap)
IMAGE_TOO_LARGE = "ImageTooLarge"  # 413 (pixel cap / decompression bomb)
UNSUPPORTED_CONTENT_TYPE = "UnsupportedContentType"  # 415
URL_REFUSED = "URLRefused"  # 422 (scheme, address or redirect policy)
URL_FETCH_FAILED = "URLFetchFailed"  # 422 (DNS, connect, TLS, timeout, upstream status)
INTERNAL_ERROR = "InternalError"  # 500
SERVICE_UNAVAILABLE = "ServiceUnavailable"  # 503 (draining)


class InferenceError(_Base):
    """A request the model cannot serve: carries the HTTP status, a stable code and a message."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        Exception.__init__(self, reason)
        self.status = status
        self.code = code
        self.reason = reason
        # What sagemaker_inference's error handler reads: it answers with status_code, the
        # phrase, and a body of `message` followed by the traceback on the next lines, so the
        # message is the JSON body and its first line stays parseable (handlers/predict.py).
        self.status_code = status
        self.phrase = code
        self.message = self.to_json().decode("utf-8")

    def to_json(self) -> bytes:
        return error_body(self.code, self.reason)

    def __repr__(self) -> str:
        return f"InferenceError({self.status}, {self.code!r}, {self.reason!r})"


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode("utf-8")
