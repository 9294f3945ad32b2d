"""Acceptance and disbursement: the accepted offer becomes a booked loan, paid out once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from zerocontact.loan import bookkeeping, events, metrics
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.domain.errors import Busy
from zerocontact.loan.domain.loans import Application, Loan, LoanState
from zerocontact.loan.handlers.context import MAX_ATTEMPTS, LoanDeps, authorize
from zerocontact.loan.rail import RailStatus, RailUnavailable
from zerocontact.loan.repository import APPLICATIONS, LOANS, ConcurrentUpdate
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import InsufficientFunds, LedgerContention, Side
from zerocontact.platform.telemetry import current_traceparent, deferred_span

log = logging.getLogger(__name__)


async def accept_offer(
    *,
    application_id: str,
    subject: str,
    deps: LoanDeps,
    now: datetime | None = None,
) -> Loan:
    """Accept the offer (the caller passed a step-up), book the loan and disburse it.

    Accepting again returns the same loan: the application holds one loan id, the loan
    document is unique per application, and every money movement has a deterministic id.
    The acceptance, booking and payout continue the application's trace (submission → risk
    assessment → decision → disbursement), linked to the accepting request's.
    """
    found = await deps.repo.application_with_trace(application_id)
    if found is None:
        raise NotFound(f"application {application_id} does not exist")
    app, submitted_in = found
    await authorize(deps, party_id=app.party_id, subject=subject)
    with deferred_span(
        "loan.disbursement", traceparent=submitted_in, attributes={"loan.application_id": app.id}
    ):
        return await _accept(app, deps=deps, now=now)


async def _accept(app: Application, *, deps: LoanDeps, now: datetime | None) -> Loan:
    application_id = app.id
    for attempt in range(MAX_ATTEMPTS):
        if attempt:  # reload after a concurrent write
            reloaded = await deps.repo.application(application_id)
            if reloaded is None:
                raise NotFound(f"application {application_id} does not exist")
            app = reloaded
        moment = now or datetime.now(UTC)
        if domain.accept_offer(app, loan_id=new_id(), now=moment):
            event = events.offer_accepted(app, topic=deps.topic)
            try:
                pending = await deps.repo.save_application(app, events=[event])
            except ConcurrentUpdate:
                continue
            deps.relay.nudge(APPLICATIONS, app.id, pending)
        loan = await book_loan(app, deps=deps)
        try:
            return await disburse_loan(loan.id, deps=deps, booked=loan, applied_at=app.submitted_at)
        except LedgerContention:
            # Booked and accepted: the recovery sweep finishes the payout, once.
            log.warning(
                "ledger contention; the recovery sweep disburses", extra={"loan_id": loan.id}
            )
            return loan
    raise Busy(f"application {application_id} kept changing")


async def book_loan(app: Application, *, deps: LoanDeps) -> Loan:
    """The accepted application's loan document (created once). It keeps the active trace
    context, so a payout the recovery sweep finishes continues it."""
    assert app.loan_id is not None and app.accepted_at is not None
    product = deps.product(app.product_id)
    loan = await deps.repo.add_loan(
        domain.book_loan(app, product, loan_id=app.loan_id, now=app.accepted_at),
        traceparent=current_traceparent(),
    )
    return loan


async def disburse_loan(
    loan_id: str, *, deps: LoanDeps, booked: Loan | None = None, applied_at: datetime | None = None
) -> Loan:
    """Pay a BOOKED loan out exactly once: reserve, rail, settle (or reverse), then record.

    ``booked``: the loan as its booking just stored or read it (saves reading it again);
    ``applied_at``: when its application was received, for ``zc_loan_disbursement_seconds``
    (read from the application when not given: the recovery sweep, the admin retry)."""
    loan = booked if booked is not None and booked.id == loan_id else await deps.repo.loan(loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} does not exist")
    if loan.state is not LoanState.BOOKED:
        return loan
    product = deps.product(loan.product_id)
    currency = loan.principal.currency
    await deps.open_account(bookkeeping.clearing(loan.id), Side.CREDIT, False, currency)
    await deps.open_account(bookkeeping.settlement(loan.party_id), Side.CREDIT, False, currency)
    reserve = bookkeeping.reserve_legs(loan.id, loan.funders, loan.principal)
    try:
        async with deps.serialized([leg.account for leg in reserve if leg.side is Side.DEBIT]):
            await deps.ledger.post(f"disburse:{loan.id}:reserve", reserve, memo="reserve funds")
    except InsufficientFunds as exc:
        return await _fail_disbursement(loan.id, f"funder quota exhausted ({exc.account})", deps)
    receipt = None
    for attempt in range(deps.rail_max_attempts):
        try:
            receipt = await deps.rail.transfer(
                reference=f"disburse:{loan.id}",
                sources=[
                    (bookkeeping.funding(f.funder_id, bookkeeping.shard_of(loan.id)), f.amount)
                    for f in loan.funders
                ],
                destination=bookkeeping.settlement(loan.party_id),
                amount=loan.principal,
            )
            break
        except RailUnavailable:
            await asyncio.sleep(0.05 * 2**attempt)
    if receipt is None:
        log.warning("rail unavailable; the recovery sweep retries", extra={"loan_id": loan.id})
        return loan
    if receipt.status is RailStatus.REFUSED:
        await deps.ledger.post(
            f"disburse:{loan.id}:reverse",
            bookkeeping.reverse_legs(loan.id, loan.funders, loan.principal),
            memo=f"rail refused: {receipt.reason}",
        )
        return await _fail_disbursement(loan.id, f"rail refused: {receipt.reason}", deps)
    await deps.ledger.post(
        f"disburse:{loan.id}:settle",
        bookkeeping.settle_legs(loan.id, loan.party_id, loan.principal),
        memo=f"rail {receipt.rail_reference}",
    )
    current: Loan | None = loan  # as read above; reloaded only if another writer moved it
    for _ in range(MAX_ATTEMPTS):
        if current is None:
            current = await deps.repo.loan(loan.id)
        assert current is not None
        if not domain.mark_disbursed(
            current, product, rail_reference=receipt.rail_reference, now=datetime.now(UTC)
        ):
            return current
        event = events.disbursed(current, current.funders, topic=deps.topic)
        try:
            pending = await deps.repo.save_loan(current, events=[event])
        except ConcurrentUpdate:
            current = None
            continue
        deps.relay.nudge(LOANS, current.id, pending)
        metrics.disbursed(current.disbursed_at, applied_at or await _applied_at(current, deps))
        return current
    raise Busy(f"loan {loan.id} kept changing")


async def _applied_at(loan: Loan, deps: LoanDeps) -> datetime | None:
    """When ``loan``'s application was received (None if it cannot be read now: the payout
    is recorded, only its duration goes unobserved)."""
    try:
        app = await deps.repo.application(loan.application_id)
    except Exception:  # the database went away after the payout was stored
        return None
    return None if app is None else app.submitted_at


async def _fail_disbursement(loan_id: str, reason: str, deps: LoanDeps) -> Loan:
    for _ in range(MAX_ATTEMPTS):
        loan = await deps.repo.loan(loan_id)
        assert loan is not None
        if not domain.mark_disbursement_failed(loan, reason=reason):
            return loan
        try:
            await deps.repo.save_loan(loan, events=[])
        except ConcurrentUpdate:
            continue
        metrics.disbursement_failed()
        log.error("disbursement failed", extra={"loan_id": loan_id, "reason": reason})
        return loan
    raise Busy(f"loan {loan_id} kept changing")
