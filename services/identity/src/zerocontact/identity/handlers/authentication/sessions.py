"""Sessions and their tokens: issuing a pair on success, refresh rotation, revocation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain.authentication import Aal, Method, assurance
from zerocontact.identity.domain.errors import RefreshTokenReused
from zerocontact.identity.handlers.authentication.attempts import Client, outbox_events
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.repository import CUSTOMERS, CustomerRecord
from zerocontact.identity.repository.sessions import RotationOutcome, Session
from zerocontact.identity.tokens import (
    AccessGrant,
    access_claims,
    new_refresh_token,
    refresh_digest,
    session_of,
)
from zerocontact.platform.auth import InvalidToken
from zerocontact.platform.ids import new_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenPair:
    """What a successful authentication returns."""

    access_token: str
    expires_in: int
    refresh_token: str
    session_id: str
    aal: Aal
    methods: tuple[Method, ...]


async def issue(
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
    await ctx.parties.save_customer(record, outbox_events(ctx, [event], client))
    ctx.relay.nudge(CUSTOMERS, record.customer.id)
    await ctx.sources.record_success(client.source_address)
    refresh = new_refresh_token(session.id)
    await ctx.sessions.add(session, token_digest=refresh_digest(refresh), now=now)
    log.info(
        "authenticated",
        extra={"customer_id": record.customer.id, "aal": str(aal), "session_id": session.id},
    )
    return token_pair(ctx, session, refresh, now)


def token_pair(ctx: IdentityContext, session: Session, refresh: str, now: datetime) -> TokenPair:
    """A fresh access token for ``session`` beside its refresh token."""
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
    return token_pair(ctx, session, replacement, now)


async def revoke(*, refresh_token: str, ctx: IdentityContext) -> None:
    """Revoke the session of a refresh token (RFC 7009: unknown tokens are not an error)."""
    session_id = session_of(refresh_token)
    if session_id is None:
        return
    session = await ctx.sessions.find_by_token(session_id, refresh_digest(refresh_token))
    if session is not None:
        await ctx.sessions.revoke(session_id, reason="revoked by client", now=datetime.now(UTC))


async def live_sessions(*, customer_id: str, ctx: IdentityContext) -> list[Session]:
    """The customer's live sessions (one per login, each on a device)."""
    return await ctx.sessions.live_of(customer_id, now=datetime.now(UTC))


async def revoke_other_sessions(
    *, customer_id: str, current_session_id: str, device_id: str | None, ctx: IdentityContext
) -> int:
    """End the customer's sessions other than the current one, or only those opened on
    ``device_id`` (a lost device); how many were live. Their access tokens stay valid until
    they expire (minutes); their refresh tokens stop at once."""
    now = datetime.now(UTC)
    revoked = 0
    reason = "device locked by its owner" if device_id else "signed out by its owner"
    for session in await ctx.sessions.live_of(customer_id, now=now):
        if session.id == current_session_id:
            continue
        if device_id is not None and session.device_id != device_id:
            continue
        if await ctx.sessions.revoke(session.id, reason=reason, now=now):
            revoked += 1
    log.info(
        "sessions revoked by their owner",
        extra={"customer_id": customer_id, "revoked": revoked, "by_device": device_id is not None},
    )
    return revoked
