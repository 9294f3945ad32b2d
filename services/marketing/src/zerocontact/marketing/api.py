"""HTTP API of marketing (OpenAPI at /docs and /openapi.json).

Every ``/v1`` call is made by the bank's back office for one of its staff: it presents the
shared ``X-Operator-Key`` (403 without it) and names the member of staff in ``X-Operator-Id``.
A campaign's author is the operator who created it and its approver the operator who
approved it (four eyes: never the same). Mutating calls take an ``Idempotency-Key``
(:mod:`zerocontact.marketing.idempotency`): a retry returns the first response, a duplicate
still running is a 409 ``request_in_progress``, the same key with another request a 422."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from zerocontact.marketing import handlers, profiles
from zerocontact.marketing.consumers import payee_link_id
from zerocontact.marketing.domain.catalog import ProductKind
from zerocontact.marketing.domain.segments import Rule
from zerocontact.marketing.domain.triggers import Trigger
from zerocontact.marketing.idempotency import run_once
from zerocontact.marketing.segmenting import recompute_all
from zerocontact.platform.auth import shared_credential
from zerocontact.platform.errors import Invalid, NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.outbox import insert_aggregate

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Client-chosen key; a retry with the same key returns the first result.",
    ),
]
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
ChannelName = Literal["app_push", "sms", "in_app", "live_studio"]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# A back-office user id: short and plain, as it is stored and published in review events.
OPERATOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class PathMismatch(Invalid):
    """The id in the body differs from the id in the path."""

    code = "path_mismatch"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProductIn(_Body):
    product_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: ProductKind
    name: str = Field(min_length=1, max_length=100)
    risk_level: int = Field(ge=1, le=5, description="R1..R5")
    annual_rate: str = Field(default="", pattern=r"^$|^[0-9]{1,2}(\.[0-9]{1,4})?%$")


class SegmentIn(_Body):
    segment_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    rule: Rule


class PreferencesIn(_Body):
    consented_channels: list[ChannelName] = Field(max_length=4)
    do_not_contact: bool = False
    quiet_start: str = Field(default="21:00", pattern=HHMM)
    quiet_end: str = Field(default="08:00", pattern=HHMM)
    time_zone: str = "Asia/Shanghai"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import available_timezones

        if value not in available_timezones():
            raise ValueError("unknown IANA time zone")
        return value


class RiskToleranceIn(_Body):
    grade: int = Field(ge=1, le=5, description="C1..C5 from the suitability questionnaire")


class PayeeLinkIn(_Body):
    employer_id: str = Field(min_length=1, max_length=64)
    card_masked: str = Field(pattern=r"^[0-9]{6}\*{2,9}[0-9]{4}$")
    party_id: str = Field(min_length=1, max_length=64)


class VariantIn(_Body):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    channel: ChannelName
    title: str = Field(min_length=1, max_length=60)
    body: str = Field(min_length=1, max_length=500)


class CampaignIn(_Body):
    name: str = Field(min_length=1, max_length=100)
    goal: str = Field(min_length=1, max_length=200)
    budget_minor: int = Field(ge=0)
    cost_per_contact_minor: int = Field(default=0, ge=0)
    product_id: str
    segment_id: str | None = None
    start_at: datetime | None = None
    holdout_percent: float = Field(ge=0, le=50)
    variants: list[VariantIn] = Field(min_length=1, max_length=8)
    trigger: Trigger | None = None

    @field_validator("variants")
    @classmethod
    def _distinct_ids(cls, value: list[VariantIn]) -> list[VariantIn]:
        if len({v.id for v in value}) != len(value):
            raise ValueError("variant ids must be distinct")
        return value


class DesignIn(_Body):
    variants: list[VariantIn] = Field(min_length=1, max_length=8)


class InteractionIn(_Body):
    party_id: str = Field(min_length=1, max_length=64)
    stage: Literal["opened", "clicked", "converted"]


class StudioIn(_Body):
    studio_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1, max_length=100)
    branch: str = Field(default="", max_length=100)


class SessionIn(_Body):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    host: str = Field(min_length=1, max_length=64)
    starts_at: datetime
    product_ids: list[str] = Field(default_factory=list, max_length=20)


class ViewerEventIn(_Body):
    event_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    party_id: str = Field(min_length=1, max_length=64)
    kind: Literal["joined", "left", "commented", "card_clicked", "converted"]
    product_id: str = ""
    at: datetime


def _operator_key(request: Request) -> SecretStr:
    key: SecretStr = request.app.state.deps.settings.operator_key
    return key


operator_key = shared_credential("X-Operator-Key", _operator_key)


async def current_operator(
    operator_id: Annotated[
        str,
        Header(
            alias="X-Operator-Id",
            pattern=OPERATOR_ID,
            description="The back-office user making the call (recorded as a campaign's "
            "author, reviewer or approver, and as the approver in CampaignReviewed).",
        ),
    ],
) -> str:
    """The operator the back office acts for."""
    return operator_id


Operator = Annotated[str, Depends(current_operator)]

# The key is checked first (router dependencies run before the route's own parameters), so an
# unauthenticated call is a 403 whatever else is wrong with it.
router = APIRouter(
    prefix="/v1",
    tags=["marketing"],
    dependencies=[Depends(operator_key), Depends(current_operator)],
)


def _deps(request: Request) -> Any:
    return request.app.state.deps


async def _once(request: Request, scope: str, key: str, body: Any, compute: Any) -> Any:
    """Run ``compute`` once per (scope, key); a retry returns the stored response. The request
    is the body and the operator: the same key from another operator is another request."""
    deps = _deps(request)
    return await run_once(
        deps.repo.idempotency,
        scope=scope,
        key=key,
        payload=request_fingerprint(request.headers["X-Operator-Id"], body),
        compute=compute,
        lease_s=deps.settings.idempotency_lease_s,
    )


def request_fingerprint(operator: str, body: Any) -> Any:
    """What an Idempotency-Key's request is compared by: who asked, and the body."""
    return {"operator": operator, "body": body}


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if not k.startswith("_") or k == "_id"}
    if "_id" in out:
        out["id"] = out.pop("_id")
    return out


