"""Login, second factors, step-up, sessions and factor enrolment.

Every failure is counted per customer (lockout with exponential back-off, AccountLocked) and
per source address; the customer's counters and the events they cause are one write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain import parties
from zerocontact.identity.domain.authentication import (
    Aal,
    Factor,
    Method,
    SmsChallenge,
    assurance,
    code_digest,
    match_totp,
    new_recovery_codes,
    new_sms_code,
    new_totp_secret,
    normalise_recovery_code,
    totp_uri,
)
from zerocontact.identity.domain.errors import (
    AccountLocked,
    AuthenticationFailed,
    DuplicateParty,
    FactorStateConflict,
    Forbidden,
    InvalidIdentityData,
    RefreshTokenReused,
    SourceThrottled,
)
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.handlers.events import to_cloud_event
from zerocontact.identity.notifier import SmsCodeRequest
from zerocontact.identity.repository import CUSTOMERS, ConcurrentUpdate, CustomerRecord
from zerocontact.identity.repository.sessions import RotationOutcome, Session
from zerocontact.identity.tokens import (
    AccessGrant,
    access_claims,
    new_refresh_token,
    refresh_digest,
    session_of,
)
from zerocontact.platform.auth import InvalidToken, Principal, check_step_up
from zerocontact.platform.errors import DomainError, NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.outbox import OutboxEvent
from zerocontact.platform.pii import mask_phone

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Client:
    """Who is on the other end of a request, for risk signals and per-source throttling."""

    source_address: str
    device_id: str
    traceparent: str | None = None


@dataclass(frozen=True)
class TokenPair:
    """What a successful authentication returns."""

    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str
    aal: Aal
    methods: tuple[Method, ...]


@dataclass(frozen=True)
class TotpEnrolment:
    """A pending TOTP enrolment: shown once, confirmed with a code from the app."""

    otpauth_uri: str
    secret: str


@dataclass(frozen=True)
class SmsChallengeStarted:
    """A code was sent; the client answers with the challenge id and the code."""

    challenge_id: str
    expires_at: datetime


@dataclass
class _Outcome:
    """The second-factor check made against fresh state inside the write loop."""

    ok: bool
    methods: set[Method] = field(default_factory=set)


class Busy(DomainError):
    """Too many concurrent writers on one customer; the client may retry."""

    code = "concurrent_update"


async def _load(ctx: IdentityContext, customer_id: str) -> CustomerRecord:
    doc = await ctx.parties.get_customer_doc(customer_id)
    if doc is None:
        raise NotFound(f"customer {customer_id} does not exist")
    return ctx.parties.customer_record(doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"]))


def _events(
    ctx: IdentityContext, items: list[ev.IdentityDomainEvent], client: Client
) -> list[OutboxEvent]:
    return [
        to_cloud_event(e, topic=ctx.settings.events_topic, traceparent=client.traceparent)
        for e in items
    ]


async def _check_source(ctx: IdentityContext, client: Client, now: datetime) -> None:
    throttle = await ctx.sources.get(client.source_address)
    if throttle.is_locked(now):
        raise SourceThrottled(
            "too many failed attempts from this address; try again later",
            retry_after_s=throttle.retry_after_s(now),
        )


async def _fail(
    ctx: IdentityContext, customer_id: str, factor: Factor, client: Client, now: datetime
) -> NoReturn:
    """Count a failure for the customer and the source; emit the events; raise."""
    await ctx.sources.record_failure(client.source_address, ctx.source_policy, now)
    for _ in range(MAX_ATTEMPTS):
        record = await _load(ctx, customer_id)
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
            await ctx.parties.save_customer(record, _events(ctx, items, client))
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


def _ensure_unlocked(record: CustomerRecord, now: datetime) -> None:
    if record.throttle.is_locked(now):
        raise AccountLocked(
            "the account is locked after repeated failures; try again later",
            retry_after_s=record.throttle.retry_after_s(now),
        )


async def _issue(
    ctx: IdentityContext,
    record: CustomerRecord,
    *,
    methods: set[Method],
    client: Client,
    now: datetime,
    consumed_totp_step: int | None = None,
    consumed_recovery: str | None = None,
    rehash: str | None = None,
) -> TokenPair:
    """Record the success (counters reset, factor state, event) and hand out tokens."""
    aal = assurance(methods)
    ordered = tuple(m for m in Method if m in methods)
    session = Session(
        id=new_id(),
        customer_id=record.customer.id,
        aal=aal,
        methods=ordered,
        auth_time=now,
        expires_at=now + timedelta(seconds=ctx.settings.refresh_token_ttl_s),
        revoked=False,
        device_id=client.device_id,
    )
    record.throttle.record_success()
    if consumed_totp_step is not None:
        record.credentials.totp_last_step = consumed_totp_step
    if consumed_recovery is not None:
        record.credentials.recovery_codes[consumed_recovery] = False
    if rehash is not None:
        record.credentials.password_hash = rehash
    record.customer.version += 1
    event = ev.AuthenticationSucceeded(
        record.customer.id, aal, ordered, session.id, client.device_id, client.source_address, now
    )
    # The guarded write makes a TOTP step or a recovery code single-use under concurrency.
    await ctx.parties.save_customer(record, _events(ctx, [event], client))
    ctx.relay.nudge(CUSTOMERS, record.customer.id)
    await ctx.sources.record_success(client.source_address)
    refresh = new_refresh_token(session.id)
    await ctx.sessions.add(session, token_digest=refresh_digest(refresh), now=now)
    log.info(
        "authenticated",
        extra={"customer_id": record.customer.id, "aal": str(aal), "session_id": session.id},
    )
    return _pair(ctx, session, refresh, now)


def _pair(ctx: IdentityContext, session: Session, refresh: str, now: datetime) -> TokenPair:
    grant = AccessGrant(
        session.customer_id, session.id, session.aal, session.methods, session.auth_time
    )
    ttl = timedelta(seconds=ctx.settings.access_token_ttl_s)
    token = ctx.keys.sign(
        access_claims(
            grant,
            issuer=ctx.settings.jwt_issuer,
            audience=ctx.settings.jwt_audience,
            now=now,
            ttl=ttl,
        )
    )
    return TokenPair(
        token, int(ttl.total_seconds()), refresh, session.id, session.aal, session.methods
    )


def _totp_secret(ctx: IdentityContext, record: CustomerRecord) -> str | None:
    token = record.credentials.totp_secret_encrypted
    return ctx.cipher.decrypt(token, context="customer.totp_secret") if token else None


async def login(
    *, phone: str, password: str, totp_code: str | None, client: Client, ctx: IdentityContext
) -> TokenPair:
    """Password (AAL1), or password and TOTP code in one step (AAL2)."""
    now = datetime.now(UTC)
    await _check_source(ctx, client, now)
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
    _ensure_unlocked(record, now)
    if not await ctx.passwords.verify(record.credentials.password_hash, password):
        await _fail(ctx, customer_id, Factor.PASSWORD, client, now)
    rehash = None
    if ctx.passwords.needs_rehash(record.credentials.password_hash):
        rehash = await ctx.passwords.hash(password)
    for _ in range(MAX_ATTEMPTS):
        methods = {Method.PASSWORD}
        step = None
        if totp_code is not None:
            secret = _totp_secret(ctx, record)
            step = (
                match_totp(secret, totp_code, now=now, last_step=record.credentials.totp_last_step)
                if secret
                else None
            )
            if step is None:
                await _fail(ctx, customer_id, Factor.TOTP, client, now)
            methods.add(Method.TOTP)
        try:
            return await _issue(
                ctx, record, methods=methods, client=client, now=now,
                consumed_totp_step=step, rehash=rehash,
            )  # fmt: skip
        except ConcurrentUpdate:
            record = await _load(ctx, customer_id)
            _ensure_unlocked(record, now)
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)


async def _live_session(ctx: IdentityContext, principal: Principal) -> Session:
    session = await ctx.sessions.get(principal.session_id)
    if session is None or session.revoked or session.customer_id != principal.subject:
        raise InvalidToken("the session of this token has ended")
    return session


async def start_sms_challenge(
    *, principal: Principal, client: Client, ctx: IdentityContext
) -> SmsChallengeStarted:
    """Send a one-time code to the customer's registered phone (through the Notifier)."""
    await _live_session(ctx, principal)
    record = await _load(ctx, principal.subject)
    now = datetime.now(UTC)
    _ensure_unlocked(record, now)
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
            traceparent=client.traceparent,
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
    session = await _live_session(ctx, principal)
    now = datetime.now(UTC)
    await _check_source(ctx, client, now)
    customer_id = principal.subject
    record = await _load(ctx, customer_id)
    _ensure_unlocked(record, now)
    base = set(session.methods)
    for _ in range(MAX_ATTEMPTS):
        step: int | None = None
        recovery: str | None = None
        if method == Factor.TOTP:
            secret = _totp_secret(ctx, record)
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
            await _fail(ctx, customer_id, method, client, now)
        try:
            pair = await _issue(
                ctx, record, methods=base | {proven}, client=client, now=now,
                consumed_totp_step=step, consumed_recovery=recovery,
            )  # fmt: skip
        except ConcurrentUpdate:
            record = await _load(ctx, customer_id)
            _ensure_unlocked(record, now)
            if method == Factor.SMS:
                raise Busy("retry the step-up with a new code", retry=True) from None
            continue
        await ctx.sessions.revoke(session.id, reason="replaced by step-up", now=now)
        return pair
    raise Busy(f"customer {customer_id} is busy, retry", retry=True)


