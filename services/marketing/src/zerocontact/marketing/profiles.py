"""The 360° profile: a projection of identity, loan, payroll, marketing and engagement events.

One document per party (``_id`` = party id), changed only by consumed events through
``apply_once`` (idempotent by ``ce_id``). Event counts are kept per local day
(``counts.<kind>.<YYYYMMDD>``) so segment rules can ask for windowed counts; salary inflows per
local month (``salary.<YYYYMM>``, minor units of CNY).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from zerocontact.marketing.domain.segments import Facts
from zerocontact.platform.mongo import Document

ACTIVE_LOAN_STATES = ("accepted", "disbursed")


def day_key(moment: datetime, time_zone: str) -> str:
    """The local day (YYYYMMDD) of ``moment``."""
    return moment.astimezone(ZoneInfo(time_zone)).strftime("%Y%m%d")


def month_key(moment: datetime, time_zone: str) -> str:
    """The local month (YYYYMM) of ``moment``."""
    return moment.astimezone(ZoneInfo(time_zone)).strftime("%Y%m")


def count_update(kind: str, moment: datetime, time_zone: str) -> dict[str, Any]:
    """The ``$inc`` that counts one event of ``kind`` on its local day."""
    return {f"counts.{kind}.{day_key(moment, time_zone)}": 1}


def paused_until(profile: Document | None) -> datetime | None:
    """Until when outreach to the party is paused by its open complaints (the latest pause of
    any complaint not resolved yet; None when there is none)."""
    pauses = [
        until if until.tzinfo else until.replace(tzinfo=UTC)
        for until in ((profile or {}).get("complaints") or {}).values()
        if isinstance(until, datetime)
    ]
    return max(pauses, default=None)


def facts(profile: Document, *, now: datetime, time_zone: str) -> Facts:
    """What segment and trigger rules see of a profile document."""
    loans: dict[str, Document] = profile.get("loans") or {}
    active = [loan for loan in loans.values() if loan.get("state") in ACTIVE_LOAN_STATES]
    limits = sum(
        int(loan.get("limit_minor", 0))
        for loan in loans.values()
        if loan.get("state") in ("approved", *ACTIVE_LOAN_STATES)
    )
    salary: dict[str, Any] = profile.get("salary") or {}
    attributes: dict[str, int | str | None] = {
        "kyc_level": profile.get("kyc_level"),
        "risk_grade": profile.get("risk_grade"),
        "salary_month_minor": int(salary.get(month_key(now, time_zone), 0)),
        "salary_total_minor": int(profile.get("salary_total_minor", 0)),
        "active_loans": len(active),
        "credit_limit_minor": limits,
        "engagement_milli": profile.get("engagement_milli"),
        "birth_year": profile.get("birth_year"),
        "party_kind": profile.get("party_kind"),
    }
    counts = {
        kind: {d: int(n) for d, n in days.items()}
        for kind, days in (profile.get("counts") or {}).items()
    }
    return Facts(attributes=attributes, counts=counts)


def view(
    profile: Document, preferences: Document | None, *, now: datetime, time_zone: str
) -> Document:
    """The profile as the API shows it (no outbox or bookkeeping fields)."""
    f = facts(profile, now=now, time_zone=time_zone)
    prefs = preferences or {}
    return {
        "party_id": profile["_id"],
        "party_kind": profile.get("party_kind"),
        "kyc_level": profile.get("kyc_level"),
        "risk_grade": profile.get("risk_grade"),
        "loans": profile.get("loans") or {},
        "salary_by_month_minor": {k: int(v) for k, v in (profile.get("salary") or {}).items()},
        "salary_total_minor": int(profile.get("salary_total_minor", 0)),
        "active_loans": f.attributes["active_loans"],
        "credit_limit_minor": f.attributes["credit_limit_minor"],
        "engagement_milli": profile.get("engagement_milli"),
        "engagement_as_of": profile.get("engagement_at"),
        "campaign_interactions": profile.get("interactions") or {},
        "segments": sorted((profile.get("segments") or {}).keys()),
        # Open complaints raised with the assistant pause every offer until then (or resolved).
        "outreach_paused_until": paused_until(profile),
        "counts": f.counts,
        "preferences": {
            "consented_channels": prefs.get("consented", []),
            "do_not_contact": prefs.get("do_not_contact", False),
            "quiet_start": prefs.get("quiet_start"),
            "quiet_end": prefs.get("quiet_end"),
            "time_zone": prefs.get("time_zone"),
        },
    }
