"""Several platform outbox relays side by side, each owning a share of the aggregates.

One :class:`~zerocontact.platform.outbox.OutboxRelay` flushes what was nudged meanwhile side
by side, each aggregate once (a flush is a publish waited for and one update, plus a find
when the nudge does not carry what the write left pending); the 310 path flushes four times
per loan. Nudges are routed
by aggregate id, so one aggregate's events always go through the same relay and keep their
order. Only the first relay sweeps periodically; the others sweep once
at start. A sweep racing an owner's flush may publish an event twice (same ``ce_id``, first
occurrences still in order), which the outbox already allows: delivery is at least once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.outbox import OutboxRelay, PendingEvents

# The idle relays' sweep interval: effectively "once, at start".
_NEVER_S = 10.0**9


class ShardedRelay:
    """``shards`` outbox relays over the same collections; ``nudge`` as on one relay."""

    def __init__(
        self,
        *,
        publisher: EventPublisher,
        collections: Sequence[AsyncCollection[dict[str, Any]]],
        sweep_interval_s: float,
        shards: int,
    ) -> None:
        self._relays = [
            OutboxRelay(
                publisher=publisher,
                collections=collections,
                sweep_interval_s=sweep_interval_s if n == 0 else _NEVER_S,
            )
            for n in range(max(1, shards))
        ]

    def nudge(
        self, collection: str, aggregate_id: Any, pending: PendingEvents | None = None
    ) -> None:
        """Ask the aggregate's relay to publish its pending events now (``pending``: what the
        write left pending, published without reading the document back)."""
        digest = hashlib.blake2b(str(aggregate_id).encode(), digest_size=4).digest()
        self._relays[int.from_bytes(digest, "big") % len(self._relays)].nudge(
            collection, aggregate_id, pending
        )

    async def start(self) -> None:
        """Start every relay."""
        for relay in self._relays:
            await relay.start()

    async def stop(self) -> None:
        """Stop every relay (what is pending is published by the next sweep)."""
        for relay in self._relays:
            await relay.stop()

    async def sweep(self) -> int:
        """Publish everything pending now (crash recovery; tests)."""
        return await self._relays[0].sweep()
