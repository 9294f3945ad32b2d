"""Factor enrolment (TOTP and recovery codes) and changing the registered phone."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain import parties
from zerocontact.identity.domain.authentication import (
    Factor,
    match_totp,
    new_recovery_codes,
    new_totp_secret,
    normalise_recovery_code,
    totp_uri,
)
from zerocontact.identity.domain.errors import DuplicateParty, FactorStateConflict
from zerocontact.identity.handlers.authentication.attempts import (
    MAX_ATTEMPTS,
    Busy,
    Client,
    ensure_unlocked,
    fail,
    live_session,
    load_customer,
    outbox_events,
    own,
)
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.repository import CUSTOMERS, ConcurrentUpdate
from zerocontact.platform.auth import Principal, check_step_up
from zerocontact.platform.pii import mask_phone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TotpEnrolment:
    """A pending TOTP enrolment: shown once, confirmed with a code from the app."""

    otpauth_uri: str
    secret: str


async def enrol_totp(
    customer_id: str, *, principal: Principal, ctx: IdentityContext
) -> TotpEnrolment:
    """Start a TOTP enrolment. Replacing an enrolled authenticator needs step-up."""
    own(principal, customer_id)
    await live_session(ctx, principal)
    for _ in range(MAX_ATTEMPTS):
        record = await load_customer(ctx, customer_id)
        if record.credentials.totp_secret_encrypted:
            check_step_up(principal, ctx.settings.step_up_max_age_s)
        secret = new_totp_secret()
        record.credentials.totp_pending_encrypted = ctx.cipher.encrypt(
            secret, context="customer.totp_pending"
        )
        record.customer.version += 1
        try:
            await ctx.parties.save_customer(record, [])
        except ConcurrentUpdate:
            continue
        uri = totp_uri(
            secret, account=record.customer.phone_masked, issuer=ctx.settings.totp_issuer
        )
        return TotpEnrolment(uri, secret)
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)


async def confirm_totp(
    customer_id: str, *, code: str, principal: Principal, client: Client, ctx: IdentityContext
) -> list[str]:
    """Confirm with a code from the app; returns new recovery codes (shown this once)."""
    own(principal, customer_id)
    await live_session(ctx, principal)
    now = datetime.now(UTC)
    for _ in range(MAX_ATTEMPTS):
        record = await load_customer(ctx, customer_id)
        ensure_unlocked(record, now)
        pending = record.credentials.totp_pending_encrypted
        if not pending:
            raise FactorStateConflict("no TOTP enrolment is pending; start one first")
        secret = ctx.cipher.decrypt(pending, context="customer.totp_pending")
        step = match_totp(secret, code, now=now, last_step=0)
        if step is None:
            await fail(ctx, customer_id, Factor.TOTP, client, now)
        record.credentials.totp_secret_encrypted = ctx.cipher.encrypt(
            secret, context="customer.totp_secret"
        )
        record.credentials.totp_pending_encrypted = None
        record.credentials.totp_last_step = step
        codes = new_recovery_codes()
        record.credentials.recovery_codes = {
            ctx.cipher.blind_index(normalise_recovery_code(c)): True for c in codes
        }
        record.customer.version += 1
        items: list[ev.IdentityDomainEvent] = [
            ev.FactorEnrolled(customer_id, Factor.TOTP, now),
            ev.FactorEnrolled(customer_id, Factor.RECOVERY_CODE, now),
        ]
        try:
            await ctx.parties.save_customer(record, outbox_events(ctx, items, client))
        except ConcurrentUpdate:
            continue
        ctx.relay.nudge(CUSTOMERS, customer_id)
        log.info("totp enrolled", extra={"customer_id": customer_id})
        return codes
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)


async def change_phone(
    customer_id: str, *, phone: str, principal: Principal, ctx: IdentityContext
) -> parties.Customer:
    """Change the registered phone: a sensitive operation, AAL2 and recent authentication."""
    own(principal, customer_id)
    check_step_up(principal, ctx.settings.step_up_max_age_s)
    await live_session(ctx, principal)
    e164 = parties.normalise_phone(phone)
    index = ctx.cipher.blind_index(e164)
    for _ in range(MAX_ATTEMPTS):
        record = await load_customer(ctx, customer_id)
        other = await ctx.parties.find_customer_doc_by_phone(index)
        if other is not None and other["_id"] != customer_id:
            raise DuplicateParty(
                "a customer with this phone number is registered already", field="phone"
            )
        record.encrypted["phone"] = ctx.cipher.encrypt(e164, context="customer.phone")
        record.indexes["phone"] = index
        record.customer.phone_masked = mask_phone(e164)
        record.customer.version += 1
        try:
            await ctx.parties.save_customer(record, [])
        except ConcurrentUpdate:
            continue
        log.info("phone changed", extra={"customer_id": customer_id})
        return record.customer
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)
