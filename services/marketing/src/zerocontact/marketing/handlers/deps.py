"""What the routes, consumers and jobs of one marketing instance share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from zerocontact.marketing.book import Book
from zerocontact.marketing.consumers import Projector
from zerocontact.marketing.outreach import Outreach
from zerocontact.marketing.repository import Repository
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.platform.outbox import OutboxRelay

log = logging.getLogger(__name__)


@dataclass
class MarketingDeps:
    """What the routes and consumers use (``app.state.deps``)."""

    settings: MarketingSettings
    repo: Repository
    relay: OutboxRelay
    book: Book
    outreach: Outreach
    projector: Projector
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

    async def cancel_background(self) -> None:
        """Cancel the runs still going (at shutdown)."""
        for task in list(self.tasks):
            task.cancel()
