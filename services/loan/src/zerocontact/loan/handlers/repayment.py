"""Servicing: repayments applied exactly once, and the payoff quote."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from zerocontact.loan import bookkeeping, events
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.domain.colending import allocate_to_funders
from zerocontact.loan.domain.errors import Busy, IdempotencyConflict
from zerocontact.loan.domain.loans import Loan, LoanState
from zerocontact.loan.domain.servicing import (
    Allocation,
    LoanNotRepayable,
    accrue_penalties,
    allocate_repayment,
    delinquency,
    payoff_plan,
    subsidy_for,
)
from zerocontact.loan.handlers.context import MAX_ATTEMPTS, LoanDeps, authorize
from zerocontact.loan.repository import LOANS, ConcurrentUpdate, installment, installment_doc
from zerocontact.platform.errors import Invalid, NotFound
from zerocontact.platform.ledger import IdempotencyConflict as LedgerIdempotencyConflict
from zerocontact.platform.ledger import InsufficientFunds, Leg, Side
from zerocontact.platform.money import Money
from zerocontact.platform.telemetry import current_traceparent


class RepaymentRefused(Invalid):
    """The settlement account does not hold the amount (the ledger refused the posting)."""

    code = "insufficient_funds"


@dataclass(frozen=True)
class RepaymentResult:
    """A repayment as applied (the same answer for a retry with the same id)."""

    repayment_id: str
    loan: Loan
    principal: Money
    interest: Money
    penalty: Money
    subsidy: Money
    settled: bool


def _intent_doc(
    repayment_id: str,
    request: str,
    amount: Money,
    allocation: Allocation,
    subsidy: Money,
    legs: list[Leg],
    as_of: date,
) -> dict[str, Any]:
    return {
        "id": repayment_id,
        "request": request,
        "amount": amount.minor_units,
        "as_of": as_of.isoformat(),
        "principal": allocation.principal.minor_units,
        "interest": allocation.interest.minor_units,
        "penalty": allocation.penalty.minor_units,
        "subsidy": subsidy.minor_units,
        "first": allocation.first_installment,
        "days_late": allocation.days_late,
        "settled": allocation.settled,
        "early": allocation.early_payoff,
        "installments": [installment_doc(i) for i in allocation.installments],
        "legs": [
            {"account": leg.account, "side": str(leg.side), "minor": leg.amount.minor_units}
            for leg in legs
        ],
    }


async def repay(
    *,
    loan_id: str,
    repayment_id: str,
    amount: Money,
    subject: str | None,
    deps: LoanDeps,
    as_of: date | None = None,
) -> RepaymentResult:
    """Apply a repayment exactly once per ``repayment_id`` (see docs/loan.md: intent, ledger
    posting, then the allocation with its events; a crash anywhere is resumed by a retry or
    by the recovery sweep)."""
    request = domain.fingerprint(amount)
    for _ in range(MAX_ATTEMPTS):
        found = await deps.repo.loan_with_doc(loan_id)
        if found is None:
            raise NotFound(f"loan {loan_id} does not exist")
        loan, doc = found
        if subject is not None:
            await authorize(deps, party_id=loan.party_id, subject=subject)
        if repayment_id in loan.repayments:
            if loan.repayments[repayment_id] != request:
                raise IdempotencyConflict(f"repayment {repayment_id} was for another amount")
            return _result_of(repayment_id, loan, doc)
        pending = doc.get("pending_repayment")
        if pending is not None:
            if pending["id"] != repayment_id:
                raise Busy("another repayment of this loan is being applied", retry=True)
            if pending["request"] != request:
                raise IdempotencyConflict(f"repayment {repayment_id} was for another amount")
            try:
                return await complete_repayment(loan, pending, deps=deps)
            except ConcurrentUpdate:
                continue  # the sweep or another retry finished it first: read the result back
        if loan.state is not LoanState.DISBURSED or loan.disbursed_on is None:
            raise LoanNotRepayable(f"loan {loan_id} is {loan.state}", state=str(loan.state))
        if amount.currency != loan.principal.currency:
            raise RepaymentRefused(
                f"loan {loan_id} is repaid in {loan.principal.currency}", field="body.currency"
            )
        day = as_of or datetime.now(UTC).date()
        allocation = allocate_repayment(
            loan.installments,
            amount,
            as_of=day,
            disbursed_on=loan.disbursed_on,
            annual_rate=loan.annual_rate,
            penalty_rate=loan.penalty_rate,
        )
        product = deps.product(loan.product_id)
        subsidy = subsidy_for(
            allocation.interest, full_rate=loan.full_rate, borrower_rate=loan.annual_rate
        )
        funders = [f for f in product.funders if f.funder_id in {p.funder_id for p in loan.funders}]
        legs = bookkeeping.repayment_legs(
            loan_id=loan.id,
            party_id=loan.party_id,
            amount=amount,
            allocations=allocate_to_funders(
                funders,
                principal=allocation.principal,
                interest=allocation.interest,
                penalty=allocation.penalty,
                subsidy=subsidy,
            ),
            subsidy=subsidy,
            subsidy_account=product.discount.subsidy_account if product.discount else None,
        )
        intent = _intent_doc(repayment_id, request, amount, allocation, subsidy, legs, day)
        intent["traceparent"] = current_traceparent()  # a recovered repayment continues it
        intent["stored_at"] = datetime.now(UTC)  # the sweep leaves it to this request until old
        loan.version += 1
        try:
            await deps.repo.save_loan(loan, events=[], extra={"pending_repayment": intent})
            return await complete_repayment(loan, intent, deps=deps)
        except ConcurrentUpdate:
            continue  # changed under us, or finished by the sweep: read it again
    raise Busy(f"loan {loan_id} kept changing")


async def complete_repayment(
    loan: Loan, intent: dict[str, Any], *, deps: LoanDeps
) -> RepaymentResult:
    """Post a stored repayment intent and record its allocation (a retry or the recovery
    sweep resumes here; the ledger posting's id makes the money move once)."""
    currency = loan.principal.currency
    legs = [
        Leg(leg["account"], Side(leg["side"]), Money(currency, int(leg["minor"])))
        for leg in intent["legs"]
    ]
    try:
        await deps.ledger.post(f"repay:{loan.id}:{intent['id']}", legs, memo="repayment")
    except (InsufficientFunds, LedgerIdempotencyConflict) as exc:
        loan.version += 1
        with contextlib.suppress(ConcurrentUpdate):
            await deps.repo.save_loan(loan, events=[], extra={"pending_repayment": None})
        if isinstance(exc, LedgerIdempotencyConflict):
            # The ledger refused this id before (for funds) with other legs: a refused
            # repayment's id stays refused; the client retries with a new key.
            raise IdempotencyConflict(
                f"repayment {intent['id']} was refused before; send it with a new key"
            ) from None
        raise RepaymentRefused(
            "the settlement account does not hold the repayment amount"
        ) from None
    allocation = Allocation(
        principal=Money(currency, int(intent["principal"])),
        interest=Money(currency, int(intent["interest"])),
        penalty=Money(currency, int(intent["penalty"])),
        first_installment=int(intent["first"]),
        days_late=int(intent["days_late"]),
        installments=tuple(installment(i, currency) for i in intent["installments"]),
        settled=bool(intent["settled"]),
        early_payoff=bool(intent["early"]),
    )
    now = datetime.now(UTC)
    amount = Money(currency, int(intent["amount"]))
    loan.installments = allocation.installments
    loan.repayments[intent["id"]] = intent["request"]
    day = date.fromisoformat(intent["as_of"])
    loan.bucket = delinquency(loan.installments, as_of=day)
    emitted = [
        events.repayment_received(
            loan,
            allocation,
            repayment_id=intent["id"],
            amount=amount,
            now=now,
            topic=deps.topic,
        )
    ]
    if allocation.settled:
        loan.state = LoanState.SETTLED
        loan.settled_at = now
        emitted.append(
            events.settled(
                loan,
                early_payoff=allocation.early_payoff,
                now=now,
                topic=deps.topic,
            )
        )
    loan.version += 1
    summary = {k: intent[k] for k in ("principal", "interest", "penalty", "subsidy", "settled")}
    pending = await deps.repo.save_loan(
        loan,
        events=emitted,
        extra={"pending_repayment": None, f"repayment_results.{intent['id']}": summary},
    )
    deps.relay.nudge(LOANS, loan.id, pending)
    return _result_of(intent["id"], loan, {"repayment_results": {intent["id"]: summary}})


def _result_of(repayment_id: str, loan: Loan, doc: Mapping[str, Any]) -> RepaymentResult:
    currency = loan.principal.currency
    summary = (doc.get("repayment_results") or {}).get(repayment_id) or {}

    def money(name: str) -> Money:
        return Money(currency, int(summary.get(name, 0)))

    return RepaymentResult(
        repayment_id,
        loan,
        money("principal"),
        money("interest"),
        money("penalty"),
        money("subsidy"),
        bool(summary.get("settled", False)),
    )


def payoff_quote(loan: Loan, *, as_of: date) -> Money:
    """What settles the loan on ``as_of``."""
    if loan.state is not LoanState.DISBURSED or loan.disbursed_on is None:
        raise LoanNotRepayable(f"loan {loan.id} is {loan.state}", state=str(loan.state))
    current = accrue_penalties(loan.installments, as_of=as_of, penalty_rate=loan.penalty_rate)
    total, _ = payoff_plan(
        current, as_of=as_of, disbursed_on=loan.disbursed_on, annual_rate=loan.annual_rate
    )
    return total
