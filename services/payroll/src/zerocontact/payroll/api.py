"""HTTP API of payroll (OpenAPI at /docs). Every mutating call takes an ``Idempotency-Key``.

Callers authenticate with identity's access tokens (Bearer); approving a batch needs a
step-up (AAL2, authenticated within ``step_up_max_age_s``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from zerocontact.payroll import handlers, iso20022
from zerocontact.payroll.domain.batches import (
    DEDUCTION_KINDS,
    MalformedCsv,
    RawItem,
    batch_status,
    parse_csv,
)
from zerocontact.platform.auth import InvalidToken, Principal, check_step_up
from zerocontact.platform.errors import Invalid, NotFound
from zerocontact.platform.money import InvalidAmount, Money

_bearer = HTTPBearer(auto_error=False, description="An access token issued by identity")

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Client-chosen key; a retry with the same key returns the first result.",
    ),
]
PartyId = Annotated[str, Path(pattern=r"^[0-9A-Za-z-]{8,64}$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]


class MalformedInput(Invalid):
    """The body cannot be read as the declared format."""

    code = "malformed_input"


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified bearer of identity's access token (401 otherwise)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken("a bearer access token is required")
    verified: Principal = await request.app.state.deps.verifier.verify(credentials.credentials)
    return verified


async def stepped_up(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """AAL2 with a recent authentication (403 ``step_up_required`` otherwise)."""
    check_step_up(who, request.app.state.deps.settings.step_up_max_age_s)
    return who


Caller = Annotated[Principal, Depends(principal)]
SteppedUp = Annotated[Principal, Depends(stepped_up)]


def _ctx(request: Request) -> handlers.Context:
    ctx: handlers.Context = request.app.state.deps.ctx
    return ctx


# models ----------------------------------------------------------------------------------


class OnboardRequest(BaseModel):
    """Onboard a VERIFIED enterprise as an employer."""

    employer_id: str = Field(
        pattern=r"^[0-9A-Za-z-]{8,64}$", description="identity's enterprise id"
    )
    maker_checker: bool = Field(default=False, description="approver must differ from submitter")
    sweep_threshold: Amount | None = Field(
        default=None, description="keep this much in the wallet; sweep the rest (none: no sweep)"
    )


class AgentRequest(BaseModel):
    """Authorise an HR platform to act for the employer."""

    agent_id: str = Field(pattern=r"^[0-9A-Za-z-]{8,64}$")


class TopUpRequest(BaseModel):
    """An incoming transfer to credit to the wallet."""

    rail_reference: str = Field(pattern=r"^[A-Za-z0-9_-]{6,64}$")
    amount: Amount


class Deductions(BaseModel):
    """Payslip deductions (optional)."""

    income_tax: Amount | None = None
    social_insurance: Amount | None = None
    housing_fund: Amount | None = None


class BatchItemIn(BaseModel):
    """One salary; the card number is validated (Luhn) and encrypted at rest."""

    payee_name: str = Field(max_length=140)
    card_number: str = Field(max_length=32)
    amount: Decimal = Field(max_digits=18, description="net pay, major units")
    end_to_end_id: str = Field(default="", max_length=35)
    customer_id: str = Field(default="", max_length=64, description="identity's customer id")
    gross: Decimal | None = Field(default=None, max_digits=18)
    deductions: Deductions = Field(default_factory=Deductions)


class BatchRequest(BaseModel):
    """A payroll batch as JSON."""

    items: list[BatchItemIn] = Field(max_length=100_000)
    item_count: int = Field(ge=0, le=100_000, description="must equal the number of items")
    control_sum: Decimal = Field(ge=0, max_digits=20, description="must equal the sum of amounts")
    scheduled_for: datetime | None = None


class GigPayoutRequest(BaseModel):
    """A per-task payout to a flexible worker (tax withheld)."""

    payee_name: str = Field(min_length=1, max_length=140)
    card_number: str = Field(min_length=13, max_length=32)
    gross: Amount
    task_reference: str = Field(min_length=1, max_length=64)


class BusinessDay(BaseModel):
    """A business day for sweep or yield accrual."""

    business_day: date


class BatchView(BaseModel):
    """A batch's state and pain.002 status."""

    batch_id: str
    employer_id: str
    state: str
    status: str
    item_count: int
    control_sum: str
    currency: str
    counts: dict[str, int]
    scheduled_for: datetime | None
    submitted_by: str
    approved_by: str | None


