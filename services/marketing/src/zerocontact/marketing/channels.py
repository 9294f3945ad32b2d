"""The Channel port and its simulator adapter.

``Channel.send`` hands one approved message to a channel and returns its delivery receipt.
``ChannelSimulator`` is a SIMULATOR, not a gateway: it waits a configurable latency, fails a
configurable fraction of sends, and returns receipts that the service records as
``OfferInteraction`` events (stage "delivered" or "failed"). For SMS the service publishes a
``MarketingSmsRequested`` record on ``marketing.notifications.v1`` (no phone number: the
SMS gateway resolves the party's registered phone) and the simulator stands in for the
gateway's receipt. Push and in-app have no external topic here: the simulator is the device.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """One message for one party on one channel."""

    delivery_id: str
    party_id: str
    campaign_id: str
    channel: str
    title: str
    body: str


@dataclass(frozen=True)
class Receipt:
    """What the channel reports back."""

    delivery_id: str
    delivered: bool
    at: datetime
    error: str = ""


class Channel(Protocol):
    """A way to reach a party (push, SMS, in-app, live studio)."""

    async def send(self, message: OutgoingMessage) -> Receipt:
        """Send and return the delivery receipt."""
        ...


class ChannelSimulator:
    """Simulated delivery: latency, random failures, immediate receipts (documented above)."""

    def __init__(
        self, *, latency_ms: float = 15.0, failure_rate: float = 0.0, seed: int | None = None
    ) -> None:
        self._latency = latency_ms / 1000
        self._failure_rate = failure_rate
        self._random = random.Random(seed)
        self.sent: list[OutgoingMessage] = []  # for inspection in tests and the bench

    async def send(self, message: OutgoingMessage) -> Receipt:
        """Wait the latency, then report delivered (or failed at ``failure_rate``)."""
        if self._latency:
            await asyncio.sleep(self._latency)
        self.sent.append(message)
        if len(self.sent) > 10_000:
            del self.sent[:5_000]
        failed = self._random.random() < self._failure_rate
        return Receipt(
            message.delivery_id,
            delivered=not failed,
            at=datetime.now(UTC),
            error="simulated_failure" if failed else "",
        )
