"""Wiring of the marketing service; the only place clients are created.

Run with ``uvicorn --factory zerocontact.marketing.app:create_app --port 8004``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from zerocontact.marketing import handlers
from zerocontact.marketing.api import routers
from zerocontact.marketing.book import Book
from zerocontact.marketing.channels import Channel, ChannelSimulator
from zerocontact.marketing.consumers import Projector, fire_due_reminders
from zerocontact.marketing.demo import seed_demo_catalog
from zerocontact.marketing.domain.contact import Caps
from zerocontact.marketing.handlers.deps import MarketingDeps
from zerocontact.marketing.outreach import Outreach
from zerocontact.marketing.repository import Repository
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.platform.runtime import Runtime, service_app

log = logging.getLogger(__name__)

__all__ = ["MarketingDeps", "create_app", "run_due_schedules", "utc_now"]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


async def run_due_schedules(deps: MarketingDeps) -> list[str]:
    """One scheduler tick: start the runs of approved campaigns whose ``start_at`` has come
    (by ``deps.clock``); the ids started."""
    started = await handlers.claim_due_schedules(deps.repo, deps.clock())
    for campaign_id in started:
        log.info("scheduled campaign started", extra={"campaign_id": campaign_id})
        deps.background(handlers.execute(deps.repo, campaign_id, outreach=deps.outreach))
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
    s = settings  # short: the wiring below names many settings

    async def setup(runtime: Runtime, app: FastAPI) -> None:
        repo = Repository(runtime.database())
        await runtime.ensure(repo.create_indexes)
        if s.demo_catalog and (seeded := await seed_demo_catalog(repo)):
            log.info("demo catalog seeded", extra={"ids": seeded})
        # linger 1 ms: the trigger path publishes one event at a time and waits for none.
        publisher = await runtime.start_publisher(linger_ms=1)
        relay = await runtime.start(
            OutboxRelay(
                publisher=publisher,
                collections=repo.outbox_collections(),
                sweep_interval_s=s.outbox_sweep_interval_s,
            )
        )
        book = Book(repo, s.cache_seconds)
        outreach = Outreach(
            repo=repo,
            relay=relay,
            channel=channel
            or ChannelSimulator(
                latency_ms=s.simulator_latency_ms,
                failure_rate=s.simulator_failure_rate,
                seed=s.simulator_seed,
            ),
            settings=s,
            clock=clock,
            caps=caps or Caps(),
        )
        projector = Projector(repo, relay, book, outreach, s, clock)
        await runtime.start_consumer(
            topics=[
                s.identity_topic,
                s.loan_topic,
                s.payroll_topic,
                s.topic,
                s.engagement_topic,
                s.assistant_topic,
            ],
            handler=projector.handle,
        )
        deps = MarketingDeps(s, repo, relay, book, outreach, projector, clock)
        app.state.deps = deps
        # Registered before the loops, so it runs after they stop (shutdown is in reverse):
        # no tick can start a campaign run once the runs still going are cancelled.
        runtime.on_stop(deps.cancel_background)
        # Both loops wait one interval before their first run, as the service always did.
        runtime.start_job(
            "loan-reminders",
            s.reminder_poll_s,
            lambda: fire_due_reminders(projector),
            first_delay_s=s.reminder_poll_s,
        )
        runtime.start_job(
            "campaign-schedules",
            s.schedule_poll_s,
            lambda: run_due_schedules(deps),
            first_delay_s=s.schedule_poll_s,
        )

    return service_app(
        settings,
        title="zerocontact marketing",
        description="Profiles, segments, campaigns with compliance review, real-time triggers, "
        "live studios. See docs/marketing.md.",
        routers=routers,
        setup=setup,
    )
