"""Wiring of the marketing service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.marketing.app:create_app --port 8004``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from pymongo import AsyncMongoClient

from zerocontact.marketing import handlers
from zerocontact.marketing.api import router
from zerocontact.marketing.book import Book
from zerocontact.marketing.channels import Channel, ChannelSimulator
from zerocontact.marketing.consumers import Projector, fire_due_reminders
from zerocontact.marketing.domain.contact import Caps
from zerocontact.marketing.outreach import Outreach
from zerocontact.marketing.repository import Repository
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.platform.http import engine_checks, install_operational_routes
from zerocontact.platform.kafka.consumer import ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.logging import configure_logging
from zerocontact.platform.mongo import create_mongo_client
from zerocontact.platform.outbox import OutboxRelay

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclass
class MarketingDeps:
    """What the routes and consumers use."""

    settings: MarketingSettings
    mongo: AsyncMongoClient[dict[str, Any]]
    repo: Repository
    publisher: EventPublisher
    relay: OutboxRelay
    book: Book
    outreach: Outreach
    projector: Projector
    consumer: ConsumerRunner
    clock: Callable[[], datetime]
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` after the response (a campaign run); cancelled at shutdown."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", extra={"error": repr(task.exception())})


async def run_due_schedules(deps: MarketingDeps) -> list[str]:
    """One scheduler tick: start the runs of approved campaigns whose ``start_at`` has come
    (by ``deps.clock``); the ids started."""
    started = await handlers.claim_due_schedules(deps.repo, deps.clock())
    for campaign_id in started:
        log.info("scheduled campaign started", extra={"campaign_id": campaign_id})
        deps.background(handlers.execute(deps.repo, deps.outreach, campaign_id))
    return started


def create_app(
    settings: MarketingSettings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    channel: Channel | None = None,
    caps: Caps | None = None,
) -> FastAPI:
    """The marketing service. ``clock``, ``channel`` and ``caps`` are injectable for tests."""
    settings = settings or MarketingSettings()  # type: ignore[call-arg]  # secrets come from the env
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        mongo = create_mongo_client(settings.mongodb_uri, app_name=settings.service_name)
        repo = Repository(mongo[settings.mongodb_database])
        await repo.create_indexes()
        # linger 1 ms: the trigger path publishes one event at a time and waits for none.
        publisher = EventPublisher(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=settings.service_name,
            linger_ms=1,
        )
        await publisher.start()
        relay = OutboxRelay(
            publisher=publisher,
            collections=repo.outbox_collections(),
            sweep_interval_s=settings.outbox_sweep_interval_s,
        )
        await relay.start()
        book = Book(repo, settings.cache_seconds)
        outreach = Outreach(
            repo=repo,
            relay=relay,
            channel=channel
            or ChannelSimulator(
                latency_ms=settings.simulator_latency_ms,
                failure_rate=settings.simulator_failure_rate,
                seed=settings.simulator_seed,
            ),
            settings=settings,
            clock=clock,
            caps=caps or Caps(),
        )
        projector = Projector(repo, relay, book, outreach, settings, clock)
        consumer = ConsumerRunner(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topics=[
                settings.identity_topic,
                settings.loan_topic,
                settings.payroll_topic,
                settings.topic,
                settings.engagement_topic,
            ],
            group_id=settings.consumer_group,
            handler=projector.handle,
            publisher=publisher,
        )
        await consumer.start()

        async def reminders() -> None:
            while True:
                await asyncio.sleep(settings.reminder_poll_s)
                try:
                    await fire_due_reminders(projector)
                except Exception as exc:  # engines down: the next poll tries again
                    log.warning("loan reminders failed", extra={"error": repr(exc)})

        reminder_task = asyncio.create_task(reminders(), name="loan-reminders")
        deps = MarketingDeps(
            settings, mongo, repo, publisher, relay, book, outreach, projector, consumer, clock
        )
        app.state.deps = deps

        async def schedules() -> None:
            while True:
                await asyncio.sleep(settings.schedule_poll_s)
                try:
                    await run_due_schedules(deps)
                except Exception as exc:  # engines down: the next tick tries again
                    log.warning("scheduled campaigns failed", extra={"error": repr(exc)})

        schedule_task = asyncio.create_task(schedules(), name="campaign-schedules")
        try:
            yield
        finally:
            reminder_task.cancel()
            schedule_task.cancel()
            for task in list(app.state.deps.tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reminder_task
            with contextlib.suppress(asyncio.CancelledError):
                await schedule_task
            await consumer.stop()
            await relay.stop()
            await publisher.stop()
            await mongo.close()

    app = FastAPI(
        title="zerocontact marketing",
        description="Profiles, segments, campaigns with compliance review, real-time triggers, "
        "live studios. See docs/marketing.md.",
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