def _batch_view(doc: dict[str, Any], counts: dict[str, int]) -> BatchView:
    open_items = counts.get("PENDING", 0) + counts.get("SENT", 0)
    if doc["state"] == "REFUSED":
        status = "RJCT"
    elif doc["state"] == "SUBMITTED":
        status = "ACTC"
    elif doc["state"] == "APPROVED" and not counts.get("PAID") and not counts.get("FAILED"):
        status = "ACCP"
    else:
        status = batch_status(counts.get("PAID", 0), counts.get("FAILED", 0), open_items)
    return BatchView(
        batch_id=doc["_id"],
        employer_id=doc["employer_id"],
        state=doc["state"],
        status=status,
        item_count=int(doc["item_count"]),
        control_sum=str(Money(doc["currency"], int(doc["control_sum_minor"])).to_decimal()),
        currency=doc["currency"],
        counts=counts,
        scheduled_for=doc.get("scheduled_for"),
        submitted_by=doc["submitted_by"],
        approved_by=doc.get("approved_by"),
    )


def _employer_view(doc: dict[str, Any], balances: dict[str, Any]) -> dict[str, Any]:
    return {
        "employer_id": doc["_id"],
        "name": doc["name"],
        "maker_checker": doc["maker_checker"],
        "agents": sorted(doc.get("agents") or {}),
        **balances,
    }


# routes ----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", tags=["payroll"])


@router.post("/employers", status_code=201)
async def onboard(
    body: OnboardRequest, key: IdempotencyKey, who: Caller, request: Request
) -> dict[str, Any]:
    """Onboard a VERIFIED enterprise (its legal representative only): opens its wallet."""
    ctx = _ctx(request)
    await handlers.claim(ctx, "onboard", key, body.model_dump(mode="json"))
    doc = await handlers.onboard_employer(
        ctx,
        employer_id=body.employer_id,
        principal=who,
        maker_checker=body.maker_checker,
        sweep_threshold=Money.of(body.sweep_threshold, ctx.currency)
        if body.sweep_threshold is not None
        else None,
    )
    return _employer_view(doc, await handlers.balances(ctx, doc["_id"]))


@router.get("/employers/{employer_id}")
async def get_employer(employer_id: PartyId, who: Caller, request: Request) -> dict[str, Any]:
    """The employer with its wallet and money-market balances."""
    ctx = _ctx(request)
    doc = await handlers.acting_employer(ctx, employer_id, who)
    return _employer_view(doc, await handlers.balances(ctx, employer_id))


@router.post("/employers/{employer_id}/agents")
async def authorise_agent(
    employer_id: PartyId, body: AgentRequest, key: IdempotencyKey, who: Caller, request: Request
) -> dict[str, Any]:
    """Authorise an HR platform (a VERIFIED enterprise) to act for this employer."""
    ctx = _ctx(request)
    await handlers.claim(ctx, f"agent:{employer_id}", key, body.model_dump(mode="json"))
    doc = await handlers.authorise_agent(
        ctx, employer_id=employer_id, agent_id=body.agent_id, principal=who
    )
    return _employer_view(doc, await handlers.balances(ctx, employer_id))


@router.post("/employers/{employer_id}/top-ups")
async def top_up(
    employer_id: PartyId, body: TopUpRequest, key: IdempotencyKey, who: Caller, request: Request
) -> dict[str, Any]:
    """Credit an incoming transfer to the wallet (idempotent by the rail's reference)."""
    ctx = _ctx(request)
    await handlers.claim(ctx, f"topup:{employer_id}", key, body.model_dump(mode="json"))
    return await handlers.top_up(
        ctx,
        employer_id=employer_id,
        rail_reference=body.rail_reference,
        amount=Money.of(body.amount, ctx.currency),
        principal=who,
    )


