"""The delivery store behind :class:`~zerocontact.identity.notifier.OutboxSmsNotifier`."""

from __future__ import annotations

from zerocontact.identity.handlers.events import sms_code_requested
from zerocontact.identity.notifier import SmsCodeRequest
from zerocontact.identity.repository import ChallengeRepository
from zerocontact.identity.repository.sessions import DELIVERIES
from zerocontact.platform.outbox import OutboxRelay


class OutboxDeliveryStore:
    """Stores a sealed delivery with its reference-only notification, then nudges the relay."""

    def __init__(self, *, challenges: ChallengeRepository, relay: OutboxRelay, topic: str) -> None:
        """``topic`` is the notifications topic."""
        self._challenges = challenges
        self._relay = relay
        self._topic = topic

    async def store_delivery(
        self, *, delivery_id: str, request: SmsCodeRequest, sealed: bytes
    ) -> None:
        """One write: the sealed message and the ``SmsCodeRequested`` event."""
        event = sms_code_requested(
            delivery_id=delivery_id,
            customer_id=request.customer_id,
            phone_masked=request.phone_masked,
            template=request.template,
            expires_at=request.expires_at,
            requested_at=request.requested_at,
            topic=self._topic,
        )
        await self._challenges.add_delivery(
            delivery_id=delivery_id,
            customer_id=request.customer_id,
            sealed=sealed,
            expires_at=request.expires_at,
            events=[event],
        )
        self._relay.nudge(DELIVERIES, delivery_id)
