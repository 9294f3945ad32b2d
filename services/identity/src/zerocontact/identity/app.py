"""Wiring of the identity service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.identity.app:create_app --port 8001``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from zerocontact.platform.http import engine_checks, install_operational_routes, problem
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.mongo import create_mongo_client
from zerocontact.platform.outbox import OutboxRelay

if TYPE_CHECKING:
    from zerocontact.identity.trust.app import TrustRuntime

log = logging.getLogger(__name__)
PURGE_INTERVAL_S = 300.0


def signing_keys(settings: IdentitySettings) -> SigningKeys:
    """The token key ring from settings (PEM key or 32-byte seed)."""
    return SigningKeys.from_config(
        pem=settings.jwt_signing_key.get_secret_value() if settings.jwt_signing_key else None,
        seed=settings.jwt_signing_seed.get_secret_value() if settings.jwt_signing_seed else None,
        previous_pems=settings.jwt_previous_public_keys,
    )


async def _purge_loop(ctx: IdentityContext, idempotency: IdempotencyStore) -> None:
    """Expired challenges, deliveries and idempotency records (no TTL indexes on FerretDB)."""
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            now = datetime.now(UTC)
            await ctx.challenges.purge_expired(now=now)
            await idempotency.purge_expired(now=now)
        except Exception as exc:  # engines down: the next round tries again
            log.warning("purge failed", extra={"error": repr(exc)})


def create_app(
    settings: IdentitySettings | None = None, *, notifier: Notifier | None = None
) -> FastAPI:
    """The identity service. ``notifier`` replaces the default outbox SMS notifier."""
    settings = settings or IdentitySettings()  # type: ignore[call-arg]  # secrets come from the env
    configure_logging(settings.service_name, settings.log_level)
    keys = signing_keys(settings)  # fail at start-up, not at the first login, on a bad key
    cipher = settings.field_cipher()
    gateway_key = X25519PublicKey.from_public_bytes(
        decode_b64url(settings.sms_gateway_public_key.get_secret_value())
    )
    make_trust = None
    if settings.trust_log_signing_seed is not None:
        # Only when enabled: the trust services bring numpy, OpenCV and dlib (~0.6 s, ~100 MB).
        from zerocontact.identity.trust.api import router as trust_router
        from zerocontact.identity.trust.app import TrustRuntime, trust_log_key

        make_trust = partial(TrustRuntime, key=trust_log_key(settings.trust_log_signing_seed))
    passwords = Passwords(
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
        parallelism=settings.password_parallelism,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        db = mongo[settings.mongodb_database]
        parties, sessions = PartyRepository(db), SessionRepository(db)
        challenges, sources = ChallengeRepository(db), SourceThrottleRepository(db)
        idempotency = IdempotencyStore(db)
        trust: TrustRuntime | None = make_trust(db) if make_trust is not None else None
        if trust is not None:
            await trust.prepare()
        await parties.create_indexes()
        await sessions.create_indexes()
        await idempotency.create_indexes()
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.service_name
        )
        await publisher.start()
        relay = OutboxRelay(
            publisher=publisher,
            collections=[parties.customers, parties.enterprises, challenges.deliveries]
            + (trust.outbox_collections() if trust is not None else []),
            sweep_interval_s=settings.outbox_sweep_interval_s,
        )
        await relay.start()
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

        async def handle(consumed: ConsumedEvent) -> None:
            await apply_identity_event(consumed, ctx=ctx)

        consumer = ConsumerRunner(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.events_topic],
            group_id=settings.consumer_group,
            handler=handle,
            publisher=publisher,
        )
        await consumer.start()

        async def local_jwks() -> dict[str, Any]:
            return keys.jwks()

        app.state.ctx = ctx
        app.state.mongo = mongo
        app.state.publisher = publisher
        app.state.consumer = consumer
        app.state.idempotency = idempotency
        app.state.verifier = TokenVerifier(
            local_jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        purge = asyncio.create_task(_purge_loop(ctx, idempotency), name="identity-purge")
        if trust is not None:
            app.state.trust = trust.start(ctx)
        try:
            yield
        finally:
            if trust is not None:
                await trust.stop()
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
            await consumer.stop()
            await relay.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(
        title="zerocontact identity",
        description="Customers and enterprises, KYC/KYB, multi-factor authentication, tokens.",
        version="1",
        lifespan=lifespan,
    )
    app.include_router(parties_router)
    app.include_router(factors_router)
    app.include_router(sessions_router)
    if make_trust is not None:
        app.include_router(trust_router)

    checks = engine_checks(
        publisher=lambda: app.state.publisher,
        mongo=lambda: app.state.mongo,
        consumer=lambda: app.state.consumer,
        within_s=settings.readiness_timeout_s,
    )

    @app.exception_handler(InvalidIdentityData)
    async def invalid_identity_data(_: Request, exc: InvalidIdentityData) -> JSONResponse:
        # Normally caught by the request schemas; this covers data checked deeper down.
        error = {"field": "body", "message": str(exc), "type": "value_error"}
        return problem(422, "invalid_request", "the request has invalid fields", errors=[error])

    install_operational_routes(app, checks=checks, timeout_s=settings.readiness_timeout_s)
    return app
