"""The payroll service's business metrics (docs/observability.md), observed where the fact
is stored: an item's outcome when its first (and only) decision was inserted, a batch's
duration when the write that completed it succeeded. A runner that resumes a batch, or a
second runner racing it, stores nothing new and counts nothing.

``zc_payroll_batch_oldest_running_seconds`` is refreshed by the scheduler job from the
database (one indexed query for the oldest EXECUTING batch), so every replica reports the
same figure whichever one runs the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_DURATION",
    "ITEMS",
    "OLDEST_RUNNING",
    "batch_completed",
    "items_decided",
    "oldest_running",
]

ITEMS = Counter("zc_payroll_items_total", "Batch items decided, by outcome", ["status"])
BATCH_DURATION = Histogram(
    "zc_payroll_batch_duration_seconds",
    "From a batch's submission to its completion (every item settled)",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0),
)
OLDEST_RUNNING = Gauge(
    "zc_payroll_batch_oldest_running_seconds",
    "Time since the oldest batch still executing started (0: none executing)",
)

_STATUS = {"PAID": ITEMS.labels("paid"), "FAILED": ITEMS.labels("failed")}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def items_decided(outcomes: Iterable[dict[str, Any]]) -> None:
    """These item outcomes were inserted just now (first decision of each item)."""
    for outcome in outcomes:
        child = _STATUS.get(outcome["state"])
        if child is not None:
            child.inc()


def batch_completed(submitted_at: datetime, completed_at: datetime) -> None:
    """A batch completed just now."""
    seconds = (_aware(completed_at) - _aware(submitted_at)).total_seconds()
    BATCH_DURATION.observe(max(seconds, 0.0))


def oldest_running(started_at: datetime | None, *, now: datetime | None = None) -> None:
    """Set the gauge from the start of the oldest executing batch (None: none executing)."""
    if started_at is None:
        OLDEST_RUNNING.set(0)
        return
    moment = now or datetime.now(UTC)
    OLDEST_RUNNING.set(max((moment - _aware(started_at)).total_seconds(), 0.0))