async def _submit(
    request: Request,
    employer_id: str,
    key: str,
    who: Principal,
    *,
    items: list[RawItem],
    count: int | None,
    total: Decimal | None,
    scheduled_for: datetime | None,
    source: str,
) -> BatchView:
    ctx = _ctx(request)
    doc = await handlers.submit_batch(
        ctx,
        handlers.SubmitBatch(employer_id, items, count, total, scheduled_for, key, source),
        principal=who,
    )
    return _batch_view(doc, await ctx.repo.item_counts(doc))


@router.post("/employers/{employer_id}/batches", status_code=201)
async def submit_json(
    employer_id: PartyId, body: BatchRequest, key: IdempotencyKey, who: Caller, request: Request
) -> BatchView:
    """Submit a batch as JSON; refused with a per-item report (422) if anything is wrong."""
    items = [
        RawItem(
            payee_name=i.payee_name,
            card_number=i.card_number,
            amount=str(i.amount),
            end_to_end_id=i.end_to_end_id,
            customer_id=i.customer_id,
            gross="" if i.gross is None else str(i.gross),
            deductions={
                k: "" if getattr(i.deductions, k) is None else str(getattr(i.deductions, k))
                for k in DEDUCTION_KINDS
            },
        )
        for i in body.items
    ]
    return await _submit(
        request,
        employer_id,
        key,
        who,
        items=items,
        count=body.item_count,
        total=body.control_sum,
        scheduled_for=body.scheduled_for,
        source="json",
    )


