"""The recovery sweep: finish what a crash interrupted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from zerocontact.loan import metrics
from zerocontact.loan.domain.loans import LoanState
from zerocontact.loan.handlers.context import LoanDeps
from zerocontact.loan.handlers.disbursement import book_loan, disburse_loan
from zerocontact.loan.handlers.repayment import RepaymentRefused, complete_repayment
from zerocontact.loan.repository import ConcurrentUpdate
from zerocontact.platform.kafka.consumer import TRANSIENT_ERRORS
from zerocontact.platform.telemetry import deferred_span

log = logging.getLogger(__name__)


async def recover(*, deps: LoanDeps, min_age: timedelta) -> int:
    """Finish what a crash interrupted: disburse BOOKED loans, book accepted loans, complete
    half-applied repayments. Safe to run any time, from several processes at once.

    BOOKED loans go first: one may already be paid at the rail and wait only for its
    settlement and ``LoanDisbursed``. A piece of work that fails for its own reason is logged
    and the run goes on with the next, so one bad loan holds no other back; an engine outage
    (a transient error) ends the run, which the next one repeats.

    Each resumed piece of work continues the trace context stored with it (the application's,
    the loan's, the repayment intent's); an idle run makes no span."""
    cutoff = datetime.now(UTC) - min_age
    done = 0
    for loan_id, traceparent in await deps.repo.loans_in_state(LoanState.BOOKED, older_than=cutoff):
        with (
            _own_failure("disburse", loan_id),
            deferred_span(
                "loan.recovery.disburse",
                traceparent=traceparent,
                attributes={"loan.loan_id": loan_id},
            ),
        ):
            await disburse_loan(loan_id, deps=deps)
            done += 1
    for app, traceparent in await deps.repo.accepted_without_loan(cutoff):
        with (
            _own_failure("book", app.id),
            deferred_span(
                "loan.recovery.book",
                traceparent=traceparent,
                attributes={"loan.application_id": app.id},
            ),
        ):
            await book_loan(app, deps=deps)
            done += 1
    for loan_id in await deps.repo.loans_with_pending_repayment():
        with _own_failure("repayment", loan_id):
            done += await _finish_repayment(loan_id, deps=deps, cutoff=cutoff)
    return done


async def _finish_repayment(loan_id: str, *, deps: LoanDeps, cutoff: datetime) -> int:
    """Finish a repayment intent stored before ``cutoff``. A younger one is left to the
    request that stored it (racing it only makes one of the two write the same result); an
    intent stored before intents had a time is finished."""
    found = await deps.repo.loan_with_doc(loan_id)
    if found is None or found[1].get("pending_repayment") is None:
        return 0
    loan, doc = found
    pending = doc["pending_repayment"]
    if pending.get("stored_at") is not None and pending["stored_at"] > cutoff:  # tz-aware client
        return 0
    with (
        deferred_span(
            "loan.recovery.repayment",
            traceparent=pending.get("traceparent"),
            attributes={"loan.loan_id": loan_id},
        ),
        contextlib.suppress(RepaymentRefused, ConcurrentUpdate),
    ):
        await complete_repayment(loan, pending, deps=deps)
    return 1


@contextlib.contextmanager
def _own_failure(step: str, key: str) -> Iterator[None]:
    """Log a failure of this piece of work and go on; let an engine outage end the run."""
    try:
        yield
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        metrics.recovery_step_failed(step)
        log.error(
            "recovery step failed; the next run tries it again",
            extra={"step": step, "key": key, "error": repr(exc)},
        )
