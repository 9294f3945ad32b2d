"""Payroll's commands: onboarding, agents, top-up, batches, approval, gig payouts, sweep.

Each handler takes keyword-only collaborators (wired in ``app.py``), checks who may act, moves
money only through the ledger with deterministic posting ids, and stores its events in the
aggregate's outbox in the same write as the state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Int64

from zerocontact.payroll import events as ev
from zerocontact.payroll.batch_runner import BatchRunner, card_context, chunk_count
from zerocontact.payroll.domain import accounts, sweep
from zerocontact.payroll.domain.batches import (
    BatchLimits,
    BatchState,
    ItemProblem,
    RawItem,
    RetryPolicy,
    ValidationReport,
    validate_batch,
)
from zerocontact.payroll.domain.cards import InvalidCard, parse_card
from zerocontact.payroll.domain.tax import withhold_labour_remuneration
from zerocontact.payroll.rail import CreditTransfer, IncomingMismatch, PaymentRail, RailStatus
from zerocontact.payroll.repository import ConcurrentUpdate, PayrollRepository
from zerocontact.payroll.v1 import events_pb2
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import DomainError, Forbidden, Invalid, NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import IdempotencyConflict, InsufficientFunds, Ledger, Side
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxRelay, insert_aggregate, update_aggregate
from zerocontact.platform.pii import FieldCipher

VERIFIED_LEVELS = ("KYC_LEVEL_VERIFIED", "KYC_LEVEL_ENHANCED")


class NotVerified(DomainError):
    """The enterprise is unknown to payroll or not VERIFIED by identity."""

    code = "enterprise_not_verified"


class KeyReused(DomainError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


class BatchRefused(Invalid):
    """The batch failed validation; nothing was reserved or paid."""

    code = "batch_refused"


class InvalidState(DomainError):
    """The batch or payout is not in a state that allows this."""

    code = "invalid_state"


class FundsShort(DomainError):
    """The wallet (with its money-market holding) does not cover the amount."""

    code = "insufficient_funds"


class MakerCheckerRequired(Forbidden):
    """The employer requires a different person to approve than the one who submitted."""

    code = "maker_checker"


class TopUpConflict(DomainError):
    """The rail reference was confirmed before with other terms."""

    code = "rail_reference_conflict"


@dataclass
class Context:
    """Collaborators every handler may need."""

    repo: PayrollRepository
    ledger: Ledger
    rail: PaymentRail
    relay: OutboxRelay
    cipher: FieldCipher
    runner: BatchRunner
    topic: str
    currency: str = "CNY"
    chunk_size: int = 500
    limits: BatchLimits = field(
        default_factory=lambda: BatchLimits(Money.of(Decimal("500000.00"), "CNY"))
    )
    mmf_annual_rate: Decimal = Decimal("0.018")
    redeem_lead_time: timedelta = timedelta(days=1)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def fingerprint(payload: Any) -> str:
    """A stable hash of a request, to tell a retry from a different request under one key."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def claim(ctx: Context, scope: str, key: str, payload: Any) -> tuple[str, Any]:
    """Claim an idempotency key: ``(resource id, first response or None)``."""
    doc = await ctx.repo.claim_key(f"{scope}:{key}", fingerprint(payload), new_id())
    if doc["fingerprint"] != fingerprint(payload):
        raise KeyReused("this Idempotency-Key was used for a different request")
    return str(doc["resource_id"]), doc.get("response")


# employers -------------------------------------------------------------------------------


async def employer(ctx: Context, employer_id: str) -> dict[str, Any]:
    """The employer document, or 404."""
    doc = await ctx.repo.employers.find_one({"_id": employer_id})
    if doc is None:
        raise NotFound(f"employer {employer_id} is not onboarded")
    return doc


def may_act(doc: dict[str, Any], principal: Principal) -> bool:
    """The enterprise's legal representative, or the representative of an authorised agent."""
    allowed = {doc["representative_id"]} | {
        a["representative_id"] for a in (doc.get("agents") or {}).values()
    }
    return principal.subject in allowed


async def acting_employer(ctx: Context, employer_id: str, principal: Principal) -> dict[str, Any]:
    """The employer, if ``principal`` may act for it; 403 otherwise."""
    doc = await employer(ctx, employer_id)
    if not may_act(doc, principal):
        raise Forbidden("you may not act for this employer")
    return doc


