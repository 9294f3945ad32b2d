"""Sortable identifiers: UUIDv7 strings, whose first 48 bits are the Unix time in milliseconds.

Ids made later sort after ids made earlier (as strings too, since the hex form is fixed-width),
so ``_id`` order in MongoDB is creation order and an index on ``_id`` doubles as a time index.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import uuid_utils

__all__ = ["id_time", "new_id"]


def new_id() -> str:
    """A new UUIDv7 as its canonical 36-character lowercase string."""
    return str(uuid_utils.uuid7())


def id_time(value: str) -> datetime:
    """The creation time (UTC, millisecond precision) encoded in a UUIDv7 string.

    Raises ``ValueError`` if ``value`` is not a UUID or not version 7.
    """
    parsed = uuid.UUID(value)
    if parsed.version != 7:
        raise ValueError(f"not a UUIDv7: {value!r}")
    millis = parsed.int >> 80
    seconds, remainder = divmod(millis, 1000)
    # integer arithmetic: a float division could land one microsecond off
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=remainder * 1000)
