"""Shipping what local compute prints into CloudWatch Logs: directly into moto's backend
(``put_log_lines``), or through the API as the role AWS writes with (``RoleLogWriter``)."""

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


class RoleLogWriter:
    """Writes a function's log lines through the CloudWatch Logs API as its execution role, as
    the Lambda service does: ``logs:CreateLogStream`` and ``logs:PutLogEvents`` on the function's
    log group are then authorized against that role's policy. The group is created (only if the
    role may ``logs:CreateLogGroup``) when it is missing; what the role may not write is dropped,
    as on AWS (the local log file keeps it)."""

    def __init__(self, client: Any, group: str, stream: str) -> None:
        self.client, self.group, self.stream = client, group, stream
        self._stream_ready = False

    def write(self, lines: list[str], timestamp_ms: int | None = None) -> None:
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        events = [{"timestamp": stamp, "message": line or " "} for line in lines]
        if not events:
            return
        try:
            self._ensure_stream()
            self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                       logEvents=events)
        except Exception as error:  # noqa: BLE001 - logs never fail the compute that printed them
            print(f"localcloud: could not write logs to {self.group}: {error}", file=sys.stderr)

    def _ensure_stream(self) -> None:
        if self._stream_ready:
            return
        errors = self.client.exceptions
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except errors.ResourceAlreadyExistsException:
            pass
        except errors.ResourceNotFoundException:
            self.client.create_log_group(logGroupName=self.group)
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        self._stream_ready = True
