"""Commands and events of the loan service → domain → repository, ledger, rail and outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from zerocontact.loan import bookkeeping, events
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.domain.colending import allocate_to_funders
from zerocontact.loan.domain.decisions import Assessment, PartyFacts, decide
from zerocontact.loan.domain.errors import (
    Busy,
    IdempotencyConflict,
    NotYourApplication,
    UnknownParty,
    UnknownProduct,
)
from zerocontact.loan.domain.loans import Application, Loan, LoanState
from zerocontact.loan.domain.products import KycLevel, Product
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.domain.servicing import (
    Allocation,
    LoanNotRepayable,
    accrue_penalties,
    allocate_repayment,
    days_past_due,
    delinquency,
    overdue_amount,
    payoff_plan,
    subsidy_for,
)
from zerocontact.loan.rail import PaymentRail, RailStatus, RailUnavailable
from zerocontact.loan.relays import ShardedRelay
from zerocontact.loan.repository import (
    APPLICATIONS,
    LOANS,
    REVENUE_REPORTS,
    ConcurrentUpdate,
    LoanRepository,
    installment,
    installment_doc,
)
from zerocontact.platform.errors import DomainError, Invalid, NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.consumer import TransientError
from zerocontact.platform.ledger import IdempotencyConflict as LedgerIdempotencyConflict
from zerocontact.platform.ledger import InsufficientFunds, Ledger, LedgerContention, Leg, Side
from zerocontact.platform.money import Money

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


class RepaymentRefused(Invalid):
    """The settlement account does not hold the amount (the ledger refused the posting)."""

    code = "insufficient_funds"


@dataclass
class LoanDeps:
    """Everything a handler may touch; built once in the app's lifespan (or by a test)."""

    repo: LoanRepository
    ledger: Ledger
    rail: PaymentRail
    relay: ShardedRelay
    catalog: Mapping[str, Product]
    topic: str
    alert_window: timedelta = timedelta(days=30)
    rail_max_attempts: int = 3
    _accounts: set[str] = field(default_factory=set)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def product(self, product_id: str) -> Product:
        """The product, or a 422 ``unknown_product``."""
        try:
            return self.catalog[product_id]
        except KeyError:
            raise UnknownProduct(f"no product {product_id!r}", field="body.product_id") from None

    async def open_account(
        self, account: str, side: Side, allow_negative: bool, currency: str
    ) -> None:
        """Open a ledger account once per process (opening is idempotent in the ledger)."""
        if account in self._accounts:
            return
        await self.ledger.open_account(
            account, currency=currency, normal_balance=side, allow_negative=allow_negative
        )
        self._accounts.add(account)

    @contextlib.asynccontextmanager
    async def serialized(self, accounts: list[str]) -> AsyncIterator[None]:
        """Serialize this process's postings on hot accounts (the funders' funding accounts):
        the ledger is safe without it, but queued writers beat optimistic retries."""
        locks = [self._locks.setdefault(a, asyncio.Lock()) for a in sorted(set(accounts))]
        async with contextlib.AsyncExitStack() as stack:
            for lock in locks:
                await stack.enter_async_context(lock)
            yield


async def prepare_ledger(deps: LoanDeps) -> None:
    """Open every product's accounts and give each funder its quota (idempotent)."""
    for product in deps.catalog.values():
        for account, side, negative in bookkeeping.product_accounts(product):
            await deps.open_account(account, side, negative, product.currency)
        for posting_id, legs in bookkeeping.quota_posting(product):
            await deps.ledger.post(posting_id, legs, memo="funder quota")


# --- applications ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitApplication:
    """A party applies: the idempotency key scopes to the party."""

    idem_key: str
    party_id: str
    product_id: str
    amount: Money
    term_months: int
    purpose: str
    device_id: str
    source_address: str


async def authorize(deps: LoanDeps, *, party_id: str, subject: str) -> None:
    """The caller acts for ``party_id``: it is the party, or its legal representative."""
    if subject == party_id:
        return
    if await deps.repo.representative_of(party_id) == subject:
        return
    raise NotYourApplication("the authenticated person may not act for this party")


async def submit_application(
    cmd: SubmitApplication, *, deps: LoanDeps, traceparent: str | None, now: datetime | None = None
) -> Application:
    """Validate, store AWAITING_RISK with LoanApplicationSubmitted; the same key returns it."""
    moment = now or datetime.now(UTC)
    request = domain.fingerprint(
        cmd.party_id, cmd.product_id, cmd.amount, cmd.term_months, cmd.purpose, cmd.device_id
    )
    key = f"{cmd.party_id}:{cmd.idem_key}"
    # Insert first, read only on a duplicate key: a new application costs no extra look-up.
    product = deps.product(cmd.product_id)
    party = await deps.repo.party_facts(cmd.party_id, now=moment, alert_window=deps.alert_window)
    existing = None
    try:
        domain.validate_application(product, party, amount=cmd.amount, term_months=cmd.term_months)
    except DomainError:
        existing = await deps.repo.application_by_key(key)  # a retry may find its first answer
        if existing is None:
            raise
    if existing is None:
        app = Application(
            id=new_id(),
            party_id=cmd.party_id,
            product_id=cmd.product_id,
            amount=cmd.amount,
            term_months=cmd.term_months,
            purpose=cmd.purpose,
            device_id=cmd.device_id,
            source_address=cmd.source_address,
            submitted_at=moment,
        )
        event = events.application_submitted(app, topic=deps.topic, traceparent=traceparent)
        await deps.repo.note_application(cmd.party_id, app.id)
        if await deps.repo.add_application(app, idem_key=key, request=request, events=[event]):
            deps.relay.nudge(APPLICATIONS, app.id)
            return app
        existing = await deps.repo.application_by_key(key)
        assert existing is not None
    app, first = existing
    if first != request:
        raise IdempotencyConflict(f"key {cmd.idem_key} was used for a different application")
    return app


