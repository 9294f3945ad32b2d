"""What the gateway's readers of the loan, payroll and risk topics cannot read goes to the
topic's dead-letter twin, ``<topic>.dlq``, with the platform's ``dlq_*`` headers (decision 6), so
the stream goes on and ``zerocontact dlq replay`` can put the record back once its fault is fixed.

Two readers dead-letter, each under its own name in ``dlq_consumer_group``: the webhook
dispatcher (its consumer group; it commits past a record only once its dead letter is
acknowledged) and each replica's event hub of the watch streams (no group: ``watch_reader``; it
hands the dead letter to the background and goes on, so no partner's stream waits on it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from zerocontact.platform.kafka.consumer import TRANSIENT_ERRORS, publish_dead_letter
from zerocontact.platform.kafka.producer import EventPublisher

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends the records one reader could not read to ``<topic>.dlq``, signed ``reader``."""

    def __init__(self, publisher: EventPublisher, reader: str) -> None:
        self.publisher = publisher
        self.reader = reader
        self._background: set[asyncio.Task[None]] = set()

    async def send(self, record: Any, error: Exception) -> None:
        """Dead-letter ``record`` (an aiokafka ``ConsumerRecord``) and wait for the broker's
        acknowledgement; a broker that does not take it raises (the caller retries)."""
        await publish_dead_letter(self.publisher, record, error, group=self.reader)

    def send_in_background(self, record: Any, error: Exception) -> None:
        """Dead-letter ``record`` without waiting: retried with back-off while the broker does
        not take it (the record stays on its topic meanwhile)."""
        task = asyncio.create_task(self._send_until_taken(record, error), name="gateway-dlq")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_until_taken(self, record: Any, error: Exception) -> None:
        delay = 0.1
        while True:
            try:
                await self.send(record, error)
                return
            except TRANSIENT_ERRORS as exc:
                log.warning(
                    "dead letter not taken yet, retrying",
                    extra={"topic": record.topic, "offset": record.offset, "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def drain(self, within_s: float = 5.0) -> None:
        """Wait up to ``within_s`` for the dead letters still in the background, then cancel
        them (their records stay on their topics)."""
        pending = set(self._background)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=within_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