@router.post(
    "/employers/{employer_id}/batches/csv",
    status_code=201,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def submit_csv(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    request: Request,
    item_count: Annotated[int, Query(ge=0, le=100_000)],
    control_sum: Annotated[Decimal, Query(ge=0, max_digits=20)],
    scheduled_for: Annotated[datetime | None, Query()] = None,
) -> BatchView:
    """Submit a CSV batch (header: payee_name,card_number,amount[,end_to_end_id,...])."""
    raw = await request.body()
    try:
        items = parse_csv(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedInput("the CSV is not UTF-8", field="body") from None
    except MalformedCsv as exc:
        raise MalformedInput(f"malformed CSV: {exc}", field="body") from None
    return await _submit(
        request,
        employer_id,
        key,
        who,
        items=items,
        count=item_count,
        total=control_sum,
        scheduled_for=scheduled_for,
        source="csv",
    )


@router.post(
    "/employers/{employer_id}/batches/pain001",
    status_code=201,
    openapi_extra={"requestBody": {"content": {"application/xml": {"schema": {"type": "string"}}}}},
)
async def submit_pain001(
    employer_id: PartyId, key: IdempotencyKey, who: Caller, request: Request
) -> BatchView:
    """Import an ISO 20022 pain.001.001.09 (one PmtInf, category purpose SALA)."""
    try:
        message = iso20022.parse_pain001(await request.body())
    except iso20022.MalformedMessage as exc:
        raise MalformedInput(str(exc), field="body") from None
    scheduled = None
    if message.requested_execution and message.requested_execution > datetime.now(UTC).date():
        scheduled = datetime.combine(message.requested_execution, datetime.min.time(), UTC)
    return await _submit(
        request,
        employer_id,
        key,
        who,
        items=message.items,
        count=message.declared_count,
        total=message.declared_sum,
        scheduled_for=scheduled,
        source="pain.001",
    )


async def _owned_batch(request: Request, batch_id: str, who: Principal) -> dict[str, Any]:
    ctx = _ctx(request)
    doc = await handlers.batch(ctx, batch_id)
    await handlers.acting_employer(ctx, doc["employer_id"], who)
    return doc


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: PartyId, who: Caller, request: Request) -> BatchView:
    """A batch's state, pain.002 group status and item counts."""
    doc = await _owned_batch(request, batch_id, who)
    return _batch_view(doc, await _ctx(request).repo.item_counts(doc))


@router.get("/batches/{batch_id}/report")
async def refusal_report(batch_id: PartyId, who: Caller, request: Request) -> dict[str, Any]:
    """The per-item validation report of a refused batch."""
    doc = await _owned_batch(request, batch_id, who)
    if "report" not in doc:
        raise NotFound("the batch was not refused")
    report: dict[str, Any] = doc["report"]
    return report


@router.get("/batches/{batch_id}/items")
async def list_items(
    batch_id: PartyId,
    who: Caller,
    request: Request,
    state: Annotated[str | None, Query(pattern="^(PENDING|SENT|PAID|FAILED)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_seq: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Items with masked cards, in order; state from the outcomes (PENDING until decided)."""
    await _owned_batch(request, batch_id, who)
    rows = []
    async for d in _items_with_state(request, batch_id, after_seq=after_seq):
        if state and d["state"] != state:
            continue
        rows.append(
            {
                "seq": d["seq"],
                "end_to_end_id": d["end_to_end_id"],
                "payee_name": d["payee_name"],
                "card": d["card_masked"],
                "bank": d["bank"],
                "amount_minor": int(d["amount_minor"]),
                "state": d["state"],
                "attempts": int(d.get("attempts", 0)),
                "reason_code": d.get("reason_code", ""),
            }
        )
        if len(rows) >= limit:
            break
    return rows


async def _items_with_state(
    request: Request, batch_id: str, *, after_seq: int = 0
) -> AsyncIterator[dict[str, Any]]:
    """The batch's items in order, each with its outcome's state, attempts and reason."""
    repo = _ctx(request).repo
    outcomes = await repo.outcomes_by_item(batch_id)
    async for item in repo.items.find({"batch_id": batch_id, "seq": {"$gt": after_seq}}).sort(
        "seq", 1
    ):
        outcome = outcomes.get(item["_id"])
        if outcome is None:
            yield {**item, "state": "PENDING", "attempts": 0}
        else:
            yield {
                **item,
                "state": outcome["state"],
                "attempts": outcome["attempts"],
                "reason_code": outcome["reason_code"],
            }


@router.post("/batches/{batch_id}/approval")
async def approve(
    batch_id: PartyId, key: IdempotencyKey, who: SteppedUp, request: Request
) -> BatchView:
    """Approve and reserve the batch; needs AAL2 and a recent authentication (step-up)."""
    ctx = _ctx(request)
    await handlers.claim(ctx, f"approve:{batch_id}", key, {"batch": batch_id})
    doc = await handlers.approve_batch(ctx, batch_id=batch_id, principal=who)
    return _batch_view(doc, await ctx.repo.item_counts(doc))


@router.get("/batches/{batch_id}/pain001", response_class=Response)
async def export_pain001(batch_id: PartyId, who: Caller, request: Request) -> Response:
    """The batch as ISO 20022 pain.001.001.09 (cards masked)."""
    doc = await _owned_batch(request, batch_id, who)
    owner = await handlers.employer(_ctx(request), doc["employer_id"])
    items = [i async for i in _items_with_state(request, batch_id)]
    xml = iso20022.export_pain001(doc, items, debtor_name=owner["name"] or owner["_id"])
    return Response(xml, media_type="application/xml")


@router.get("/batches/{batch_id}/status-report", response_class=Response)
async def status_report(batch_id: PartyId, who: Caller, request: Request) -> Response:
    """The batch's ISO 20022 pain.002.001.10 status report."""
    doc = await _owned_batch(request, batch_id, who)
    items = [i async for i in _items_with_state(request, batch_id)]
    view = _batch_view(doc, await _ctx(request).repo.item_counts(doc))
    xml = iso20022.status_report(doc, items, group_status=view.status)
    return Response(xml, media_type="application/xml")


@router.get("/me/payslips")
async def my_payslips(who: Caller, request: Request) -> list[dict[str, Any]]:
    """The caller's payslips (items whose customer_id is the token's subject), newest first."""
    ctx = _ctx(request)
    slips = []
    async for item in ctx.repo.items.find({"customer_id": who.subject}).sort("_id", -1).limit(100):
        batch = await ctx.repo.batches.find_one({"_id": item["batch_id"]})
        currency = batch["currency"] if batch else "CNY"
        slip: dict[str, Any] = item.get("payslip") or {}
        outcome = await ctx.repo.outcomes.find_one(
            {"_id": f"{item['batch_id']}:{item['end_to_end_id']}"}
        )
        slips.append(
            {
                "batch_id": item["batch_id"],
                "employer_id": batch["employer_id"] if batch else "",
                "end_to_end_id": item["end_to_end_id"],
                "currency": currency,
                "gross": str(
                    Money(
                        currency, int(slip.get("gross_minor") or item["amount_minor"])
                    ).to_decimal()
                ),
                "deductions": {
                    k: str(Money(currency, int(v)).to_decimal())
                    for k, v in (slip.get("deductions") or {}).items()
                },
                "net": str(Money(currency, int(item["amount_minor"])).to_decimal()),
                "card": item["card_masked"],
                "state": outcome["state"] if outcome else "PENDING",
            }
        )
    return slips


@router.post("/employers/{employer_id}/gig-payouts", status_code=201)
async def gig_payout(
    employer_id: PartyId, body: GigPayoutRequest, key: IdempotencyKey, who: Caller, request: Request
) -> dict[str, Any]:
    """Pay a gig worker: income tax withheld (simplified table, docs/payroll.md), net paid."""
    ctx = _ctx(request)
    try:
        gross = Money.of(body.gross, ctx.currency)
    except InvalidAmount as exc:
        raise MalformedInput(str(exc), field="gross") from None
    doc = await handlers.pay_gig(
        ctx,
        handlers.GigPayout(
            employer_id, body.payee_name, body.card_number, gross, body.task_reference, key
        ),
        principal=who,
    )
    return _gig_view(doc)


def _gig_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "payout_id": doc["_id"],
        "employer_id": doc["employer_id"],
        "state": doc["state"],
        "card": doc["card_masked"],
        "bank": doc["bank"],
        "currency": doc["currency"],
        "gross_minor": int(doc["gross_minor"]),
        "tax_minor": int(doc["tax_minor"]),
        "net_minor": int(doc["net_minor"]),
        "reason_code": doc.get("reason_code", ""),
    }


@router.post("/employers/{employer_id}/sweeps")
async def sweep(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    request: Request,
    body: Annotated[BusinessDay, Body()],
) -> dict[str, Any]:
    """Run the day's sweep now (also run by the scheduler)."""
    ctx = _ctx(request)
    await handlers.acting_employer(ctx, employer_id, who)
    await handlers.claim(ctx, f"sweep:{employer_id}", key, body.model_dump(mode="json"))
    moved = await handlers.run_sweep(ctx, employer_id=employer_id, business_day=body.business_day)
    return {"swept_minor": moved.minor_units, **await handlers.balances(ctx, employer_id)}


@router.post("/employers/{employer_id}/yield-accruals")
async def accrue(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    request: Request,
    body: Annotated[BusinessDay, Body()],
) -> dict[str, Any]:
    """Accrue one day's money-market yield (also run by the scheduler)."""
    ctx = _ctx(request)
    await handlers.acting_employer(ctx, employer_id, who)
    await handlers.claim(ctx, f"yield:{employer_id}", key, body.model_dump(mode="json"))
    amount = await handlers.accrue_yield(
        ctx, employer_id=employer_id, business_day=body.business_day
    )
    return {"accrued_minor": amount.minor_units, **await handlers.balances(ctx, employer_id)}
