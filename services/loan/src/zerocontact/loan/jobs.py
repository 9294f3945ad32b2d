"""The loan service's periodic work: the recovery sweep and the overdue scan.

Each function returns the work of one run; the app runs it as a platform
:class:`~zerocontact.platform.jobs.PeriodicJob` (``Runtime.start_job``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from zerocontact.loan.handlers import LoanDeps, OverdueTransition, recover, scan_overdue

RECOVERY = "loan-recovery"
OVERDUE_SCAN = "loan-overdue-scan"


def recovery(deps: LoanDeps, *, min_age_s: float) -> Callable[[], Awaitable[int]]:
    """Finish acceptances, disbursements and repayments a crash interrupted."""
    min_age = timedelta(seconds=min_age_s)

    async def run() -> int:
        return await recover(deps=deps, min_age=min_age)

    return run


def overdue_scan(deps: LoanDeps) -> Callable[[], Awaitable[list[OverdueTransition]]]:
    """Overdue detection as of the day each run happens."""

    async def run() -> list[OverdueTransition]:
        return await scan_overdue(as_of=datetime.now(UTC).date(), deps=deps)

    return run
