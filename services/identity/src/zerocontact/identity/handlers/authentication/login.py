"""Login with a password (and a TOTP code), SMS challenges, and step-up to AAL2."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from zerocontact.identity.domain import parties
from zerocontact.identity.domain.authentication import (
    Factor,
    Method,
    SmsChallenge,
    code_digest,
    match_totp,
    new_sms_code,
    normalise_recovery_code,
)
from zerocontact.identity.domain.errors import (
    AuthenticationFailed,
    FactorStateConflict,
    InvalidIdentityData,
)
from zerocontact.identity.handlers.authentication.attempts import (
    MAX_ATTEMPTS,
    Busy,
    Client,
    check_source,
    ensure_unlocked,
    fail,
    live_session,
    load_customer,
    totp_secret,
)
from zerocontact.identity.handlers.authentication.sessions import TokenPair, issue
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.notifier import SmsCodeRequest
from zerocontact.identity.repository import ConcurrentUpdate
from zerocontact.platform.auth import Principal
from zerocontact.platform.ids import new_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmsChallengeStarted:
    """A code was sent; the client answers with the challenge id and the code."""

    challenge_id: str
    expires_at: datetime


async def login(
    *, phone: str, password: str, totp_code: str | None, client: Client, ctx: IdentityContext
) -> TokenPair:
    """Password (AAL1), or password and TOTP code in one step (AAL2)."""
    now = datetime.now(UTC)
    await check_source(ctx, client, now)
    try:
        e164 = parties.normalise_phone(phone)
    except InvalidIdentityData:
        e164 = None
    doc = (
        await ctx.parties.find_customer_doc_by_phone(ctx.cipher.blind_index(e164)) if e164 else None
    )
    if doc is None:
        await ctx.passwords.verify(None, password)  # same time as a real check
        await ctx.sources.record_failure(client.source_address, ctx.source_policy, now)
        log.info("authentication failed: unknown phone", extra={"source": client.source_address})
        raise AuthenticationFailed("the credentials did not match")
    customer_id = doc["_id"]
    record = ctx.parties.customer_record(doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"]))
    ensure_unlocked(record, now)
    if not await ctx.passwords.verify(record.credentials.password_hash, password):
        await fail(ctx, customer_id, Factor.PASSWORD, client, now)
    rehash = None
    if ctx.passwords.needs_rehash(record.credentials.password_hash):
        rehash = await ctx.passwords.hash(password)
    for _ in range(MAX_ATTEMPTS):
        methods = {Method.PASSWORD}
        step = None
        if totp_code is not None:
            secret = totp_secret(ctx, record)
            step = (
                match_totp(secret, totp_code, now=now, last_step=record.credentials.totp_last_step)
                if secret
                else None
            )
            if step is None:
                await fail(ctx, customer_id, Factor.TOTP, client, now)
            methods.add(Method.TOTP)
        try:
            return await issue(
                ctx, record, methods=methods, client=client, now=now,
                consumed_totp_step=step, rehash=rehash,
            )  # fmt: skip
        except ConcurrentUpdate:
            record = await load_customer(ctx, customer_id)
            ensure_unlocked(record, now)
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)


async def start_sms_challenge(
    *, principal: Principal, client: Client, ctx: IdentityContext
) -> SmsChallengeStarted:
    """Send a one-time code to the customer's registered phone (through the Notifier)."""
    await live_session(ctx, principal)
    record = await load_customer(ctx, principal.subject)
    now = datetime.now(UTC)
    ensure_unlocked(record, now)
    phone = ctx.cipher.decrypt(record.encrypted["phone"], context="customer.phone")
    code = new_sms_code()
    challenge_id = new_id()
    expires_at = now + timedelta(seconds=ctx.settings.sms_code_ttl_s)
    await ctx.challenges.add_challenge(
        SmsChallenge(
            id=challenge_id,
            customer_id=record.customer.id,
            code_digest=code_digest(code, salt=challenge_id),
            expires_at=expires_at,
            attempts_left=ctx.settings.sms_code_max_attempts,
        ),
        now=now,
    )
    await ctx.notifier.send_sms_code(
        SmsCodeRequest(
            customer_id=record.customer.id,
            phone_e164=phone,
            phone_masked=record.customer.phone_masked,
            code=code,
            template="step_up_code",
            expires_at=expires_at,
            requested_at=now,
        )
    )
    log.info(
        "sms challenge started",
        extra={"customer_id": record.customer.id, "challenge_id": challenge_id},
    )
    return SmsChallengeStarted(challenge_id, expires_at)


async def step_up(
    *,
    principal: Principal,
    method: Factor,
    code: str,
    challenge_id: str | None,
    client: Client,
    ctx: IdentityContext,
) -> TokenPair:
    """Prove a second factor on top of a password session: a new AAL2 session replaces it."""
    session = await live_session(ctx, principal)
    now = datetime.now(UTC)
    await check_source(ctx, client, now)
    customer_id = principal.subject
    record = await load_customer(ctx, customer_id)
    ensure_unlocked(record, now)
    base = set(session.methods)
    for _ in range(MAX_ATTEMPTS):
        step: int | None = None
        recovery: str | None = None
        if method == Factor.TOTP:
            secret = totp_secret(ctx, record)
            step = (
                match_totp(secret, code, now=now, last_step=record.credentials.totp_last_step)
                if secret
                else None
            )
            proven = Method.TOTP if step is not None else None
        elif method == Factor.SMS:
            challenge = await ctx.challenges.get_challenge(challenge_id or "")
            ok = (
                challenge is not None
                and challenge.customer_id == customer_id
                and challenge.accepts(code, now)
            )
            if challenge is not None and not ok:
                await ctx.challenges.spend_attempt(challenge.id)
            if ok and challenge is not None and not await ctx.challenges.consume(challenge.id):
                ok = False
            proven = Method.SMS if ok else None
        elif method == Factor.RECOVERY_CODE:
            digest = ctx.cipher.blind_index(normalise_recovery_code(code))
            usable = record.credentials.recovery_codes.get(digest, False)
            recovery = digest if usable else None
            proven = Method.RECOVERY if usable else None
        else:
            raise FactorStateConflict(f"{method} is not a second factor")
        if proven is None:
            await fail(ctx, customer_id, method, client, now)
        try:
            pair = await issue(
                ctx, record, methods=base | {proven}, client=client, now=now,
                consumed_totp_step=step, consumed_recovery=recovery,
            )  # fmt: skip
        except ConcurrentUpdate:
            record = await load_customer(ctx, customer_id)
            ensure_unlocked(record, now)
            if method == Factor.SMS:
                raise Busy("retry the step-up with a new code", retry=True) from None
            continue
        await ctx.sessions.revoke(session.id, reason="replaced by step-up", now=now)
        return pair
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)
