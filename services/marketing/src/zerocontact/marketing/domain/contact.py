"""Whether a party may be contacted now on a channel: consent, do-not-contact, an open
complaint, quiet hours and frequency caps, in that order. Pure: ``now`` and the counts are passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

DEFAULT_TIME_ZONE = "Asia/Shanghai"
DEFAULT_QUIET_START = time(21, 0)
DEFAULT_QUIET_END = time(8, 0)


class Suppression(StrEnum):
    """Why a contact is not made (recorded with every suppression)."""

    NO_CONSENT = "no_consent"
    DO_NOT_CONTACT = "do_not_contact"
    QUIET_HOURS = "quiet_hours"
    FREQUENCY_CAP = "frequency_cap"
    UNSUITABLE = "unsuitable"
    HOLDOUT = "holdout"
    OPEN_COMPLAINT = "open_complaint"


@dataclass(frozen=True)
class Preferences:
    """A party's consent per channel, do-not-contact, quiet hours (local time), and until when
    outreach is paused by a complaint the party raised that is not resolved yet (aware)."""

    consented: frozenset[str] = frozenset()
    do_not_contact: bool = False
    paused_until: datetime | None = None
    quiet_start: time = DEFAULT_QUIET_START
    quiet_end: time = DEFAULT_QUIET_END
    time_zone: str = DEFAULT_TIME_ZONE


@dataclass(frozen=True)
class Caps:
    """Most contacts per party and channel per local day and per rolling 7 local days."""

    per_day: dict[str, int] = field(
        default_factory=lambda: {"app_push": 2, "sms": 1, "in_app": 5, "live_studio": 3}
    )
    per_week: dict[str, int] = field(
        default_factory=lambda: {"app_push": 5, "sms": 3, "in_app": 20, "live_studio": 10}
    )


def in_quiet_hours(prefs: Preferences, now: datetime) -> bool:
    """True when ``now`` (aware) falls in the party's quiet hours; a window may span midnight."""
    local = now.astimezone(ZoneInfo(prefs.time_zone)).time()
    start, end = prefs.quiet_start, prefs.quiet_end
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def local_day(now: datetime, time_zone: str) -> str:
    """The local calendar day of ``now`` as YYYYMMDD (the cap counters' key)."""
    return now.astimezone(ZoneInfo(time_zone)).strftime("%Y%m%d")


def week_days(now: datetime, time_zone: str) -> list[str]:
    """The 7 local days ending today (YYYYMMDD)."""
    today = now.astimezone(ZoneInfo(time_zone)).date()
    return [(today - timedelta(days=n)).strftime("%Y%m%d") for n in range(7)]


def decide(
    prefs: Preferences,
    channel: str,
    *,
    sent_by_day: dict[str, int],
    caps: Caps,
    now: datetime,
) -> Suppression | None:
    """None when the contact may go now; otherwise the first rule it would break.

    ``sent_by_day`` maps local days (YYYYMMDD) to contacts already made on ``channel``.
    """
    if prefs.do_not_contact:
        return Suppression.DO_NOT_CONTACT
    if prefs.paused_until is not None and now < prefs.paused_until:
        return Suppression.OPEN_COMPLAINT
    if channel not in prefs.consented:
        return Suppression.NO_CONSENT
    if in_quiet_hours(prefs, now):
        return Suppression.QUIET_HOURS
    today = local_day(now, prefs.time_zone)
    if sent_by_day.get(today, 0) >= caps.per_day.get(channel, 0):
        return Suppression.FREQUENCY_CAP
    week = sum(sent_by_day.get(day, 0) for day in week_days(now, prefs.time_zone))
    if week >= caps.per_week.get(channel, 0):
        return Suppression.FREQUENCY_CAP
    return None