async def onboard_employer(
    ctx: Context,
    *,
    employer_id: str,
    principal: Principal,
    maker_checker: bool,
    sweep_threshold: Money | None,
) -> dict[str, Any]:
    """Open the wallet of a VERIFIED enterprise; only its legal representative may ask."""
    party = await ctx.repo.parties.find_one({"_id": employer_id})
    if party is None or party.get("kind") != "enterprise":
        raise NotVerified("payroll has not heard of this enterprise from identity")
    if party.get("kyc_level") not in VERIFIED_LEVELS:
        raise NotVerified("the enterprise is not VERIFIED yet")
    if party.get("legal_representative_id") != principal.subject:
        raise Forbidden("only the enterprise's legal representative may onboard it")
    for account in (
        accounts.wallet(employer_id),
        accounts.money_market(employer_id),
        accounts.gig_hold(employer_id),
    ):
        await ctx.ledger.open_account(account, currency=ctx.currency, normal_balance=Side.CREDIT)
    now = datetime.now(UTC)
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=employer_id,
        field="employer_onboarded",
        message=events_pb2.EmployerOnboarded(
            employer_id=employer_id,
            name=party.get("name", ""),
            wallet_account=accounts.wallet(employer_id),
            onboarded_at=ev.timestamp(now),
        ),
        subject=f"employer/{employer_id}",
    )
    doc = {
        "_id": employer_id,
        "name": party.get("name", ""),
        "representative_id": party["legal_representative_id"],
        "maker_checker": maker_checker,
        "sweep_threshold_minor": (
            Int64(sweep_threshold.minor_units) if sweep_threshold is not None else None
        ),
        "agents": {},
        "onboarded_at": now,
    }
    if await insert_aggregate(ctx.repo.employers, doc, [event]):
        ctx.relay.nudge(ctx.repo.employers.name, employer_id)
    return await employer(ctx, employer_id)


async def authorise_agent(
    ctx: Context, *, employer_id: str, agent_id: str, principal: Principal
) -> dict[str, Any]:
    """Let an HR platform (a VERIFIED enterprise) act for the employer."""
    doc = await employer(ctx, employer_id)
    if doc["representative_id"] != principal.subject:
        raise Forbidden("only the employer's legal representative may authorise agents")
    if agent_id in (doc.get("agents") or {}):
        return doc
    agent = await ctx.repo.parties.find_one({"_id": agent_id})
    if agent is None or agent.get("kyc_level") not in VERIFIED_LEVELS:
        raise NotVerified("the HR platform is unknown or not VERIFIED")
    now = datetime.now(UTC)
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=employer_id,
        field="agent_authorised",
        message=events_pb2.AgentAuthorised(
            employer_id=employer_id,
            agent_id=agent_id,
            actor=f"party:{principal.subject}",
            authorised_at=ev.timestamp(now),
        ),
        subject=f"employer/{employer_id}",
    )
    await update_aggregate(
        ctx.repo.employers,
        employer_id,
        version=int(doc["version"]),
        changes={
            f"agents.{agent_id}": {
                "representative_id": agent["legal_representative_id"],
                "authorised_at": now,
            }
        },
        events=[event],
    )
    ctx.relay.nudge(ctx.repo.employers.name, employer_id)
    return await employer(ctx, employer_id)


# top-up ----------------------------------------------------------------------------------


async def top_up(
    ctx: Context, *, employer_id: str, rail_reference: str, amount: Money, principal: Principal
) -> dict[str, Any]:
    """Credit the wallet with an incoming transfer, once per rail reference."""
    await acting_employer(ctx, employer_id, principal)
    try:
        await ctx.rail.confirm_incoming(
            rail_reference, beneficiary=accounts.wallet(employer_id), amount=amount
        )
    except IncomingMismatch:
        raise TopUpConflict("this rail reference was used for another transfer") from None
    await ctx.ledger.post(
        f"payroll:topup:{rail_reference}",
        accounts.top_up(employer_id, amount),
        memo=f"incoming transfer {rail_reference}",
    )
    await _treasury_event(
        ctx,
        f"topup:{rail_reference}",
        employer_id,
        "wallet_topped_up",
        events_pb2.WalletToppedUp(
            employer_id=employer_id,
            rail_reference=rail_reference,
            amount=amount.to_proto(),
            credited_at=ev.timestamp(),
        ),
    )
    return await balances(ctx, employer_id)


