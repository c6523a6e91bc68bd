"""Shipping what local compute prints into CloudWatch Logs (moto's in-process backend)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import Any


def put_log_lines(logs_backend: Any, group: str, stream: str, lines: Iterable[str],
                  timestamp_ms: int | None = None) -> None:
    """Append ``lines`` to ``group``/``stream``, creating both if needed. Logs are a convenience:
    a failure here is reported on stderr and never fails the compute that printed them."""
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    events = [{"timestamp": stamp, "message": line or " "} for line in lines]
    if not events:
        return
    try:
        logs_backend.ensure_log_group(group)
        logs_backend.ensure_log_stream(group, stream)
        logs_backend.put_log_events(group, stream, events)
    except Exception as error:
        print(f"localcloud: could not store logs in {group}: {error!r}", file=sys.stderr)
