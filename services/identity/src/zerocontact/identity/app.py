"""Wiring of the identity service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.identity.app:create_app --port 8001``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zerocontact.identity.api import factors_router, parties_router, sessions_router
from zerocontact.identity.consumers import apply_identity_event
from zerocontact.identity.domain.authentication import LockoutPolicy
from zerocontact.identity.domain.errors import InvalidIdentityData
from zerocontact.identity.handlers.context import IdentityContext, Passwords
from zerocontact.identity.handlers.notifications import OutboxDeliveryStore
from zerocontact.identity.notifier import Notifier, OutboxSmsNotifier
from zerocontact.identity.repository import (
    ChallengeRepository,
    IdempotencyStore,
    PartyRepository,
    SessionRepository,
    SourceThrottleRepository,
)
from zerocontact.identity.settings import IdentitySettings
from zerocontact.identity.tokens import SigningKeys, decode_b64url
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.http import problem
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.runtime import Runtime, service_app

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from zerocontact.identity.trust.app import TrustServices
    from zerocontact.platform.mongo import Document

PURGE_INTERVAL_S = 300.0


def signing_keys(settings: IdentitySettings) -> SigningKeys:
    """The token key ring from settings (PEM key or 32-byte seed)."""
    return SigningKeys.from_config(
        pem=settings.jwt_signing_key.get_secret_value() if settings.jwt_signing_key else None,
        seed=settings.jwt_signing_seed.get_secret_value() if settings.jwt_signing_seed else None,
        previous_pems=settings.jwt_previous_public_keys,
    )


async def _purge(ctx: IdentityContext, idempotency: IdempotencyStore) -> None:
    """Expired challenges, deliveries and idempotency records (no TTL indexes on FerretDB)."""
    now = datetime.now(UTC)
    await ctx.challenges.purge_expired(now=now)
    await idempotency.purge_expired(now=now)


def create_app(
    settings: IdentitySettings | None = None, *, notifier: Notifier | None = None
) -> FastAPI:
    """The identity service. ``notifier`` replaces the default outbox SMS notifier."""
    settings = settings or IdentitySettings()  # type: ignore[call-arg]  # secrets come from the env
    keys = signing_keys(settings)  # fail at start-up, not at the first login, on a bad key
    cipher = settings.field_cipher()
    gateway_key = X25519PublicKey.from_public_bytes(
        decode_b64url(settings.sms_gateway_public_key.get_secret_value())
    )
    routers = [parties_router, factors_router, sessions_router]
    make_trust: Callable[[AsyncDatabase[Document]], TrustServices] | None = None
    if settings.trust_log_signing_seed is not None:
        # Only when enabled: the trust services bring numpy, OpenCV and dlib (~0.6 s, ~100 MB).
        from zerocontact.identity.trust.api import router as trust_router
        from zerocontact.identity.trust.app import TrustServices, trust_log_key

        make_trust = partial(TrustServices, key=trust_log_key(settings.trust_log_signing_seed))
        routers.append(trust_router)
    passwords = Passwords(
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
    )

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        db = runtime.database()
        parties, sessions = PartyRepository(db), SessionRepository(db)
        challenges, sources = ChallengeRepository(db), SourceThrottleRepository(db)
        idempotency = IdempotencyStore(db)
        trust = make_trust(db) if make_trust is not None else None
        await runtime.ensure(
            *([trust.prepare] if trust is not None else []),
            parties.create_indexes,
            sessions.create_indexes,
            idempotency.create_indexes,
        )
        publisher = await runtime.start_publisher()
        relay = await runtime.start(
            OutboxRelay(
                publisher=publisher,
                collections=[parties.customers, parties.enterprises, challenges.deliveries]
                + (trust.outbox_collections() if trust is not None else []),
                sweep_interval_s=settings.outbox_sweep_interval_s,
            )
        )
        ctx = IdentityContext(
            settings=settings,
            parties=parties,
            sessions=sessions,
            challenges=challenges,
            sources=sources,
            cipher=cipher,
            passwords=passwords,
            keys=keys,
            relay=relay,
            notifier=notifier
            or OutboxSmsNotifier(
                gateway_public_key=gateway_key,
                store=OutboxDeliveryStore(
                    challenges=challenges, relay=relay, topic=settings.notifications_topic
                ),
            ),
            party_policy=LockoutPolicy(
                settings.party_failure_threshold, settings.lockout_base_s, settings.lockout_max_s
            ),
            source_policy=LockoutPolicy(
                settings.source_failure_threshold, settings.lockout_base_s, settings.lockout_max_s
            ),
        )
        await runtime.start_consumer(
            topics=[settings.events_topic], handler=partial(apply_identity_event, ctx=ctx)
        )

        async def local_jwks() -> dict[str, Any]:
            return keys.jwks()

        app.state.ctx = ctx
        app.state.idempotency = idempotency
        # What platform.deps' Caller and SteppedUp read.
        app.state.verifier = TokenVerifier(
            local_jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        app.state.step_up_max_age_s = settings.step_up_max_age_s
        runtime.start_job(
            "identity-purge",
            PURGE_INTERVAL_S,
            partial(_purge, ctx, idempotency),
            first_delay_s=PURGE_INTERVAL_S,
        )
        if trust is not None:
            app.state.trust = await trust.start(runtime, ctx)

    app = service_app(
        settings,
        title="zerocontact identity",
        description="Customers and enterprises, KYC/KYB, multi-factor authentication, tokens.",
        routers=routers,
        setup=setup,
    )
    app.version = "1"  # the OpenAPI document's version, as before the shared runtime

    @app.exception_handler(InvalidIdentityData)
    async def invalid_identity_data(_: Request, exc: InvalidIdentityData) -> JSONResponse:
        # Normally caught by the request schemas; this covers data checked deeper down.
        error = {"field": "body", "message": str(exc), "type": "value_error"}
        return problem(422, "invalid_request", "the request has invalid fields", errors=[error])

    return app
