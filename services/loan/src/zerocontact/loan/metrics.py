"""The loan service's business metrics (docs/observability.md), observed where the fact is
stored: after the write that changed the state succeeded, never for a redelivery or a
repeated call that found the work done (those writes do not happen), so nothing is counted
twice.

The clock of both histograms starts when the application was received (``submitted_at``):
``zc_loan_disbursement_seconds`` is the "1 second" of 310, application to money paid out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from zerocontact.loan.domain.loans import Application

__all__ = [
    "APPLICATIONS",
    "DECISION_SECONDS",
    "DISBURSEMENTS",
    "DISBURSEMENT_SECONDS",
    "RECOVERY_FAILURES",
    "decided",
    "disbursed",
    "disbursement_failed",
    "recovery_step_failed",
]

APPLICATIONS = Counter("zc_loan_applications_total", "Applications decided", ["outcome"])
DECISION_SECONDS = Histogram(
    "zc_loan_decision_seconds",
    "From the application's receipt to its stored decision",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
DISBURSEMENT_SECONDS = Histogram(
    "zc_loan_disbursement_seconds",
    "From the application's receipt to the recorded payout (the 310 target is 1 second)",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
DISBURSEMENTS = Counter("zc_loan_disbursements_total", "Disbursements finished", ["outcome"])
RECOVERY_FAILURES = Counter(
    "zc_loan_recovery_failures_total",
    "Recovery-sweep steps that failed for their own reason (not an engine outage)",
    ["step"],
)

_APPROVED = APPLICATIONS.labels("approved")
_DECLINED = APPLICATIONS.labels("declined")
_PAID = DISBURSEMENTS.labels("paid")
_FAILED = DISBURSEMENTS.labels("failed")


def _seconds(later: datetime, earlier: datetime) -> float:
    if earlier.tzinfo is None:  # stored datetimes read by a client without tz_aware
        earlier = earlier.replace(tzinfo=UTC)
    if later.tzinfo is None:
        later = later.replace(tzinfo=UTC)
    return max((later - earlier).total_seconds(), 0.0)


def decided(application: Application) -> None:
    """The decision of ``application`` was stored just now."""
    approved = application.decision is not None and application.decision.approved
    (_APPROVED if approved else _DECLINED).inc()
    if application.decided_at is not None:
        DECISION_SECONDS.observe(_seconds(application.decided_at, application.submitted_at))


def disbursed(disbursed_at: datetime | None, applied_at: datetime | None) -> None:
    """A payout was recorded just now (``applied_at``: when its application was received)."""
    _PAID.inc()
    if disbursed_at is not None and applied_at is not None:
        DISBURSEMENT_SECONDS.observe(_seconds(disbursed_at, applied_at))


def disbursement_failed() -> None:
    """A payout failed for good (recorded just now)."""
    _FAILED.inc()


def recovery_step_failed(step: str) -> None:
    """A recovery-sweep step (``disburse``, ``book``, ``repayment``) failed just now."""
    RECOVERY_FAILURES.labels(step).inc()
