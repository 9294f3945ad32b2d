"""Bounded waits for a projection to catch up: a request that depends on another service's
events (loan's and payroll's view of identity's parties) waits a little for them, instead of
refusing what it will accept a moment later.

The consumer that applies an event calls :meth:`ProjectionWaits.changed` with the document's key;
a waiting request re-reads at once. Replicas do not share the notification (the consumer group
gives a party's partition to one replica), so a waiter also re-reads on a timer (``poll_s``,
starting at ``poll_s / 4``): at most a few ``_id`` reads per waiting request, never a busy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["ProjectionWaits", "Waited"]


@dataclass(frozen=True)
class Waited(Generic[T]):
    """The last value read, whether it satisfied the condition, and how long it took."""

    value: T
    ready: bool
    waited_s: float


class ProjectionWaits:
    """Per-key wake-ups from a projection's consumer to the requests waiting on it."""

    def __init__(self, *, within_s: float = 2.0, poll_s: float = 0.25) -> None:
        self.within_s = within_s
        self.poll_s = poll_s
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def changed(self, key: str) -> None:
        """The projection's document ``key`` changed: wake whoever waits on it."""
        for event in self._waiters.get(key, ()):
            event.set()

    @property
    def waiting(self) -> int:
        """Requests waiting now (for metrics and tests)."""
        return sum(len(s) for s in self._waiters.values())

    async def until(
        self,
        key: str,
        read: Callable[[], Awaitable[T]],
        ready: Callable[[T], bool],
        *,
        within_s: float | None = None,
    ) -> Waited[T]:
        """Read until ``ready(value)`` or ``within_s`` (default: the instance's) has passed.

        The first read costs nothing extra when the projection is already there. The waiter is
        registered before each read, so a change applied during the read is not missed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (self.within_s if within_s is None else within_s)
        event = asyncio.Event()
        waiters = self._waiters.setdefault(key, set())
        waiters.add(event)
        poll = self.poll_s / 4
        try:
            while True:
                event.clear()
                value = await read()
                if ready(value):
                    return Waited(value, True, loop.time() - started)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return Waited(value, False, loop.time() - started)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(poll, remaining)):
                        await event.wait()
                poll = min(poll * 2, self.poll_s)
        finally:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(key, None)