async def _treasury_event(
    ctx: Context, record_id: str, employer_id: str, field_name: str, message: Any
) -> None:
    """A treasury movement's record with its event (written once per movement id)."""
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=employer_id,
        field=field_name,
        message=message,
        subject=f"employer/{employer_id}",
        event_id=ev.deterministic_id(record_id, field_name),
    )
    doc = {
        "_id": record_id,
        "employer_id": employer_id,
        "kind": field_name,
        "at": datetime.now(UTC),
    }
    if await insert_aggregate(ctx.repo.treasury, doc, [event]):
        ctx.relay.nudge(ctx.repo.treasury.name, record_id)


async def balances(ctx: Context, employer_id: str) -> dict[str, Any]:
    """Wallet and money-market balances (authoritative: the ledger)."""
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    mmf = await ctx.ledger.balance(accounts.money_market(employer_id))
    return {
        "employer_id": employer_id,
        "currency": wallet.currency,
        "wallet_minor": wallet.minor_units,
        "money_market_minor": mmf.minor_units,
    }


# batches ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitBatch:
    """A batch as submitted (JSON, CSV or pain.001)."""

    employer_id: str
    items: Sequence[RawItem]
    declared_count: int | None
    declared_sum: Decimal | None
    scheduled_for: datetime | None
    idempotency_key: str
    source: str  # "json", "csv" or "pain.001"


def refusal_body(report: ValidationReport, batch_id: str) -> dict[str, Any]:
    """The per-item report of a refused batch (first 1,000 problems)."""
    return {
        "batch_id": batch_id,
        "batch_problems": report.batch_problems,
        "invalid_items": len({p.seq for p in report.item_problems}),
        "item_count": report.item_count,
        "items": [
            {"seq": p.seq, "field": p.field, "code": p.code, "message": p.message}
            for p in report.item_problems[:1000]
        ],
    }