@router.put("/products/{product_id}")
async def put_product(
    product_id: Id, body: ProductIn, key: IdempotencyKey, request: Request
) -> Any:
    """Add or replace a catalog product (risk level R1..R5; loans state their annual rate)."""
    if body.product_id != product_id:
        raise PathMismatch("product_id in the body differs from the path", field="product_id")
    if body.kind is ProductKind.LOAN and not body.annual_rate:
        raise handlers.UnknownReference("a loan product needs its annual_rate", field="annual_rate")

    async def compute() -> Any:
        doc = {"_id": product_id, **body.model_dump(exclude={"product_id"})}
        await _deps(request).repo.products.replace_one({"_id": product_id}, doc, upsert=True)
        return _public(doc)

    return await _once(request, "product", key, body.model_dump(mode="json"), compute)


@router.get("/products")
async def list_products(request: Request) -> Any:
    """The marketing catalog."""
    return [_public(d) async for d in _deps(request).repo.products.find({})]


@router.put("/segments/{segment_id}")
async def put_segment(
    segment_id: Id, body: SegmentIn, key: IdempotencyKey, request: Request
) -> Any:
    """Define or change a segment's rule (membership follows profile changes)."""
    if body.segment_id != segment_id:
        raise PathMismatch("segment_id in the body differs from the path", field="segment_id")

    async def compute() -> Any:
        doc = {
            "_id": segment_id,
            "name": body.name,
            "rule": body.rule.model_dump(mode="json", by_alias=True),
        }
        await _deps(request).repo.segments.replace_one({"_id": segment_id}, doc, upsert=True)
        _deps(request).book.invalidate()
        return _public(doc)

    return await _once(
        request, "segment", key, body.model_dump(mode="json", by_alias=True), compute
    )


@router.post("/segments/recompute")
async def recompute(request: Request, key: IdempotencyKey) -> Any:
    """Re-evaluate every profile against every segment (batch; changes are events)."""
    deps = _deps(request)

    async def compute() -> Any:
        deps.book.invalidate()
        book = await deps.book.current()
        done = await recompute_all(
            deps.repo,
            deps.relay,
            book.rules,
            now=deps.clock(),
            time_zone=deps.settings.default_time_zone,
            topic=deps.settings.topic,
        )
        return done.__dict__

    return await _once(request, "recompute", key, {}, compute)


@router.put("/parties/{party_id}/preferences")
async def put_preferences(
    party_id: Id, body: PreferencesIn, key: IdempotencyKey, request: Request
) -> Any:
    """Consent per channel, do-not-contact and quiet hours of a party."""
    deps = _deps(request)

    async def compute() -> Any:
        prefs = {
            "consented": list(body.consented_channels),
            "do_not_contact": body.do_not_contact,
            "quiet_start": body.quiet_start,
            "quiet_end": body.quiet_end,
            "time_zone": body.time_zone,
        }
        await handlers.set_preferences(
            deps.repo, deps.relay, deps.settings.topic, party_id, prefs, deps.clock()
        )
        return {"party_id": party_id, **prefs}

    return await _once(request, f"prefs:{party_id}", key, body.model_dump(mode="json"), compute)


