"""What every authentication step shares: the client, the customer, failure counting.

Every failure is counted per customer (lockout with exponential back-off, AccountLocked) and
per source address; the customer's counters and the events they cause are one write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain.authentication import Factor
from zerocontact.identity.domain.errors import (
    AccountLocked,
    AuthenticationFailed,
    Forbidden,
    SourceThrottled,
)
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.handlers.events import to_cloud_event
from zerocontact.identity.repository import CUSTOMERS, ConcurrentUpdate, CustomerRecord
from zerocontact.identity.repository.sessions import Session
from zerocontact.platform.auth import InvalidToken, Principal
from zerocontact.platform.errors import DomainError, NotFound
from zerocontact.platform.outbox import OutboxEvent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Client:
    """Who is on the other end of a request, for risk signals and per-source throttling."""

    source_address: str
    device_id: str


class Busy(DomainError):
    """Too many concurrent writers on one customer; the client may retry."""

    code = "concurrent_update"


async def load_customer(ctx: IdentityContext, customer_id: str) -> CustomerRecord:
    """The customer's record (404 when there is none)."""
    doc = await ctx.parties.get_customer_doc(customer_id)
    if doc is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return ctx.parties.customer_record(doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"]))


def outbox_events(
    ctx: IdentityContext, items: list[ev.IdentityDomainEvent], client: Client
) -> list[OutboxEvent]:
    """The domain events as CloudEvents on identity's topic (in the request's trace)."""
    return [to_cloud_event(e, topic=ctx.settings.events_topic) for e in items]


async def check_source(ctx: IdentityContext, client: Client, now: datetime) -> None:
    """Refuse unchecked while the source address is throttled."""
    throttle = await ctx.sources.get(client.source_address)
    if throttle.is_locked(now):
        raise SourceThrottled(
            "too many failed attempts from this address; try again later",
            retry_after_s=throttle.retry_after_s(now),
        )


async def fail(
    ctx: IdentityContext, customer_id: str, factor: Factor, client: Client, now: datetime
) -> NoReturn:
    """Count a failure for the customer and the source; emit the events; raise."""
    await ctx.sources.record_failure(client.source_address, ctx.source_policy, now)
    for _ in range(MAX_ATTEMPTS):
        record = await load_customer(ctx, customer_id)
        locked_until = record.throttle.record_failure(ctx.party_policy, now)
        failures = record.throttle.failures
        items: list[ev.IdentityDomainEvent] = [
            ev.AuthenticationFailed(
                customer_id, factor, failures, client.device_id, client.source_address, now
            )
        ]
        if locked_until is not None:
            items.append(
                ev.AccountLocked(customer_id, failures, locked_until, client.source_address, now)
            )
        record.customer.version += 1
        try:
            await ctx.parties.save_customer(record, outbox_events(ctx, items, client))
        except ConcurrentUpdate:
            continue
        ctx.relay.nudge(CUSTOMERS, customer_id)
        log.info(
            "authentication failed",
            extra={"customer_id": customer_id, "factor": str(factor), "failures": failures,
                   "locked": locked_until is not None, "source": client.source_address},
        )  # fmt: skip
        break
    raise AuthenticationFailed("the credentials did not match")


def ensure_unlocked(record: CustomerRecord, now: datetime) -> None:
    """Refuse unchecked while the customer is locked out."""
    if record.throttle.is_locked(now):
        raise AccountLocked(
            "the account is locked after repeated failures; try again later",
            retry_after_s=record.throttle.retry_after_s(now),
        )


def totp_secret(ctx: IdentityContext, record: CustomerRecord) -> str | None:
    """The customer's confirmed TOTP secret, decrypted (None when not enrolled)."""
    token = record.credentials.totp_secret_encrypted
    return ctx.cipher.decrypt(token, context="customer.totp_secret") if token else None


async def live_session(ctx: IdentityContext, principal: Principal) -> Session:
    """The principal's session, still open (401 otherwise)."""
    session = await ctx.sessions.get(principal.session_id)
    if session is None or session.revoked or session.customer_id != principal.subject:
        raise InvalidToken("the session of this token has ended")
    return session


def own(principal: Principal, customer_id: str) -> None:
    """Refuse unless the principal is the customer."""
    if principal.subject != customer_id:
        raise Forbidden("a customer can only manage their own factors")