async def submit_batch(ctx: Context, cmd: SubmitBatch, *, principal: Principal) -> dict[str, Any]:
    """Validate a batch and store it for approval, or refuse it with a per-item report."""
    await acting_employer(ctx, cmd.employer_id, principal)
    payload = {
        "employer": cmd.employer_id,
        "count": cmd.declared_count,
        "sum": cmd.declared_sum,
        "scheduled_for": cmd.scheduled_for,
        "items": fingerprint(
            [
                (
                    i.end_to_end_id,
                    i.payee_name,
                    i.card_number,
                    i.amount,
                    i.customer_id,
                    i.gross,
                    sorted(i.deductions.items()),
                )
                for i in cmd.items
            ]
        ),
    }
    batch_id, _ = await claim(ctx, f"batch:{cmd.employer_id}", cmd.idempotency_key, payload)
    existing = await ctx.repo.batches.find_one({"_id": batch_id})
    if existing is not None:
        if existing["state"] == BatchState.REFUSED:
            raise BatchRefused("the batch failed validation", **existing["report"])
        return existing
    report = validate_batch(
        batch_id,
        cmd.items,
        declared_count=cmd.declared_count,
        declared_sum=cmd.declared_sum,
        limits=ctx.limits,
        currency=ctx.currency,
    )
    if report.ok:
        reused = set(
            await ctx.repo.claim_end_to_end_ids(
                cmd.employer_id, batch_id, [i.end_to_end_id for i in report.instructions]
            )
        )
        if reused:
            report = replace(
                report,
                instructions=[],
                item_problems=[
                    ItemProblem(
                        i.seq,
                        "end_to_end_id",
                        "end_to_end_id_reused",
                        "this EndToEndId was submitted in an earlier batch",
                    )
                    for i in report.instructions
                    if i.end_to_end_id in reused
                ],
            )
    now = datetime.now(UTC)
    base = {
        "_id": batch_id,
        "employer_id": cmd.employer_id,
        "currency": ctx.currency,
        "item_count": report.item_count,
        "control_sum_minor": Int64(report.control_sum.minor_units),
        "submitted_by": principal.subject,
        "submitted_at": now,
        "source": cmd.source,
        "scheduled_for": cmd.scheduled_for,
    }
    if not report.ok:
        body = refusal_body(report, batch_id)
        event = ev.outbox_event(
            topic=ctx.topic,
            employer_id=cmd.employer_id,
            field="payroll_batch_refused",
            message=events_pb2.PayrollBatchRefused(
                batch_id=batch_id,
                employer_id=cmd.employer_id,
                invalid_items=body["invalid_items"],
                reasons=report.batch_problems,
                refused_at=ev.timestamp(now),
            ),
            subject=f"batch/{batch_id}",
        )
        if await insert_aggregate(
            ctx.repo.batches, {**base, "state": str(BatchState.REFUSED), "report": body}, [event]
        ):
            ctx.relay.nudge(ctx.repo.batches.name, batch_id)
        raise BatchRefused("the batch failed validation", **body)
    chunks = chunk_count(len(report.instructions), ctx.chunk_size)
    context = card_context(batch_id)
    item_docs = [
        {
            "_id": f"{batch_id}:{i.seq:06d}",
            "batch_id": batch_id,
            "seq": i.seq,
            "chunk": (i.seq - 1) // ctx.chunk_size,
            "end_to_end_id": i.end_to_end_id,
            "payee_name": i.payee_name,
            "card_enc": ctx.cipher.encrypt(i.card.number, context=context),
            "card_masked": i.card.masked,
            "bank": i.card.bank,
            "amount_minor": Int64(i.amount.minor_units),
            "customer_id": i.customer_id,
            "payslip": {
                "gross_minor": Int64(i.payslip.gross.minor_units),
                "deductions": {k: Int64(v.minor_units) for k, v in i.payslip.deductions.items()},
            },
        }
        for i in report.instructions
    ]
    # items first: a crash before the batch document leaves orphans nobody pays
    await ctx.repo.insert_items(item_docs)
    await ctx.repo.insert_chunks(batch_id, item_docs)
    await ctx.ledger.open_account(
        accounts.batch_reserve(batch_id), currency=ctx.currency, normal_balance=Side.CREDIT
    )
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=cmd.employer_id,
        field="payroll_batch_submitted",
        message=events_pb2.PayrollBatchSubmitted(
            batch_id=batch_id,
            employer_id=cmd.employer_id,
            item_count=report.item_count,
            control_sum=report.control_sum.to_proto(),
            submitted_by=f"party:{principal.subject}",
            scheduled_for=ev.timestamp(cmd.scheduled_for) if cmd.scheduled_for else None,
            submitted_at=ev.timestamp(now),
        ),
        subject=f"batch/{batch_id}",
    )
    doc = {**base, "state": str(BatchState.SUBMITTED), "chunks": chunks, "chunks_done": {}}
    if await insert_aggregate(ctx.repo.batches, doc, [event]):
        ctx.relay.nudge(ctx.repo.batches.name, batch_id)
    return await batch(ctx, batch_id)


async def batch(ctx: Context, batch_id: str) -> dict[str, Any]:
    """The batch document, or 404."""
    doc = await ctx.repo.batches.find_one({"_id": batch_id})
    if doc is None:
        raise NotFound(f"batch {batch_id} does not exist")
    return doc