@router.post("/parties/{party_id}/risk-tolerance")
async def post_risk_tolerance(
    party_id: Id, body: RiskToleranceIn, key: IdempotencyKey, request: Request
) -> Any:
    """Record a suitability questionnaire's grade (the profile takes it from the event)."""
    deps = _deps(request)

    async def compute() -> Any:
        await handlers.assess_risk_tolerance(
            deps.repo, deps.relay, deps.settings.topic, party_id, body.grade, deps.clock()
        )
        return {"party_id": party_id, "grade": body.grade}

    return await _once(request, f"risk:{party_id}", key, body.model_dump(), compute)


@router.get("/parties/{party_id}/profile")
async def get_profile(party_id: Id, request: Request) -> Any:
    """The 360° profile (a projection of events) with the party's preferences."""
    deps = _deps(request)
    doc = await deps.repo.profiles.find_one({"_id": party_id}, {"_applied": 0, "_outbox": 0})
    if doc is None:
        raise NotFound(f"no profile for party {party_id} yet")
    prefs = await deps.repo.preferences.find_one({"_id": party_id})
    return profiles.view(doc, prefs, now=deps.clock(), time_zone=deps.settings.default_time_zone)


@router.get("/parties/{party_id}/suppressions")
async def get_suppressions(party_id: Id, request: Request) -> Any:
    """Contacts not made to a party, and why."""
    cursor = _deps(request).repo.suppressions.find(
        {"party_id": party_id}, {"_outbox": 0, "_outbox_pending": 0, "version": 0}
    )
    return [_public(d) async for d in cursor]


@router.put("/payee-links")
async def put_payee_link(body: PayeeLinkIn, key: IdempotencyKey, request: Request) -> Any:
    """Link an employer's payee (masked card, as in SalaryPaid) to a party (interim: payroll's
    events carry no party id; see docs/marketing.md)."""

    async def compute() -> Any:
        doc_id = payee_link_id(body.employer_id, body.card_masked)
        await _deps(request).repo.payee_links.replace_one(
            {"_id": doc_id}, {"_id": doc_id, "party_id": body.party_id}, upsert=True
        )
        return body.model_dump()

    return await _once(request, "payee", key, body.model_dump(), compute)


@router.post("/campaigns", status_code=201)
async def create_campaign(
    body: CampaignIn, key: IdempotencyKey, operator: Operator, request: Request
) -> Any:
    """Plan and design a campaign (draft); its author is the calling operator."""
    deps = _deps(request)
    if body.trigger is None and body.segment_id is None:
        raise handlers.UnknownReference(
            "a campaign needs an audience segment or a trigger", field="segment_id"
        )

    async def compute() -> Any:
        plan = body.model_dump(mode="json")
        plan["variants"] = [v.model_dump() for v in body.variants]
        plan["start_at"] = body.start_at
        return _public(await handlers.create_campaign(deps.repo, plan, operator, deps.clock()))

    return await _once(request, "campaign", key, body.model_dump(mode="json"), compute)


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: Id, request: Request) -> Any:
    """One campaign with its status and findings."""
    return _public(await handlers.get_campaign(_deps(request).repo, campaign_id))


@router.put("/campaigns/{campaign_id}/design")
async def put_design(campaign_id: Id, body: DesignIn, key: IdempotencyKey, request: Request) -> Any:
    """Replace the content variants (back to draft)."""

    async def compute() -> Any:
        return _public(
            await handlers.redesign(
                _deps(request).repo, campaign_id, [v.model_dump() for v in body.variants]
            )
        )

    return await _once(request, f"design:{campaign_id}", key, body.model_dump(), compute)


@router.post("/campaigns/{campaign_id}/review")
async def review(campaign_id: Id, key: IdempotencyKey, operator: Operator, request: Request) -> Any:
    """Run the compliance checker; findings block the campaign (``reviewed_by`` is the
    caller)."""
    deps = _deps(request)

    async def compute() -> Any:
        return _public(
            await handlers.review(
                deps.repo, deps.relay, deps.settings.topic, campaign_id, deps.clock(), operator
            )
        )

    return await _once(request, f"review:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/approve")
async def approve(
    campaign_id: Id, key: IdempotencyKey, operator: Operator, request: Request
) -> Any:
    """Approve as the calling operator (never the author: 403 ``approver_is_author``);
    refused while findings remain."""
    deps = _deps(request)

    async def compute() -> Any:
        return _public(
            await handlers.approve(
                deps.repo,
                deps.relay,
                deps.book,
                deps.settings.topic,
                campaign_id,
                operator,
                deps.clock(),
            )
        )

    return await _once(request, f"approve:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/execute", status_code=202)
async def execute(campaign_id: Id, key: IdempotencyKey, request: Request) -> Any:
    """Start offering the campaign to its segment now; poll the campaign's ``run``."""
    deps = _deps(request)

    async def compute() -> Any:
        run = await handlers.start_execution(deps.repo, campaign_id)
        deps.background(handlers.execute(deps.repo, deps.outreach, campaign_id))
        return run

    return await _once(request, f"execute:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/interactions")
