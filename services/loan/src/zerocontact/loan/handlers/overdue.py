"""Overdue detection: penalty accrual and LoanOverdue as loans enter a new bucket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from zerocontact.loan import events
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.domain.servicing import (
    accrue_penalties,
    days_past_due,
    delinquency,
    overdue_amount,
)
from zerocontact.loan.handlers.context import MAX_ATTEMPTS, LoanDeps
from zerocontact.loan.repository import LOANS, ConcurrentUpdate


@dataclass(frozen=True)
class OverdueTransition:
    """A loan that entered a new delinquency bucket."""

    loan_id: str
    bucket: Bucket
    days_past_due: int


async def scan_overdue(*, as_of: date, deps: LoanDeps) -> list[OverdueTransition]:
    """Accrue penalties and emit LoanOverdue for each loan entering a new bucket on ``as_of``.

    Idempotent for one date: a loan already in its bucket emits nothing, and penalty accrual
    runs to ``as_of`` only once.
    """
    transitions: list[OverdueTransition] = []
    for loan_id in await deps.repo.loans_past_due(as_of):
        for _ in range(MAX_ATTEMPTS):
            found = await deps.repo.loan_with_doc(loan_id)
            if found is None or found[1].get("pending_repayment") is not None:
                break  # a repayment in progress: the next scan sees its result
            loan = found[0]
            accrued = accrue_penalties(
                loan.installments, as_of=as_of, penalty_rate=loan.penalty_rate
            )
            number, dpd = days_past_due(accrued, as_of=as_of)
            bucket = delinquency(accrued, as_of=as_of)
            if accrued == loan.installments and bucket is loan.bucket:
                break
            emitted = []
            if bucket.rank > loan.bucket.rank:
                emitted.append(
                    events.overdue(
                        loan,
                        installment_number=number,
                        days_past_due=dpd,
                        bucket=bucket,
                        amount=overdue_amount(accrued, as_of=as_of),
                        now=datetime.now(UTC),
                        topic=deps.topic,
                    )
                )
                transitions.append(OverdueTransition(loan.id, bucket, dpd))
            loan.installments = accrued
            loan.bucket = bucket
            loan.version += 1
            try:
                pending = await deps.repo.save_loan(loan, events=emitted)
            except ConcurrentUpdate:
                continue
            if emitted:
                deps.relay.nudge(LOANS, loan.id, pending)
            break
    return transitions