async def approve_batch(ctx: Context, *, batch_id: str, principal: Principal) -> dict[str, Any]:
    """Approve (the caller passed step-up: AAL2, recent) and reserve the whole batch.

    Due now: execution starts. Scheduled: the scheduler redeems from the money-market holding
    ahead of time if needed and starts it when due.
    """
    doc = await batch(ctx, batch_id)
    owner = await acting_employer(ctx, doc["employer_id"], principal)
    if doc["state"] != BatchState.SUBMITTED:
        if doc["state"] in (BatchState.APPROVED, BatchState.EXECUTING, BatchState.COMPLETED):
            return doc  # approving twice is a retry
        raise InvalidState(f"a {doc['state']} batch cannot be approved")
    if owner.get("maker_checker") and doc["submitted_by"] == principal.subject:
        raise MakerCheckerRequired("another person must approve this batch")
    total = Money(doc["currency"], int(doc["control_sum_minor"]))
    await fund(ctx, employer_id=doc["employer_id"], need=total, purpose=f"batch:{batch_id}")
    try:
        await ctx.ledger.post(
            f"payroll:reserve:{batch_id}",
            accounts.reserve(doc["employer_id"], batch_id, total),
            memo=f"reserve for batch {batch_id}",
        )
    except InsufficientFunds:
        raise FundsShort("the wallet does not cover this batch") from None
    now = datetime.now(UTC)
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=doc["employer_id"],
        field="payroll_batch_approved",
        message=events_pb2.PayrollBatchApproved(
            batch_id=batch_id,
            employer_id=doc["employer_id"],
            approved_by=f"party:{principal.subject}",
            assurance_level=principal.aal.lower(),
            reserved=total.to_proto(),
            approved_at=ev.timestamp(now),
        ),
        subject=f"batch/{batch_id}",
        event_id=ev.deterministic_id(batch_id, "approved"),
    )
    try:
        await update_aggregate(
            ctx.repo.batches,
            batch_id,
            version=int(doc["version"]),
            changes={
                "state": str(BatchState.APPROVED),
                "approved_by": principal.subject,
                "approved_aal": principal.aal,
                "approved_at": now,
            },
            events=[event],
        )
    except ConcurrentUpdate:
        return await batch(ctx, batch_id)  # a concurrent approval won; the reserve is shared
    ctx.relay.nudge(ctx.repo.batches.name, batch_id)
    if doc.get("scheduled_for") is None or doc["scheduled_for"] <= now:
        ctx.runner.start(batch_id)
    return await batch(ctx, batch_id)


async def fund(ctx: Context, *, employer_id: str, need: Money, purpose: str) -> Money:
    """Redeem from the money-market holding what the wallet lacks for ``need`` (once per purpose)."""
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    holding = await ctx.ledger.balance(accounts.money_market(employer_id))
    amount = sweep.redemption_needed(need, wallet=wallet, holding=holding)
    if amount.is_zero():
        return amount
    try:
        await ctx.ledger.post(
            f"payroll:redeem:{purpose}",
            accounts.redeem(employer_id, amount),
            memo=f"redemption for {purpose}",
        )
    except IdempotencyConflict:
        return Money(amount.currency, 0)  # redeemed for this purpose already
    await _treasury_event(
        ctx,
        f"redeem:{purpose}",
        employer_id,
        "funds_redeemed",
        events_pb2.FundsRedeemed(
            employer_id=employer_id,
            amount=amount.to_proto(),
            purpose=purpose,
            redeemed_at=ev.timestamp(),
        ),
    )
    return amount


# gig payouts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GigPayout:
    """A per-task payout to a flexible worker."""

    employer_id: str
    payee_name: str
    card_number: str
    gross: Money
    task_reference: str
    idempotency_key: str


async def pay_gig(ctx: Context, cmd: GigPayout, *, principal: Principal) -> dict[str, Any]:
    """Hold the gross, pay the net through the rail, book the withheld tax; once per key."""
    await acting_employer(ctx, cmd.employer_id, principal)
    try:
        card = parse_card(cmd.card_number)
    except InvalidCard as exc:
        raise BatchRefused(str(exc), field="card_number") from None
    payload = {
        "e": cmd.employer_id,
        "n": cmd.payee_name,
        "c": card.number,
        "g": cmd.gross.minor_units,
        "t": cmd.task_reference,
    }
    payout_id, _ = await claim(ctx, f"gig:{cmd.employer_id}", cmd.idempotency_key, payload)
    doc = await ctx.repo.gig_payouts.find_one({"_id": payout_id})
    if doc is None:
        split = withhold_labour_remuneration(cmd.gross)
        doc = {
            "_id": payout_id,
            "employer_id": cmd.employer_id,
            "payee_name": cmd.payee_name,
            "card_enc": ctx.cipher.encrypt(card.number, context=f"payroll.gig.card:{payout_id}"),
            "card_masked": card.masked,
            "bank": card.bank,
            "currency": cmd.gross.currency,
            "gross_minor": Int64(split.gross.minor_units),
            "tax_minor": Int64(split.tax.minor_units),
            "net_minor": Int64(split.net.minor_units),
            "task_reference": cmd.task_reference,
            "state": "PENDING",
            "attempts": 0,
            "created_at": datetime.now(UTC),
        }
        await insert_aggregate(ctx.repo.gig_payouts, doc, [])
    return await drive_gig(ctx, payout_id)


