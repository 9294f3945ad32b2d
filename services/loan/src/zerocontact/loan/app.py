"""Wiring of the loan service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.loan.app:create_app --port 8002``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI

from zerocontact.loan import jobs
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
from zerocontact.loan.rail import RAIL_PAYMENTS, PaymentRail, PaymentRailSimulator
from zerocontact.loan.relays import ShardedRelay
from zerocontact.loan.repository import LoanRepository
from zerocontact.loan.settings import LoanSettings
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.projection import ProjectionWaits
from zerocontact.platform.runtime import Runtime, service_app


@dataclass
class AppDeps:
    """What the routes reach through ``app.state.deps`` (the clients: ``app.state.runtime``)."""

    settings: LoanSettings
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

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        db = runtime.database()
        repo = LoanRepository(db)
        ledger = Ledger(db)
        await runtime.ensure(repo.create_indexes, ledger.ensure_indexes)
        relay = await runtime.start(
            ShardedRelay(
                publisher=await runtime.start_publisher(linger_ms=settings.publish_linger_ms),
                collections=[repo.applications, repo.loans, repo.revenue_reports],
                sweep_interval_s=settings.outbox_sweep_interval_s,
                shards=settings.outbox_relays,
            )
        )
        loan = LoanDeps(
            repo=repo,
            ledger=ledger,
            rail=rail
            or PaymentRailSimulator(
                db[RAIL_PAYMENTS],
                latency_s=settings.rail_latency_ms / 1000,
                failure_rate=settings.rail_failure_rate,
                closed_accounts=settings.rail_closed_accounts,
            ),
            relay=relay,
            catalog=dict(catalog or default_catalog()),
            topic=settings.events_topic,
            alert_window=timedelta(days=settings.alert_window_days),
            rail_max_attempts=settings.rail_max_attempts,
            party_waits=ProjectionWaits(
                within_s=settings.party_wait_s, poll_s=settings.party_wait_poll_s
            ),
        )
        await runtime.ensure(lambda: prepare_ledger(loan))

        async def on_event(consumed: ConsumedEvent) -> None:
            await handle(consumed, deps=loan, identity_topic=settings.identity_topic)

        await runtime.start_consumer(
            topics=[settings.identity_topic, settings.risk_topic], handler=on_event
        )
        started = [
            runtime.start_job(
                jobs.RECOVERY,
                settings.recovery_interval_s,
                jobs.recovery(loan, min_age_s=settings.recovery_min_age_s),
            ),
            runtime.start_job(
                jobs.OVERDUE_SCAN, settings.overdue_scan_interval_s, jobs.overdue_scan(loan)
            ),
        ]
        app.state.deps = AppDeps(
            settings,
            authority
            or IdentityTokenAuthority.remote(
                settings.jwks_url,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                step_up_max_age_s=settings.step_up_max_age_s,
            ),
            loan,
            started,
        )

    return service_app(
        settings,
        title="zerocontact loan",
        description="310 loans: products, automatic decisions, instant disbursement, "
        "schedules, repayment and co-lending.",
        routers=(
            products_router,
            applications_router,
            loans_router,
            reports_router,
            admin_router,
        ),
        setup=setup,
    )
