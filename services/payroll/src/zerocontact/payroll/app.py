"""Wiring of the payroll service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.payroll.app:create_app --port 8003``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import FastAPI

from zerocontact.payroll import handlers, metrics
from zerocontact.payroll.api import router
from zerocontact.payroll.batch_runner import BatchRunner, RunnerConfig
from zerocontact.payroll.consumers import apply_identity_event
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.domain.batches import BatchLimits, RetryPolicy
from zerocontact.payroll.rail import PaymentRail, PaymentRailSimulator
from zerocontact.payroll.repository import PayrollRepository
from zerocontact.payroll.settings import PayrollSettings
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.projection import ProjectionWaits
from zerocontact.platform.runtime import Runtime, service_app

log = logging.getLogger(__name__)

# The ledger's recovery sweep in the scheduler leaves postings younger than this to their writer.
LEDGER_RECOVERY_MIN_AGE = timedelta(seconds=30)


def create_app(
    settings: PayrollSettings | None = None,
    *,
    verifier: TokenVerifier | None = None,
    rail: PaymentRail | None = None,
) -> FastAPI:
    """The payroll app. ``verifier`` and ``rail`` replace the configured ones (tests)."""
    settings = settings or PayrollSettings()  # type: ignore[call-arg]  # keys come from the env

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        db = runtime.database()
        repo = PayrollRepository(db)
        ledger = Ledger(db)
        await runtime.ensure(repo.create_indexes, ledger.ensure_indexes)
        for name, side, negative in accounts.HOUSE_ACCOUNTS:
            await ledger.open_account(
                name, currency="CNY", normal_balance=side, allow_negative=negative
            )
        publisher = await runtime.start_publisher()
        relay = await runtime.start(
            OutboxRelay(
                publisher=publisher,
                collections=repo.outbox_collections,
                sweep_interval_s=settings.outbox_sweep_interval_s,
            )
        )
        cipher = settings.field_cipher()
        the_rail = rail or PaymentRailSimulator(
            runtime.database(settings.rail_simulator_database),
            latency_s=settings.rail_simulator_latency_s,
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
            party_waits=ProjectionWaits(
                within_s=settings.party_wait_s, poll_s=settings.party_wait_poll_s
            ),
        )

        async def on_identity_event(consumed: ConsumedEvent) -> None:
            await apply_identity_event(consumed, repo=repo, waits=ctx.party_waits)

        await runtime.start_consumer(topics=[settings.identity_topic], handler=on_identity_event)
        # registered after the consumer, so batches stop before it (and the relay) at shutdown
        runtime.on_stop(runner.stop)
        app.state.ctx = ctx
        app.state.verifier = verifier or TokenVerifier.remote(
            settings.identity_jwks_url,
            issuer=settings.identity_issuer,
            audience=settings.identity_audience,
        )
        app.state.step_up_max_age_s = settings.step_up_max_age_s
        recovered = await handlers.recover(ctx)
        if any(recovered.values()):
            log.info("recovery resumed work in flight", extra={"recovered": recovered})

        async def schedule() -> None:
            """Scheduled payrolls (redeem ahead, start when due) and the ledger's recovery."""
            await handlers.scheduler_tick(ctx)
            await ledger.recover(min_age=LEDGER_RECOVERY_MIN_AGE)
            metrics.oldest_running(await repo.oldest_executing_start())

        runtime.start_job(
            "payroll-scheduler",
            settings.scheduler_interval_s,
            schedule,
            first_delay_s=settings.scheduler_interval_s,
        )

    return service_app(
        settings,
        title="zerocontact payroll",
        description="Employer wallets, top-up, payroll batches to any bank card, payslips, "
        "gig payouts with tax withholding, idle-balance sweep.",
        routers=[router],
        setup=setup,
    )
