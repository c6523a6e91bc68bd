"""Updating the fields of moto's model objects while moto serves them."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def utcnow() -> datetime:
    from moto.core.utils import utcnow as moto_utcnow  # the clock moto's own fields use

    return moto_utcnow()


def set_fields(record: Any, **fields: Any) -> None:
    """Replace response fields of a moto record and stamp ``last_modified_time``. Readers
    serialise ``__dict__`` concurrently, so only keys that already exist are replaced (callers
    create them up front): the dict never grows while it is read."""
    for name, value in fields.items():
        setattr(record, name, value)
    record.last_modified_time = utcnow()