async def interaction(
    campaign_id: Id, body: InteractionIn, key: IdempotencyKey, request: Request
) -> Any:
    """Report an open, click or conversion of a campaign member."""
    deps = _deps(request)

    async def compute() -> Any:
        doc = await handlers.record_interaction(
            deps.repo,
            deps.relay,
            deps.settings.topic,
            campaign_id,
            body.party_id,
            body.stage,
            deps.clock(),
        )
        return _public(doc)

    return await _once(request, f"interaction:{campaign_id}", key, body.model_dump(), compute)


@router.get("/campaigns/{campaign_id}/evaluation")
async def evaluation(
    campaign_id: Id, request: Request, confidence: Annotated[float, Query(gt=0.5, lt=1)] = 0.95
) -> Any:
    """Funnel, uplift vs holdout (two-proportion z-test, CI), cost per conversion."""
    return await handlers.evaluate(_deps(request).repo, campaign_id, confidence)


@router.get("/campaigns/{campaign_id}/live-funnel")
async def live_funnel(campaign_id: Id, request: Request) -> Any:
    """The real-time funnel from signals.engagement.v1."""
    doc = await _deps(request).repo.live.find_one({"_id": f"funnel:{campaign_id}"})
    if doc is None:
        raise NotFound(f"no live funnel for campaign {campaign_id} yet")
    return _public(doc)


@router.put("/studios/{studio_id}")
async def put_studio(studio_id: Id, body: StudioIn, key: IdempotencyKey, request: Request) -> Any:
    """Add or rename a live studio."""
    if body.studio_id != studio_id:
        raise PathMismatch("studio_id in the body differs from the path", field="studio_id")

    async def compute() -> Any:
        doc = {"_id": studio_id, "name": body.name, "branch": body.branch}
        await _deps(request).repo.studios.replace_one({"_id": studio_id}, doc, upsert=True)
        return _public(doc)

    return await _once(request, "studio", key, body.model_dump(), compute)


@router.post("/studios/{studio_id}/sessions", status_code=201)
async def post_session(
    studio_id: Id, body: SessionIn, key: IdempotencyKey, request: Request
) -> Any:
    """Schedule a session of a studio with its host."""
    deps = _deps(request)
    if await deps.repo.studios.find_one({"_id": studio_id}) is None:
        raise NotFound(f"studio {studio_id} does not exist")

    async def compute() -> Any:
        doc = {
            "_id": body.session_id,
            "studio_id": studio_id,
            "host": body.host,
            "starts_at": body.starts_at,
            "product_ids": body.product_ids,
            "stats": {},
            "seen": {},
            "reach": {},
        }
        if not await insert_aggregate(deps.repo.sessions, doc, []):
            raise handlers.CampaignStateError(f"session {body.session_id} exists")
        return handlers.session_stats_view(doc)

    return await _once(request, f"session:{studio_id}", key, body.model_dump(mode="json"), compute)


@router.post("/studio-sessions/{session_id}/events")
async def post_viewer_event(session_id: Id, body: ViewerEventIn, request: Request) -> Any:
    """One viewer event (idempotent by its ``event_id``); returns the session's statistics."""
    deps = _deps(request)
    return await handlers.studio_event(
        deps.repo,
        deps.relay,
        deps.settings.topic,
        session_id,
        event_id=body.event_id,
        party_id=body.party_id,
        kind=body.kind,
        product_id=body.product_id,
        at=body.at,
        reach_time_zone=deps.settings.default_time_zone,
    )


@router.get("/studio-sessions/{session_id}")
async def get_session(session_id: Id, request: Request) -> Any:
    """A session's statistics and, from the signals, its concurrent viewers."""
    deps = _deps(request)
    doc = await deps.repo.sessions.find_one({"_id": session_id})
    if doc is None:
        raise NotFound(f"studio session {session_id} does not exist")
    view = handlers.session_stats_view(doc)
    live = await deps.repo.live.find_one({"_id": f"viewers:{session_id}"})
    view["signalled_concurrent"] = None if live is None else live["concurrent"]
    return view


@router.get("/studios/{studio_id}/reach")
async def studio_reach(
    studio_id: Id, request: Request, day: Annotated[str, Query(pattern=r"^[0-9]{8}$")]
) -> Any:
    """Distinct viewers of a studio's sessions on a local day (YYYYMMDD)."""
    parties: set[str] = set()
    async for s in _deps(request).repo.sessions.find({"studio_id": studio_id}, {"reach": 1}):
        parties.update(((s.get("reach") or {}).get(day) or {}).keys())
    return {"studio_id": studio_id, "day": day, "reach": len(parties)}


__all__ = ["new_id", "router"]
