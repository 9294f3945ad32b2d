"""W3C Trace Context (``traceparent``) values carried from HTTP requests into events."""

from __future__ import annotations

import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_traceparent() -> str:
    """A fresh sampled trace context."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_traceparent(parent: str | None) -> str:
    """Continue ``parent``'s trace with a new span id, or start a new trace if it is absent or malformed."""
    if parent:
        match = _TRACEPARENT.match(parent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"
    return new_traceparent()


def trace_id(traceparent: str) -> str | None:
    """The trace id of a valid ``traceparent``."""
    match = _TRACEPARENT.match(traceparent.strip().lower())
    return match.group(1) if match else None