async def drive_gig(ctx: Context, payout_id: str) -> dict[str, Any]:
    """Move a gig payout to PAID or FAILED; every step is idempotent (recovery re-runs it)."""
    doc = await ctx.repo.gig_payouts.find_one({"_id": payout_id})
    if doc is None:
        raise NotFound(f"payout {payout_id} does not exist")
    if doc["state"] in ("PAID", "FAILED"):
        return doc
    employer_id, currency = doc["employer_id"], doc["currency"]
    gross = Money(currency, int(doc["gross_minor"]))
    tax = Money(currency, int(doc["tax_minor"]))
    try:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:hold",
            accounts.gig_hold_legs(employer_id, gross),
            memo=f"gig payout {payout_id}",
        )
    except InsufficientFunds:
        await ctx.repo.gig_payouts.update_one({"_id": payout_id}, {"$set": {"state": "REFUSED"}})
        raise FundsShort("the wallet does not cover this payout") from None
    card = ctx.cipher.decrypt(doc["card_enc"], context=f"payroll.gig.card:{payout_id}")
    policy = ctx.retry
    attempts = int(doc.get("attempts", 0))
    while True:
        attempts += 1
        await ctx.repo.gig_payouts.update_one(
            {"_id": payout_id}, {"$set": {"state": "SENT", "attempts": attempts}}
        )
        (result,) = await ctx.rail.credit_transfers(
            [CreditTransfer(payout_id.replace("-", "")[:35], card, doc["payee_name"], gross - tax)]
        )
        if not result.retryable or policy.exhausted(attempts):
            break
        await asyncio.sleep(policy.delay(attempts))
    now = datetime.now(UTC)
    message: Any
    if result.status is RailStatus.ACSC:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:settle",
            accounts.gig_settle(employer_id, gross, tax),
            memo=f"gig payout {payout_id} paid",
        )
        field_name, message = (
            "gig_payout_paid",
            events_pb2.GigPayoutPaid(
                payout_id=payout_id,
                employer_id=employer_id,
                card_masked=doc["card_masked"],
                gross=gross.to_proto(),
                tax_withheld=tax.to_proto(),
                net=(gross - tax).to_proto(),
                paid_at=ev.timestamp(now),
            ),
        )
        state: dict[str, Any] = {"state": "PAID", "rail_reference": result.reference}
    else:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:release",
            accounts.gig_release(employer_id, gross),
            memo=f"gig payout {payout_id} failed",
        )
        code = result.reason_code or "NARR"
        field_name, message = (
            "gig_payout_failed",
            events_pb2.GigPayoutFailed(
                payout_id=payout_id,
                employer_id=employer_id,
                reason_code=code,
                failed_at=ev.timestamp(now),
            ),
        )
        state = {"state": "FAILED", "reason_code": code}
    event = ev.outbox_event(
        topic=ctx.topic,
        employer_id=employer_id,
        field=field_name,
        message=message,
        subject=f"gig/{payout_id}",
        event_id=ev.deterministic_id(payout_id, field_name),
    )
    latest = await ctx.repo.gig_payouts.find_one({"_id": payout_id})
    assert latest is not None
    if latest["state"] not in ("PAID", "FAILED"):
        # a concurrent driver decides the same: the rail answers both alike
        with contextlib.suppress(ConcurrentUpdate):
            await update_aggregate(
                ctx.repo.gig_payouts,
                payout_id,
                version=int(latest["version"]),
                changes={**state, "decided_at": now},
                events=[event],
            )
        ctx.relay.nudge(ctx.repo.gig_payouts.name, payout_id)
    found = await ctx.repo.gig_payouts.find_one({"_id": payout_id})
    assert found is not None
    return found


# sweep -----------------------------------------------------------------------------------


async def committed_for_batches(ctx: Context, employer_id: str, *, until: datetime) -> Money:
    """What approved-but-unreserved or submitted scheduled batches will need before ``until``."""
    total = 0
    async for doc in ctx.repo.batches.find(
        {"employer_id": employer_id, "state": str(BatchState.SUBMITTED)}
    ):
        if doc.get("scheduled_for") is not None and doc["scheduled_for"] <= until:
            total += int(doc["control_sum_minor"])
    return Money(ctx.currency, total)