async def decide_application(
    *,
    application_id: str,
    party_id: str,
    assessment: Assessment,
    deps: LoanDeps,
    now: datetime | None = None,
) -> bool:
    """Decide an AWAITING_RISK application with its assessment; exactly once (version guard)."""
    for _ in range(MAX_ATTEMPTS):
        app = await deps.repo.application(application_id)
        if app is None or app.party_id != party_id:
            log.warning(
                "risk assessment for an application this service does not have",
                extra={"application_id": application_id},
            )
            return False
        if app.state is not domain.ApplicationState.AWAITING_RISK:
            return False  # decided before: a redelivered or second assessment changes nothing
        moment = now or datetime.now(UTC)
        product = deps.product(app.product_id)
        party = await deps.repo.party_facts(party_id, now=moment, alert_window=deps.alert_window)
        if party is None:  # identity forgot the party? decide on what is known: unverified
            party = PartyFacts(party_id, KycLevel.NONE, None)
        exposure = await deps.repo.exposure(party_id, product.currency, now=moment, deciding=app.id)
        decision = decide(
            product,
            amount=app.amount,
            party=party,
            exposure=exposure,
            assessment=assessment,
            now=moment,
        )
        domain.record_decision(
            app,
            decision,
            assessment_id=assessment.assessment_id,
            assessment_event_id=assessment.event_id,
            now=moment,
        )
        event = events.decided(app, decision, now=moment, topic=deps.topic, traceparent=None)
        try:
            await deps.repo.save_application(app, events=[event])
        except ConcurrentUpdate:
            continue
        deps.relay.nudge(APPLICATIONS, app.id)
        return True
    # The consumer retries a transient failure with the same record (never dead-letters it).
    raise TransientError(f"application {application_id} kept changing")


# --- acceptance and disbursement ---------------------------------------------------------------


async def accept_offer(
    *,
    application_id: str,
    subject: str,
    deps: LoanDeps,
    traceparent: str | None,
    now: datetime | None = None,
) -> Loan:
    """Accept the offer (the caller passed a step-up), book the loan and disburse it.

    Accepting again returns the same loan: the application holds one loan id, the loan
    document is unique per application, and every money movement has a deterministic id.
    """
    for _ in range(MAX_ATTEMPTS):
        app = await deps.repo.application(application_id)
        if app is None:
            raise NotFound(f"application {application_id} does not exist")
        await authorize(deps, party_id=app.party_id, subject=subject)
        moment = now or datetime.now(UTC)
        if domain.accept_offer(app, loan_id=new_id(), now=moment):
            event = events.offer_accepted(app, topic=deps.topic, traceparent=traceparent)
            try:
                await deps.repo.save_application(app, events=[event])
            except ConcurrentUpdate:
                continue
            deps.relay.nudge(APPLICATIONS, app.id)
        loan = await book_loan(app, deps=deps)
        try:
            return await disburse_loan(loan.id, deps=deps, traceparent=traceparent, booked=loan)
        except LedgerContention:
            # Booked and accepted: the recovery sweep finishes the payout, once.
            log.warning(
                "ledger contention; the recovery sweep disburses", extra={"loan_id": loan.id}
            )
            return loan
    raise Busy(f"application {application_id} kept changing")


async def book_loan(app: Application, *, deps: LoanDeps) -> Loan:
    """The accepted application's loan document (created once)."""
    assert app.loan_id is not None and app.accepted_at is not None
    product = deps.product(app.product_id)
    loan = await deps.repo.add_loan(
        domain.book_loan(app, product, loan_id=app.loan_id, now=app.accepted_at)
    )
    return loan


async def disburse_loan(
    loan_id: str, *, deps: LoanDeps, traceparent: str | None = None, booked: Loan | None = None
) -> Loan:
    """Pay a BOOKED loan out exactly once: reserve, rail, settle (or reverse), then record.

    ``booked``: the loan as its booking just stored or read it (saves reading it again)."""
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
        event = events.disbursed(
            current, current.funders, topic=deps.topic, traceparent=traceparent
        )
        try:
            await deps.repo.save_loan(current, events=[event])
        except ConcurrentUpdate:
            current = None
            continue
        deps.relay.nudge(LOANS, current.id)
        return current
    raise Busy(f"loan {loan.id} kept changing")


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
        log.error("disbursement failed", extra={"loan_id": loan_id, "reason": reason})
        return loan
    raise Busy(f"loan {loan_id} kept changing")


