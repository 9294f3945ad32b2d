"""Wiring of the loan service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.loan.app:create_app --port 8002``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from zerocontact.loan.api import (
    admin_router,
    applications_router,
    loans_router,
    products_router,
    reports_router,
)
from zerocontact.loan.authority import ApprovalAuthority, IdentityTokenAuthority
from zerocontact.loan.consumers import handle
from zerocontact.loan.domain.products import Product, default_catalog
from zerocontact.loan.handlers import LoanDeps, prepare_ledger
from zerocontact.loan.jobs import PeriodicJob, overdue_job, recovery_job
from zerocontact.loan.rail import RAIL_PAYMENTS, PaymentRail, PaymentRailSimulator
from zerocontact.loan.relays import ShardedRelay
from zerocontact.loan.repository import LoanRepository
from zerocontact.loan.settings import LoanSettings
from zerocontact.platform.http import engine_checks, install_operational_routes
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.mongo import create_mongo_client


@dataclass
class AppDeps:
    """What the routes and probes reach through ``app.state.deps``."""

    settings: LoanSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    publisher: EventPublisher
    consumer: ConsumerRunner
    authority: ApprovalAuthority
    loan: LoanDeps
    jobs: list[PeriodicJob]


def create_app(
    settings: LoanSettings | None = None,
    *,
    authority: ApprovalAuthority | None = None,
    rail: PaymentRail | None = None,
    catalog: Mapping[str, Product] | None = None,
) -> FastAPI:
    """The loan service. ``authority``, ``rail`` and ``catalog`` default to identity's JWKS
    verifier, the :class:`PaymentRailSimulator` and :func:`default_catalog`."""
    settings = settings or LoanSettings()  # type: ignore[call-arg]  # secrets come from the env
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        db = mongo[settings.mongodb_database]
        repo = LoanRepository(db)
        await repo.create_indexes()
        ledger = Ledger(db)
        await ledger.ensure_indexes()
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers, client_id=settings.service_name
        )
        await publisher.start()
        relay = ShardedRelay(
            publisher=publisher,
            collections=[repo.applications, repo.loans, repo.revenue_reports],
            sweep_interval_s=settings.outbox_sweep_interval_s,
            shards=settings.outbox_relays,
        )
        await relay.start()
        payment_rail = rail or PaymentRailSimulator(
            db[RAIL_PAYMENTS],
            latency_s=settings.rail_latency_ms / 1000,
            failure_rate=settings.rail_failure_rate,
            closed_accounts=settings.rail_closed_accounts,
        )
        loan_deps = LoanDeps(
            repo=repo,
            ledger=ledger,
            rail=payment_rail,
            relay=relay,
            catalog=dict(catalog or default_catalog()),
            topic=settings.events_topic,
            alert_window=timedelta(days=settings.alert_window_days),
            rail_max_attempts=settings.rail_max_attempts,
        )
        await prepare_ledger(loan_deps)

        async def on_event(consumed: ConsumedEvent) -> None:
            await handle(consumed, deps=loan_deps, identity_topic=settings.identity_topic)

        consumer = ConsumerRunner(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[settings.identity_topic, settings.risk_topic],
            group_id=settings.consumer_group,
            handler=on_event,
            publisher=publisher,
            client_id=settings.service_name,
        )
        await consumer.start()
        jobs = [
            recovery_job(
                loan_deps,
                interval_s=settings.recovery_interval_s,
                min_age_s=settings.recovery_min_age_s,
            ),
            overdue_job(loan_deps, interval_s=settings.overdue_scan_interval_s),
        ]
        for job in jobs:
            job.start()
        app.state.deps = AppDeps(
            settings,
            mongo,
            publisher,
            consumer,
            authority
            or IdentityTokenAuthority.remote(
                settings.jwks_url,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                step_up_max_age_s=settings.step_up_max_age_s,
            ),
            loan_deps,
            jobs,
        )
        try:
            yield
        finally:
            for job in jobs:
                await job.stop()
            await consumer.stop()
            await relay.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(
        title="zerocontact loan",
        description="310 loans: products, automatic decisions, instant disbursement, "
        "schedules, repayment and co-lending.",
        lifespan=lifespan,
    )
    for router in (
        products_router,
        applications_router,
        loans_router,
        reports_router,
        admin_router,
    ):
        app.include_router(router)

    checks = engine_checks(
        publisher=lambda: app.state.deps.publisher,
        mongo=lambda: app.state.deps.mongo,
        consumer=lambda: app.state.deps.consumer,
        within_s=settings.readiness_timeout_s,
    )

    install_operational_routes(app, checks=checks, timeout_s=settings.readiness_timeout_s)
    return app
