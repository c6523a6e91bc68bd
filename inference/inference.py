"""SageMaker PyTorch serving handlers: model_fn, input_fn, predict_fn, output_fn.

SageMaker's PyTorch container loads them through the bundle's entry shim (see
infra_scripts/packaging.py); the local model server calls them directly. Every bad request raises
`InferenceError`.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from . import errors
from .errors import InferenceError
from .images import decode_image
from .limits import Limits
from .network import LoadedModel, configure_threads, load_model
from .safe_fetch import fetch

__all__ = ["InferenceError", "Prediction", "input_fn", "model_fn", "output_fn", "predict_fn"]

JSON_TYPE = "application/json"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image"})
SUPPORTED_TYPES = ", ".join(sorted(IMAGE_TYPES | {JSON_TYPE}))
_ACCEPTS_JSON = frozenset({"", "*", "*/*", "application/*", JSON_TYPE})
_DATA_URI_MARK = ";base64,"

# input_fn gets no model (SageMaker's signature), so model_fn leaves the input size here for the
# JPEG draft decode. One model per serving process, as in SageMaker.
_draft_size: int | None = None


@dataclass(frozen=True)
class Prediction:
    probabilities: torch.Tensor  # shape [num_classes], softmax
    classes: list[str]
    model: dict[str, Any]


def model_fn(model_dir: str) -> LoadedModel:
    global _draft_size
    configure_threads()
    model = load_model(model_dir)
    _draft_size = model.image_size
    return model


def input_fn(request_body: bytes | bytearray | memoryview | str | None,
             content_type: str | None) -> Image.Image:
    """Request → decoded RGB image; InferenceError for anything unusable."""
    media = media_type(content_type)
    limits = Limits.from_env()
    if media not in IMAGE_TYPES and media != JSON_TYPE:
        raise InferenceError(415, errors.UNSUPPORTED_CONTENT_TYPE,
                             f"content type {media or '(none)'!r} is not supported; "
                             f"use one of {SUPPORTED_TYPES}")
    body = _as_bytes(request_body)
    if not body:
        raise InferenceError(400, errors.EMPTY_BODY, "the request body is empty")
    if media == JSON_TYPE:
        return decode_image(_image_bytes_from_json(body, limits), limits, _draft_size)
    return decode_image(body, limits, _draft_size)


def predict_fn(data: Image.Image | torch.Tensor, model: LoadedModel) -> Prediction:
    """Class probabilities for one image (a PIL image, or an already preprocessed tensor)."""
    batch = _to_batch(data, model)
    with model.lock, torch.inference_mode():
        logits = model.net(batch)
    probabilities = torch.softmax(logits[0].float(), dim=0)
    return Prediction(probabilities=probabilities, classes=model.classes, model=model.info)


def output_fn(prediction: Prediction, accept: str | None) -> tuple[bytes, str]:
    """Top-k JSON; (body, content type) as the SageMaker toolkit accepts from output_fn."""
    if not accepts_json(accept):
        raise InferenceError(406, errors.NOT_ACCEPTABLE,
                             f"cannot answer in {accept!r}; this model answers {JSON_TYPE}")
    k = min(top_k(), len(prediction.classes))
    values, indices = torch.topk(prediction.probabilities, k)
    predictions = [
        {"label": prediction.classes[i], "index": i, "probability": round(p, 6)}
        for p, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]
    body = json.dumps({"predictions": predictions, "model": prediction.model},
                      separators=(",", ":"))
    return body.encode("utf-8"), JSON_TYPE


# --------------------------------------------------------------------------- helpers
def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def accepts_json(accept: str | None) -> bool:
    """True when any media range in Accept (with q > 0) covers application/json."""
    for item in (accept or "").split(","):
        media, *params = (part.strip().lower() for part in item.split(";"))
        if media in _ACCEPTS_JSON and not any(_is_q_zero(p) for p in params):
            return True
    return False


def _is_q_zero(param: str) -> bool:
    name, _, value = param.partition("=")
    if name.strip() != "q":
        return False
    try:
        return float(value) == 0
    except ValueError:
        return False


def top_k() -> int:
    raw = os.environ.get("STEPML_TOP_K", "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else 5


def _as_bytes(body: bytes | bytearray | memoryview | str | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def _image_bytes_from_json(body: bytes, limits: Limits) -> bytes:
    if len(body) > limits.max_body_bytes:
        raise InferenceError(413, errors.PAYLOAD_TOO_LARGE,
                             f"the JSON body is {len(body)} bytes; the limit is "
                             f"{limits.max_body_bytes}")
    request = _parse_json_object(body)
    url, image = request.get("url"), request.get("image")
    if url is None and image is None:
        raise InferenceError(400, errors.MISSING_FIELD,
                             'expected {"url": "s3://…" | "https://…"} or {"image": "<base64>"}')
    if url is not None and image is not None:
        raise InferenceError(400, errors.INVALID_FIELD, "give either 'url' or 'image', not both")
    if url is not None:
        return fetch(_non_empty_string(url, "url"), limits)
    return _decode_base64(_non_empty_string(image, "image"), limits)


def _parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InferenceError(400, errors.INVALID_JSON,
                             f"the body is not valid JSON: {err}") from None
    if not isinstance(request, dict):
        raise InferenceError(400, errors.INVALID_JSON, "the body must be a JSON object")
    return request


def _non_empty_string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InferenceError(400, errors.INVALID_FIELD, f"'{name}' must be a non-empty string")
    return value.strip()


def _decode_base64(text: str, limits: Limits) -> bytes:
    if text.startswith("data:") and _DATA_URI_MARK in text:  # tolerate a data: URI
        text = text.split(_DATA_URI_MARK, 1)[1]
    text = "".join(text.split())  # line-wrapped base64 is still base64
    if len(text) // 4 * 3 > limits.max_image_bytes + 2:
        raise InferenceError(413, errors.PAYLOAD_TOO_LARGE,
                             "the base64 image decodes to more than "
                             f"{limits.max_image_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InferenceError(400, errors.INVALID_BASE64, "'image' is not valid base64") from None


def _to_batch(data: Image.Image | torch.Tensor, model: LoadedModel) -> torch.Tensor:
    if isinstance(data, Image.Image):
        return model.transform(data).unsqueeze(0)
    if isinstance(data, torch.Tensor) and data.dim() == 3:
        return data.unsqueeze(0)
    if isinstance(data, torch.Tensor) and data.dim() == 4 and data.shape[0] == 1:
        return data
    raise InferenceError(400, errors.INVALID_FIELD,
                         "predict_fn takes one image: a PIL image or a [3,H,W] / [1,3,H,W] tensor")