async def refresh(*, refresh_token: str, ctx: IdentityContext) -> TokenPair:
    """Rotate a refresh token; a reused one revokes its whole family."""
    session_id = session_of(refresh_token)
    if session_id is None:
        raise InvalidToken("malformed refresh token")
    now = datetime.now(UTC)
    replacement = new_refresh_token(session_id)
    outcome, session = await ctx.sessions.rotate(
        session_id,
        presented=refresh_digest(refresh_token),
        replacement=refresh_digest(replacement),
        now=now,
    )
    if outcome == RotationOutcome.REUSED:
        log.warning("refresh token reused: session revoked", extra={"session_id": session_id})
        raise RefreshTokenReused("this refresh token was used before; the session is revoked")
    if session is None:
        raise InvalidToken("unknown, expired or revoked refresh token")
    # Refreshing keeps the original auth_time: it never makes an old login look recent.
    return _pair(ctx, session, replacement, now)


async def revoke(*, refresh_token: str, ctx: IdentityContext) -> None:
    """Revoke the session of a refresh token (RFC 7009: unknown tokens are not an error)."""
    session_id = session_of(refresh_token)
    if session_id is None:
        return
    session = await ctx.sessions.find_by_token(session_id, refresh_digest(refresh_token))
    if session is not None:
        await ctx.sessions.revoke(session_id, reason="revoked by client", now=datetime.now(UTC))