async def run_sweep(
    ctx: Context, *, employer_id: str, business_day: date, now: datetime | None = None
) -> Money:
    """Move the wallet's idle money above the threshold into the money-market product.

    Once per employer and business day; payrolls scheduled within the redemption lead time
    are kept in the wallet.
    """
    doc = await employer(ctx, employer_id)
    if doc.get("sweep_threshold_minor") is None:
        return Money(ctx.currency, 0)
    moment = now or datetime.now(UTC)
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    amount = sweep.sweep_amount(
        wallet,
        threshold=Money(ctx.currency, int(doc["sweep_threshold_minor"])),
        committed=await committed_for_batches(
            ctx, employer_id, until=moment + ctx.redeem_lead_time
        ),
    )
    if amount.is_zero():
        return amount
    day = business_day.isoformat()
    try:
        await ctx.ledger.post(
            f"payroll:sweep:{employer_id}:{day}",
            accounts.sweep(employer_id, amount),
            memo=f"sweep {day}",
        )
    except IdempotencyConflict:
        return Money(ctx.currency, 0)  # swept today already
    except InsufficientFunds:
        return Money(ctx.currency, 0)  # the wallet moved meanwhile; tomorrow's sweep catches up
    await _treasury_event(
        ctx,
        f"sweep:{employer_id}:{day}",
        employer_id,
        "funds_swept",
        events_pb2.FundsSwept(
            employer_id=employer_id,
            amount=amount.to_proto(),
            business_day=day,
            swept_at=ev.timestamp(moment),
        ),
    )
    return amount


async def accrue_yield(ctx: Context, *, employer_id: str, business_day: date) -> Money:
    """Credit one day's yield on the money-market holding (once per day)."""
    holding = await ctx.ledger.balance(accounts.money_market(employer_id))
    amount = sweep.daily_yield(holding, annual_rate=ctx.mmf_annual_rate)
    if amount.is_zero():
        return amount
    try:
        await ctx.ledger.post(
            f"payroll:yield:{employer_id}:{business_day.isoformat()}",
            accounts.accrue_yield(employer_id, amount),
            memo=f"yield {business_day}",
        )
    except IdempotencyConflict:
        return Money(ctx.currency, 0)
    return amount


async def scheduler_tick(ctx: Context, *, now: datetime | None = None) -> list[str]:
    """Redeem ahead of scheduled payrolls within the lead time; start the ones due.

    Batches left EXECUTING are resumed too: a run fails when an engine is out (a publish or a
    write raises) and nobody else would pick it up before the next restart. ``start`` is a
    no-op for a batch this process is still running.
    """
    moment = now or datetime.now(UTC)
    started = []
    async for doc in ctx.repo.batches.find({"state": str(BatchState.SUBMITTED)}):
        when = doc.get("scheduled_for")
        if when is not None and when <= moment + ctx.redeem_lead_time:
            await fund(
                ctx,
                employer_id=doc["employer_id"],
                need=Money(doc["currency"], int(doc["control_sum_minor"])),
                purpose=f"batch:{doc['_id']}",
            )
    async for doc in ctx.repo.batches.find({"state": str(BatchState.APPROVED)}):
        when = doc.get("scheduled_for")
        if when is None or when <= moment:
            ctx.runner.start(doc["_id"])
            started.append(doc["_id"])
    async for doc in ctx.repo.batches.find({"state": str(BatchState.EXECUTING)}, {"_id": 1}):
        if not ctx.runner.running(doc["_id"]):
            ctx.runner.start(doc["_id"])
            started.append(doc["_id"])
    return started


async def recover(ctx: Context) -> dict[str, list[str]]:
    """Start-up recovery: finish ledger postings, resume batches and gig payouts in flight."""
    postings = await ctx.ledger.recover(min_age=timedelta(0))
    batches = [
        doc["_id"] async for doc in ctx.repo.batches.find({"state": str(BatchState.EXECUTING)})
    ]
    for batch_id in batches:
        ctx.runner.start(batch_id)
    gigs = [
        doc["_id"]
        async for doc in ctx.repo.gig_payouts.find({"state": {"$in": ["PENDING", "SENT"]}})
    ]
    for payout_id in gigs:
        await drive_gig(ctx, payout_id)
    return {"postings": postings, "batches": batches, "gig_payouts": gigs}
