"""Decoding untrusted image bytes: format allow-list, pixel cap, verify, then a full decode."""
from __future__ import annotations

import io

from PIL import Image

from . import errors
from .errors import InferenceError
from .limits import Limits

# Formats worth accepting from a client; TIFF, PSD, EPS etc. add decoder attack surface for nothing.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")


def decode_image(data: bytes, limits: Limits, draft_size: int | None = None) -> Image.Image:
    """Return an RGB image, or raise InferenceError (400 invalid, 413 too large).

    `draft_size` lets JPEGs decode at a reduced DCT scale that still covers the model's input
    size: a 12-megapixel photo then costs a fraction of a full decode.
    """
    if not data:
        raise InferenceError(400, errors.EMPTY_BODY, "the image is empty")
    if len(data) > limits.max_image_bytes:
        raise _too_many_bytes(len(data), limits)
    try:
        _verify(data, limits)
        image = _open(data)
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except InferenceError:
        raise
    except Image.DecompressionBombError as err:
        raise InferenceError(413, errors.IMAGE_TOO_LARGE, str(err)) from None
    except Image.UnidentifiedImageError:
        raise _invalid(f"not a recognised image ({', '.join(ALLOWED_FORMATS)})") from None
    # Pillow's decoders signal corrupt data with many exception types (OSError for truncation,
    # SyntaxError, ValueError, EOFError, struct.error, ...): all mean "bad image" here.
    except Exception as err:
        raise _invalid(f"corrupt or truncated image: {err}") from None


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)


def _verify(data: bytes, limits: Limits) -> None:
    """Header-only checks before any pixel is decoded: size cap, then the format's own verify."""
    with _open(data) as image:
        width, height = image.size
        if width < 1 or height < 1:
            raise _invalid(f"image has no pixels ({width}x{height})")
        if width * height > limits.max_pixels:
            raise InferenceError(
                413, errors.IMAGE_TOO_LARGE,
                f"image is {width}x{height} = {width * height} pixels; "
                f"the limit is {limits.max_pixels}",
            )
        image.verify()  # e.g. PNG chunk CRCs; the object is unusable afterwards, hence re-open


def _invalid(message: str) -> InferenceError:
    return InferenceError(400, errors.INVALID_IMAGE, message)


def _too_many_bytes(size: int, limits: Limits) -> InferenceError:
    return InferenceError(
        413, errors.PAYLOAD_TOO_LARGE,
        f"image is {size} bytes; the limit is {limits.max_image_bytes}",
    )
