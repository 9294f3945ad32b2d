"""Background jobs of the loan service: the recovery sweep and the overdue scan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from zerocontact.loan.handlers import LoanDeps, recover, scan_overdue

log = logging.getLogger(__name__)


class PeriodicJob:
    """Runs ``work`` every ``interval_s`` until stopped; a failure is logged, not fatal."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        self._name = name
        self._interval = interval_s
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def start(self) -> None:
        """Start in the background."""
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Cancel the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._work()
                self.runs += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # engines down: the next run tries again
                log.warning("job failed", extra={"job": self._name, "error": repr(exc)})
            await asyncio.sleep(self._interval)


def recovery_job(deps: LoanDeps, *, interval_s: float, min_age_s: float) -> PeriodicJob:
    """Finish acceptances, disbursements and repayments a crash interrupted."""
    return PeriodicJob(
        "loan-recovery",
        interval_s,
        lambda: recover(deps=deps, min_age=timedelta(seconds=min_age_s)),
    )


def overdue_job(deps: LoanDeps, *, interval_s: float) -> PeriodicJob:
    """Overdue detection as of today."""
    return PeriodicJob(
        "loan-overdue-scan",
        interval_s,
        lambda: scan_overdue(as_of=datetime.now(UTC).date(), deps=deps),
    )
