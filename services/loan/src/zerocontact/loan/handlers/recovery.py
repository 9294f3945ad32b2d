"""The recovery sweep: finish what a crash interrupted."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from zerocontact.loan.domain.loans import LoanState
from zerocontact.loan.handlers.context import LoanDeps
from zerocontact.loan.handlers.disbursement import book_loan, disburse_loan
from zerocontact.loan.handlers.repayment import RepaymentRefused, complete_repayment
from zerocontact.loan.repository import ConcurrentUpdate
from zerocontact.platform.telemetry import deferred_span


async def recover(*, deps: LoanDeps, min_age: timedelta) -> int:
    """Finish what a crash interrupted: book accepted loans, disburse BOOKED ones, complete
    half-applied repayments. Safe to run any time, from several processes at once.

    Each resumed piece of work continues the trace context stored with it (the application's,
    the loan's, the repayment intent's); an idle run makes no span."""
    cutoff = datetime.now(UTC) - min_age
    done = 0
    for app, traceparent in await deps.repo.accepted_without_loan(cutoff, window=timedelta(days=2)):
        with deferred_span(
            "loan.recovery.book",
            traceparent=traceparent,
            attributes={"loan.application_id": app.id},
        ):
            await book_loan(app, deps=deps)
        done += 1
    for loan_id, traceparent in await deps.repo.loans_in_state(LoanState.BOOKED, older_than=cutoff):
        with deferred_span(
            "loan.recovery.disburse", traceparent=traceparent, attributes={"loan.loan_id": loan_id}
        ):
            await disburse_loan(loan_id, deps=deps)
        done += 1
    for loan_id in await deps.repo.loans_with_pending_repayment():
        doc = await deps.repo.loan_doc(loan_id)
        loan = await deps.repo.loan(loan_id)
        if doc is None or loan is None or doc.get("pending_repayment") is None:
            continue
        pending = doc["pending_repayment"]
        with (
            deferred_span(
                "loan.recovery.repayment",
                traceparent=pending.get("traceparent"),
                attributes={"loan.loan_id": loan_id},
            ),
            contextlib.suppress(RepaymentRefused, ConcurrentUpdate),
        ):
            await complete_repayment(loan, pending, deps=deps)
        done += 1
    return done
