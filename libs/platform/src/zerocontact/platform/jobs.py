"""One periodic-job type for every background loop of the services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["PeriodicJob"]

log = logging.getLogger(__name__)


class PeriodicJob:
    """Runs ``work`` every ``interval_s`` until stopped; a failure is logged, not fatal.

    ``first_delay_s`` waits before the first run (default: run at once). :meth:`wake` runs the
    work early, e.g. when a write made new work (the next run follows ``interval_s`` after it).

    ``idle_interval_s`` lets a job that polls for work rest when there is none: each run whose
    work returns ``False`` (exactly: it found nothing to do) doubles the wait, up to
    ``idle_interval_s``; any other result, or a :meth:`wake`, brings it back to ``interval_s``.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[object]],
        *,
        first_delay_s: float = 0.0,
        idle_interval_s: float | None = None,
    ) -> None:
        self.name = name
        self._interval = interval_s
        self._idle_interval = max(interval_s, idle_interval_s or interval_s)
        self._next_wait = interval_s
        self._first_delay = first_delay_s
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()

    @property
    def running(self) -> bool:
        """True while the loop runs."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start in the background."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Run the work now instead of at the end of the current wait."""
        self._next_wait = self._interval
        self._woken.set()

    async def stop(self) -> None:
        """Cancel the loop (a run in progress is cancelled too)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)
        self._woken.clear()

    async def _run(self) -> None:
        if self._first_delay > 0:
            await self._wait(self._first_delay)
        while True:
            idle = False
            try:
                idle = await self._work() is False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # engines down: the next run tries again
                log.warning("job failed", extra={"job": self.name, "error": repr(exc)})
            if idle:
                wait = self._next_wait
                self._next_wait = min(self._next_wait * 2, self._idle_interval)
            else:
                wait = self._next_wait = self._interval
            await self._wait(wait)
