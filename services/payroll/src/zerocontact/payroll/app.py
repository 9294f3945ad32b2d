"""Wiring of the payroll service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.payroll.app:create_app --port 8003``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from zerocontact.payroll import handlers
from zerocontact.payroll.api import router
from zerocontact.payroll.batch_runner import BatchRunner, RunnerConfig
from zerocontact.payroll.consumers import apply_identity_event
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.domain.batches import BatchLimits, RetryPolicy
from zerocontact.payroll.rail import PaymentRail, PaymentRailSimulator
from zerocontact.payroll.repository import PayrollRepository
from zerocontact.payroll.settings import PayrollSettings
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.http import engine_checks, install_operational_routes
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import create_mongo_client
from zerocontact.platform.outbox import OutboxRelay

log = logging.getLogger(__name__)


@dataclass
class PayrollDeps:
    """What the routes reach through ``app.state.deps``."""

    settings: PayrollSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    ctx: handlers.Context
    verifier: TokenVerifier
    publisher: EventPublisher
    relay: OutboxRelay
    consumer: ConsumerRunner
    runner: BatchRunner


def create_app(
    settings: PayrollSettings | None = None,
    *,
    verifier: TokenVerifier | None = None,
    rail: PaymentRail | None = None,
) -> FastAPI:
    """The payroll app. ``verifier`` and ``rail`` replace the configured ones (tests)."""
    settings = settings or PayrollSettings()  # type: ignore[call-arg]  # keys come from the env
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        db = mongo[settings.mongodb_database]
        repo = PayrollRepository(db)
        await repo.create_indexes()
        ledger = Ledger(db)
        await ledger.ensure_indexes()
        for name, side, negative in accounts.HOUSE_ACCOUNTS:
            await ledger.open_account(
                name, currency="CNY", normal_balance=side, allow_negative=negative
            )
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.service_name
        )
        await publisher.start()
        relay = OutboxRelay(
            publisher=publisher,
            collections=repo.outbox_collections,
            sweep_interval_s=settings.outbox_sweep_interval_s,
        )
        await relay.start()
        cipher = settings.field_cipher()
        the_rail = rail or PaymentRailSimulator(
            mongo[settings.rail_simulator_database], latency_s=settings.rail_simulator_latency_s
        )
        retry = RetryPolicy(settings.max_attempts, settings.retry_initial_s, settings.retry_max_s)
        runner = BatchRunner(
            repo=repo,
            ledger=ledger,
            rail=the_rail,
            relay=relay,
            publisher=publisher,
            cipher=cipher,
            config=RunnerConfig(
                settings.events_topic,
                settings.rail_concurrency,
                retry,
                lease_s=settings.batch_lease_s,
            ),
        )
        ctx = handlers.Context(
            repo=repo,
            ledger=ledger,
            rail=the_rail,
            relay=relay,
            cipher=cipher,
            runner=runner,
            topic=settings.events_topic,
            chunk_size=settings.chunk_size,
            limits=BatchLimits(Money.of(settings.max_item_amount, "CNY")),
            mmf_annual_rate=settings.mmf_annual_rate,
            redeem_lead_time=timedelta(seconds=settings.redeem_lead_time_s),
            retry=retry,
        )

        async def handle(consumed: ConsumedEvent) -> None:
            await apply_identity_event(consumed, parties=repo.parties)

        consumer = ConsumerRunner(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.identity_topic],
            group_id=settings.consumer_group,
            handler=handle,
            publisher=publisher,
        )
        await consumer.start()
        the_verifier = verifier or TokenVerifier.remote(
            settings.identity_jwks_url,
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
        )
        app.state.deps = PayrollDeps(
            settings, mongo, ctx, the_verifier, publisher, relay, consumer, runner
        )
        recovered = await handlers.recover(ctx)
        if any(recovered.values()):
            log.info("recovery resumed work in flight", extra={"recovered": recovered})
        scheduler = asyncio.create_task(_schedule(ctx, settings.scheduler_interval_s))
        try:
            yield
        finally:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
            await runner.stop()
            await consumer.stop()
            await relay.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(
        title="zerocontact payroll",
        description="Employer wallets, top-up, payroll batches to any bank card, payslips, "
        "gig payouts with tax withholding, idle-balance sweep.",
        lifespan=lifespan,
    )
    app.include_router(router)

    checks = engine_checks(
        publisher=lambda: app.state.deps.publisher,
        mongo=lambda: app.state.deps.mongo,
        consumer=lambda: app.state.deps.consumer,
        within_s=settings.readiness_timeout_s,
    )

    install_operational_routes(app, checks=checks, timeout_s=settings.readiness_timeout_s)
    return app


async def _schedule(ctx: handlers.Context, interval_s: float) -> None:
    """Scheduled payrolls (redeem ahead, start when due) and the ledger's recovery sweep."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await handlers.scheduler_tick(ctx)
            await ctx.ledger.recover(min_age=timedelta(seconds=30))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # engines down: the next tick tries again
            log.warning("payroll scheduler tick failed", extra={"error": repr(exc)})