def _own(principal: Principal, customer_id: str) -> None:
    if principal.subject != customer_id:
        raise Forbidden("a customer can only manage their own factors")


async def enrol_totp(
    customer_id: str, *, principal: Principal, ctx: IdentityContext
) -> TotpEnrolment:
    """Start a TOTP enrolment. Replacing an enrolled authenticator needs step-up."""
    _own(principal, customer_id)
    await _live_session(ctx, principal)
    for _ in range(MAX_ATTEMPTS):
        record = await _load(ctx, customer_id)
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
    _own(principal, customer_id)
    await _live_session(ctx, principal)
    now = datetime.now(UTC)
    for _ in range(MAX_ATTEMPTS):
        record = await _load(ctx, customer_id)
        _ensure_unlocked(record, now)
        pending = record.credentials.totp_pending_encrypted
        if not pending:
            raise FactorStateConflict("no TOTP enrolment is pending; start one first")
        secret = ctx.cipher.decrypt(pending, context="customer.totp_pending")
        step = match_totp(secret, code, now=now, last_step=0)
        if step is None:
            await _fail(ctx, customer_id, Factor.TOTP, client, now)
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
            await ctx.parties.save_customer(record, _events(ctx, items, client))
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
    _own(principal, customer_id)
    check_step_up(principal, ctx.settings.step_up_max_age_s)
    await _live_session(ctx, principal)
    e164 = parties.normalise_phone(phone)
    index = ctx.cipher.blind_index(e164)
    for _ in range(MAX_ATTEMPTS):
        record = await _load(ctx, customer_id)
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
