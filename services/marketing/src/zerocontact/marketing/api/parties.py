"""Routes of parties: consent and preferences, risk tolerance, the 360° profile, the
suppressions, and payee links."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import Field, field_validator

from zerocontact.marketing import handlers
from zerocontact.marketing.api.deps import (
    HHMM,
    Body,
    ChannelName,
    Id,
    back_office_router,
    deps_of,
    once,
    public,
)
from zerocontact.platform.deps import IdempotencyKey

router = back_office_router()


class PreferencesIn(Body):
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


class RiskToleranceIn(Body):
    grade: int = Field(ge=1, le=5, description="C1..C5 from the suitability questionnaire")


class PayeeLinkIn(Body):
    employer_id: str = Field(min_length=1, max_length=64)
    card_masked: str = Field(pattern=r"^[0-9]{6}\*{2,9}[0-9]{4}$")
    party_id: str = Field(min_length=1, max_length=64)


@router.put("/parties/{party_id}/preferences")
async def put_preferences(
    party_id: Id, body: PreferencesIn, key: IdempotencyKey, request: Request
) -> Any:
    """Consent per channel, do-not-contact and quiet hours of a party."""
    deps = deps_of(request)

    async def compute() -> Any:
        prefs = {
            "consented": list(body.consented_channels),
            "do_not_contact": body.do_not_contact,
            "quiet_start": body.quiet_start,
            "quiet_end": body.quiet_end,
            "time_zone": body.time_zone,
        }
        await handlers.set_preferences(
            deps.repo,
            relay=deps.relay,
            topic=deps.settings.topic,
            party_id=party_id,
            prefs=prefs,
            now=deps.clock(),
        )
        return {"party_id": party_id, **prefs}

    return await once(request, f"prefs:{party_id}", key, body.model_dump(mode="json"), compute)


@router.post("/parties/{party_id}/risk-tolerance")
async def post_risk_tolerance(
    party_id: Id, body: RiskToleranceIn, key: IdempotencyKey, request: Request
) -> Any:
    """Record a suitability questionnaire's grade (the profile takes it from the event)."""
    deps = deps_of(request)

    async def compute() -> Any:
        await handlers.assess_risk_tolerance(
            deps.repo,
            relay=deps.relay,
            topic=deps.settings.topic,
            party_id=party_id,
            grade=body.grade,
            now=deps.clock(),
        )
        return {"party_id": party_id, "grade": body.grade}

    return await once(request, f"risk:{party_id}", key, body.model_dump(), compute)


@router.get("/parties/{party_id}/profile")
async def get_profile(party_id: Id, request: Request) -> Any:
    """The 360° profile (a projection of events) with the party's preferences."""
    deps = deps_of(request)
    return await handlers.profile_view(
        deps.repo, party_id, now=deps.clock(), time_zone=deps.settings.default_time_zone
    )


@router.get("/parties/{party_id}/suppressions")
async def get_suppressions(party_id: Id, request: Request) -> Any:
    """Contacts not made to a party, and why."""
    return [public(d) for d in await handlers.suppressions_of(deps_of(request).repo, party_id)]


@router.put("/payee-links")
async def put_payee_link(body: PayeeLinkIn, key: IdempotencyKey, request: Request) -> Any:
    """Link an employer's payee (masked card, as in SalaryPaid) to a party (interim: payroll's
    events carry no party id; see docs/marketing.md)."""

    async def compute() -> Any:
        await handlers.link_payee(
            deps_of(request).repo,
            employer_id=body.employer_id,
            card_masked=body.card_masked,
            party_id=body.party_id,
        )
        return body.model_dump()

    return await once(request, "payee", key, body.model_dump(), compute)
