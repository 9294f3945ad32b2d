"""Unreadable input records to their topic's dead-letter twin, ``<topic>.dlq``, with the
platform's ``dlq_*`` headers (as the services' consumer runner writes them), so the stream goes
on and ``zerocontact dlq replay`` can put a record back once its fault is fixed."""

from __future__ import annotations

import logging
from typing import Any

from zerocontact.platform.kafka.consumer import dead_letter_of
from zerocontact.platform.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)


def header_pairs(headers: Any) -> list[tuple[str, bytes]]:
    """A Faust message's headers (a mapping or pairs) as ``(name, value)`` pairs."""
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), bytes(v)) for k, v in items]


async def dead_letter(event: Any, dlq: Any, *, source: str, group: str, exc: Exception) -> None:
    """Send ``event``'s record, which could not be read, to ``dlq`` (a Faust topic)."""
    message = event.message
    log.warning(
        "unreadable record sent to the dead-letter topic",
        extra={"topic": source, "partition": message.partition, "offset": message.offset},
    )
    # A record at the size limit goes without its value (it stays on its topic).
    value, headers = dead_letter_of(
        message.key, message.value, header_pairs(message.headers), error=exc, topic=source,
        partition=message.partition, offset=message.offset, group=group,
    )  # fmt: skip
    await dlq.send(key=message.key, value=value, headers=headers)
    DEAD_LETTERS.labels(group, source).inc()