# --- repayment -------------------------------------------------------------------------------


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
    traceparent: str | None,
    as_of: date | None = None,
) -> RepaymentResult:
    """Apply a repayment exactly once per ``repayment_id`` (see docs/loan.md: intent, ledger
    posting, then the allocation with its events; a crash anywhere is resumed by a retry or
    by the recovery sweep)."""
    request = domain.fingerprint(amount)
    for _ in range(MAX_ATTEMPTS):
        doc = await deps.repo.loan_doc(loan_id)
        loan = await deps.repo.loan(loan_id)
        if doc is None or loan is None:
            raise NotFound(f"loan {loan_id} does not exist")
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
            return await _complete_repayment(loan, pending, deps=deps, traceparent=traceparent)
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
        loan.version += 1
        try:
            await deps.repo.save_loan(loan, events=[], extra={"pending_repayment": intent})
        except ConcurrentUpdate:
            continue
        return await _complete_repayment(loan, intent, deps=deps, traceparent=traceparent)
    raise Busy(f"loan {loan_id} kept changing")


async def _complete_repayment(
    loan: Loan, intent: dict[str, Any], *, deps: LoanDeps, traceparent: str | None
) -> RepaymentResult:
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
            traceparent=traceparent,
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
                traceparent=traceparent,
            )
        )
    loan.version += 1
    summary = {k: intent[k] for k in ("principal", "interest", "penalty", "subsidy", "settled")}
    await deps.repo.save_loan(
        loan,
        events=emitted,
        extra={"pending_repayment": None, f"repayment_results.{intent['id']}": summary},
    )
    deps.relay.nudge(LOANS, loan.id)
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


# --- overdue detection -----------------------------------------------------------------------


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
            doc = await deps.repo.loan_doc(loan_id)
            loan = await deps.repo.loan(loan_id)
            if loan is None or doc is None or doc.get("pending_repayment") is not None:
                break  # a repayment in progress: the next scan sees its result
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
                await deps.repo.save_loan(loan, events=emitted)
            except ConcurrentUpdate:
                continue
            if emitted:
                deps.relay.nudge(LOANS, loan.id)
            break
    return transitions


# --- merchant revenue ------------------------------------------------------------------------


async def report_revenue(
    *,
    report_id: str,
    party_id: str,
    platform_id: str,
    revenue: Money,
    period_start: datetime,
    period_end: datetime,
    deps: LoanDeps,
    traceparent: str | None,
) -> bool:
    """Emit MerchantRevenueReported once per (platform, report id); False for a retry."""
    facts = await deps.repo.party_facts(
        party_id, now=datetime.now(UTC), alert_window=deps.alert_window
    )
    if facts is None:
        raise UnknownParty(f"party {party_id} is not known to identity", field="body.party_id")
    request = domain.fingerprint(
        party_id, revenue, period_start.isoformat(), period_end.isoformat()
    )
    now = datetime.now(UTC)
    event = events.revenue_reported(
        report_id=report_id,
        party_id=party_id,
        platform_id=platform_id,
        revenue=revenue,
        period_start=period_start,
        period_end=period_end,
        now=now,
        topic=deps.topic,
        traceparent=traceparent,
    )
    key = f"{platform_id}:{report_id}"
    added, first = await deps.repo.add_revenue_report(
        key,
        request=request,
        fields={"party_id": party_id, "platform_id": platform_id, "reported_at": now},
        events=[event],
    )
    if not added and first != request:
        raise IdempotencyConflict(f"report {report_id} was sent before with other figures")
    if added:
        deps.relay.nudge(REVENUE_REPORTS, key)
    return added


# --- recovery --------------------------------------------------------------------------------


async def recover(*, deps: LoanDeps, min_age: timedelta) -> int:
    """Finish what a crash interrupted: book accepted loans, disburse BOOKED ones, complete
    half-applied repayments. Safe to run any time, from several processes at once."""
    cutoff = datetime.now(UTC) - min_age
    done = 0
    for app in await deps.repo.accepted_without_loan(cutoff, window=timedelta(days=2)):
        await book_loan(app, deps=deps)
        done += 1
    for loan_id in await deps.repo.loans_in_state(LoanState.BOOKED, older_than=cutoff):
        await disburse_loan(loan_id, deps=deps)
        done += 1
    for loan_id in await deps.repo.loans_with_pending_repayment():
        doc = await deps.repo.loan_doc(loan_id)
        loan = await deps.repo.loan(loan_id)
        if doc is None or loan is None or doc.get("pending_repayment") is None:
            continue
        pending = doc["pending_repayment"]
        with contextlib.suppress(RepaymentRefused, ConcurrentUpdate):
            await _complete_repayment(loan, pending, deps=deps, traceparent=None)
        done += 1
    return done
