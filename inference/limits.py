"""Request limits, read from the environment at call time so operators (and tests) can tune them."""
from __future__ import annotations

import os
from dataclasses import dataclass

MIB = 1024 * 1024


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be a number, got {raw!r}") from err
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int = 5 * MIB  # raw body, decoded base64 or download
    max_pixels: int = 25_000_000  # well under Pillow's bomb threshold (~89 M warns, ~179 M errors)
    fetch_timeout: float = 5.0  # per connect/read operation
    fetch_deadline: float = 15.0  # whole download, redirects included (stops slow-drip servers)
    max_redirects: int = 3

    @property
    def max_body_bytes(self) -> int:
        """A JSON body may carry the largest image as base64 (4/3 larger) plus some envelope."""
        return (self.max_image_bytes + 2) // 3 * 4 + 64 * 1024

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_image_bytes=int(_env_number("STEPML_MAX_IMAGE_BYTES", cls.max_image_bytes)),
            max_pixels=int(_env_number("STEPML_MAX_PIXELS", cls.max_pixels)),
            fetch_timeout=_env_number("STEPML_FETCH_TIMEOUT", cls.fetch_timeout),
            fetch_deadline=_env_number("STEPML_FETCH_DEADLINE", cls.fetch_deadline),
        )
