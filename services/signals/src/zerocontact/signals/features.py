"""The feature registry: every risk feature defined once, and the pure arithmetic behind them.

A feature has one definition — its name, the event it comes from, the key it is aggregated
under, its window and how long its state is kept (Feast's stream feature views are the model).
The Faust tables in :mod:`zerocontact.signals.tables` are built from these definitions, and the
scorecard reads features by the same names, so a feature cannot be computed two ways.

Windowed counts are summed at read time from *tumbling buckets*: a feature's window is
``window / bucket`` buckets of ``bucket`` width (15 min for the 1 h windows, 4 h for the 24 h
windows), so the sum covers between ``window - bucket`` and ``window`` of history, like a
hopping window of size ``window`` and step ``bucket``. Every windowed feature of one key kind
lives in that kind's *activity* table (``ACTIVITY_BUCKET`` = 4 h tumbling buckets): a bucket's
value holds, per measure, one count per 15-min slot (``SLOTS``), the member list of a distinct
count, and the ids of the applications counted there (the redelivery guard). The 1 h and 24 h
windows of one measure read the same counts, so an event writes its key's bucket once however
many features it feeds (docs/signals.md).

No Faust, no I/O here: this module is unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Final, TypedDict

__all__ = [
    "FEATURES",
    "PARTY_FEATURES",
    "FeatureDefinition",
    "FeatureKey",
    "RepaymentHistory",
    "RevenueHistory",
    "bucket_starts",
    "counted",
    "distinct_union",
    "feature",
    "record_repayment",
    "record_revenue",
    "revenue_change_pct",
]

LOAN_APPLICATION = "loan.events.v1:LoanApplicationSubmitted"
REPAYMENT = "loan.events.v1:RepaymentReceived"
OVERDUE = "loan.events.v1:LoanOverdue"
REVENUE = "loan.events.v1:MerchantRevenueReported"
AUTH_FAILED = "identity.events.v1:AuthenticationFailed"


class FeatureKey(StrEnum):
    """What a feature is aggregated under (the key of its table)."""

    PARTY = "party_id"
    DEVICE = "device_id"
    SOURCE_ADDRESS = "source_address"


class Aggregation(StrEnum):
    """How events become a feature value."""

    COUNT = "count"  # events in the window
    DISTINCT_PARTIES = "distinct_parties"  # distinct party ids in the window
    REPAYMENT_HISTORY = "repayment_history"  # on-time / late counts, worst lateness
    REVENUE_TREND = "revenue_trend"  # latest period against the mean of the earlier ones


@dataclass(frozen=True)
class FeatureDefinition:
    """One feature: where it comes from, what it is keyed by, its window and state lifetime."""

    name: str
    description: str
    sources: tuple[str, ...]
    key: FeatureKey
    aggregation: Aggregation
    window: timedelta | None = None  # None: the whole history the table keeps
    bucket: timedelta | None = None  # tumbling bucket width of a windowed feature
    expires: timedelta | None = None  # how long a bucket is kept (None: not windowed)
    # What the key's activity table counts for it (APPLICATIONS, FAILED_AUTHENTICATIONS,
    # PARTIES); features of one key with the same measure share its counts.
    measure: str = ""

    def __post_init__(self) -> None:
        if (self.window is None) != (self.bucket is None):
            raise ValueError(f"{self.name}: window and bucket go together")
        if self.window is not None and self.bucket is not None:
            if self.window % self.bucket:
                raise ValueError(f"{self.name}: the window must be a whole number of buckets")
            if self.expires is None or self.expires < self.window + self.bucket:
                raise ValueError(f"{self.name}: buckets must outlive the window")
            if self.bucket not in (SLOT, ACTIVITY_BUCKET):
                raise ValueError(f"{self.name}: the activity tables keep 15 min and 4 h buckets")
            if self.expires > ACTIVITY_EXPIRES:
                raise ValueError(f"{self.name}: the activity tables keep buckets 32 h")
            if self.measure not in MEASURES:
                raise ValueError(f"{self.name}: measure must be one of {MEASURES}")

    @property
    def buckets(self) -> int:
        """How many buckets one window spans (1 for a feature without a window)."""
        if self.window is None or self.bucket is None:
            return 1
        return self.window // self.bucket

    @property
    def window_label(self) -> str:
        """The window as FeatureValue.window spells it: "1h", "24h", or "" for none."""
        if self.window is None:
            return ""
        hours, rest = divmod(int(self.window.total_seconds()), 3600)
        return f"{hours}h" if not rest else f"{int(self.window.total_seconds()) // 60}m"


HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(hours=24)
# Few buckets per window: an assessment reads every bucket of ~10 windows (see docs/signals.md).
QUARTER_HOUR: Final = timedelta(minutes=15)
FOUR_HOURS: Final = timedelta(hours=4)
# The activity tables: 4 h tumbling buckets of 16 slots of 15 min, kept 32 h (a 24 h window
# plus two buckets, as every windowed feature asks).
SLOT: Final = QUARTER_HOUR
ACTIVITY_BUCKET: Final = FOUR_HOURS
ACTIVITY_EXPIRES: Final = DAY + 2 * FOUR_HOURS
SLOTS: Final = ACTIVITY_BUCKET // SLOT
APPLICATIONS: Final = "applications"
FAILED_AUTHENTICATIONS: Final = "failed_authentications"
PARTIES: Final = "parties"
MEASURES: Final = (APPLICATIONS, FAILED_AUTHENTICATIONS, PARTIES)
IDS: Final = "ids"  # the application ids a bucket has counted (not a measure)


def _velocity(
    name: str, key: FeatureKey, window: timedelta, bucket: timedelta
) -> FeatureDefinition:
    return FeatureDefinition(
        name=name,
        description=f"loan applications per {key.value.removesuffix('_id')} in {window}",
        sources=(LOAN_APPLICATION,),
        key=key,
        aggregation=Aggregation.COUNT,
        window=window,
        bucket=bucket,
        expires=window + 2 * bucket,
        measure=APPLICATIONS,
    )


FEATURES: Final[tuple[FeatureDefinition, ...]] = (
    _velocity("applications_per_party_1h", FeatureKey.PARTY, HOUR, QUARTER_HOUR),
    _velocity("applications_per_party_24h", FeatureKey.PARTY, DAY, FOUR_HOURS),
    _velocity("applications_per_device_1h", FeatureKey.DEVICE, HOUR, QUARTER_HOUR),
    _velocity("applications_per_device_24h", FeatureKey.DEVICE, DAY, FOUR_HOURS),
    _velocity("applications_per_source_address_1h", FeatureKey.SOURCE_ADDRESS, HOUR, QUARTER_HOUR),
    _velocity("applications_per_source_address_24h", FeatureKey.SOURCE_ADDRESS, DAY, FOUR_HOURS),
    FeatureDefinition(
        name="parties_per_device_24h",
        description="distinct parties that applied from one device in 24 h",
        sources=(LOAN_APPLICATION,),
        key=FeatureKey.DEVICE,
        aggregation=Aggregation.DISTINCT_PARTIES,
        window=DAY,
        bucket=FOUR_HOURS,
        expires=DAY + 2 * FOUR_HOURS,
        measure=PARTIES,
    ),
    FeatureDefinition(
        name="failed_authentications_1h",
        description="failed authentications of a party in 1 h",
        sources=(AUTH_FAILED,),
        key=FeatureKey.PARTY,
        aggregation=Aggregation.COUNT,
        window=HOUR,
        bucket=QUARTER_HOUR,
        expires=HOUR + 2 * QUARTER_HOUR,
        measure=FAILED_AUTHENTICATIONS,
    ),
    FeatureDefinition(
        name="repayment_history",
        description="repayments on time and late, and the worst lateness, over the whole history",
        sources=(REPAYMENT, OVERDUE),
        key=FeatureKey.PARTY,
        aggregation=Aggregation.REPAYMENT_HISTORY,
    ),
    FeatureDefinition(
        name="merchant_revenue_trend",
        description="latest reported sales period against the mean of the earlier ones",
        sources=(REVENUE,),
        key=FeatureKey.PARTY,
        aggregation=Aggregation.REVENUE_TREND,
    ),
)

_BY_NAME: Final = {definition.name: definition for definition in FEATURES}
PARTY_FEATURES: Final = tuple(d for d in FEATURES if d.key is FeatureKey.PARTY)


def feature(name: str) -> FeatureDefinition:
    """The definition named ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


def bucket_starts(definition: FeatureDefinition, at: float) -> list[float]:
    """Epoch seconds inside each bucket of the window that ends at ``at``, newest first."""
    if definition.bucket is None:
        return [at]
    step = definition.bucket.total_seconds()
    return [at - i * step for i in range(definition.buckets)]


def slot_of(at: float, bucket_start: float) -> int:
    """The 15-min slot of ``at`` inside the activity bucket starting at ``bucket_start``."""
    return min(SLOTS - 1, max(0, int((at - bucket_start) // SLOT.total_seconds())))


def window_part(
    definition: FeatureDefinition, value: Mapping[str, object] | None, slot: int
) -> int:
    """What one bucket ``value`` adds to a count feature's window sum.

    A 15-min feature reads one slot's count; a 4 h feature the bucket's total.
    """
    counts = value.get(definition.measure) if value else None
    if not isinstance(counts, list):
        return 0
    if definition.bucket == ACTIVITY_BUCKET:
        return sum(_int(c) for c in counts)
    return _int(counts[slot]) if slot < len(counts) else 0


def members_of(value: Mapping[str, object] | None, measure: str = PARTIES) -> list[str]:
    """The member list a bucket ``value`` keeps for a distinct count."""
    found = value.get(measure) if value else None
    return [str(m) for m in found] if isinstance(found, list) else []


def has_id(value: Mapping[str, object] | None, event_id: str) -> bool:
    """True when the bucket ``value`` has counted the application ``event_id``."""
    ids = value.get(IDS) if value else None
    return isinstance(ids, list) and event_id in ids


def counted(
    value: Mapping[str, object] | None,
    slot: int,
    *,
    count: str | None = None,
    member: str | None = None,
    event_id: str | None = None,
    member_cap: int,
    ids_cap: int,
) -> dict[str, object] | None:
    """The bucket ``value`` after one event, or None when it changes nothing.

    ``count`` adds one to that measure's slot, ``member`` joins the PARTIES list (up to
    ``member_cap``), ``event_id`` joins the counted ids (the newest ``ids_cap`` are kept).
    An ``event_id`` the bucket holds already was counted there: the event changes nothing (a
    redelivery of a record whose bucket write reached the changelog before its offset was
    committed; the guard rides in the value it guards).
    """
    if event_id is not None and has_id(value, event_id):
        return None
    updated: dict[str, object] = dict(value or {})
    changed = False
    if count is not None:
        raw = updated.get(count)
        counts = [_int(c) for c in raw] if isinstance(raw, list) else []
        counts.extend([0] * (SLOTS - len(counts)))
        counts[slot] += 1
        updated[count] = counts
        changed = True
    if member is not None:
        members = members_of(updated)
        if member not in members and len(members) < member_cap:
            updated[PARTIES] = sorted([*members, member])
            changed = True
    if event_id is not None:
        raw_ids = updated.get(IDS)
        ids = [str(i) for i in raw_ids] if isinstance(raw_ids, list) else []
        updated[IDS] = [*ids, event_id][-ids_cap:]
        changed = True
    return updated if changed else None


def distinct_union(buckets: Iterable[Sequence[str] | None], *, cap: int) -> int:
    """Distinct members over several buckets' member lists, counted up to ``cap``."""
    seen: set[str] = set()
    for members in buckets:
        if members:
            seen.update(members)
            if len(seen) >= cap:
                return cap
    return len(seen)


class RepaymentHistory(TypedDict):
    """A party's repayment behaviour as the table keeps it (JSON-serializable)."""

    on_time: int
    late: int
    max_days_late: int
    recent_ids: list[str]  # repayment ids already counted, newest last (redelivery guard)


RECENT_REPAYMENT_IDS: Final = 64


def empty_repayments() -> RepaymentHistory:
    """History of a party that has not repaid anything yet."""
    return {"on_time": 0, "late": 0, "max_days_late": 0, "recent_ids": []}


def record_repayment(
    history: Mapping[str, object] | None, *, repayment_id: str, days_late: int
) -> RepaymentHistory | None:
    """The history after one repayment, or None when this repayment was already counted."""
    current = _repayments(history)
    if repayment_id and repayment_id in current["recent_ids"]:
        return None
    late = days_late > 0
    recent = (
        [*current["recent_ids"], repayment_id][-RECENT_REPAYMENT_IDS:]
        if repayment_id
        else current["recent_ids"]
    )
    return {
        "on_time": current["on_time"] + (0 if late else 1),
        "late": current["late"] + (1 if late else 0),
        "max_days_late": max(current["max_days_late"], max(days_late, 0)),
        "recent_ids": recent,
    }


def record_overdue(
    history: Mapping[str, object] | None, *, days_past_due: int
) -> RepaymentHistory | None:
    """The history after an overdue notice, or None when it changes nothing."""
    current = _repayments(history)
    if days_past_due <= current["max_days_late"]:
        return None
    return {**current, "max_days_late": days_past_due}


def _repayments(history: Mapping[str, object] | None) -> RepaymentHistory:
    if not history:
        return empty_repayments()
    ids = history.get("recent_ids")
    return {
        "on_time": _int(history.get("on_time")),
        "late": _int(history.get("late")),
        "max_days_late": _int(history.get("max_days_late")),
        "recent_ids": [str(i) for i in ids] if isinstance(ids, list) else [],
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class RevenueHistory(TypedDict):
    """A merchant's latest sales reports: ``[period_start_epoch_s, minor_units, report_id]``."""

    currency: str
    reports: list[list[object]]


KEPT_REVENUE_REPORTS: Final = 6


def record_revenue(
    history: Mapping[str, object] | None,
    *,
    report_id: str,
    period_start: int,
    currency: str,
    minor_units: int,
) -> RevenueHistory | None:
    """Keep the latest reports by period; None when the report was already kept.

    A report in another currency than the kept ones restarts the history: a trend across
    currencies would compare numbers that are not comparable.
    """
    kept_currency = str(history.get("currency", "")) if history else ""
    raw = history.get("reports") if history else None
    reports = [list(r) for r in raw] if isinstance(raw, list) and kept_currency == currency else []
    if any(r[2] == report_id for r in reports):
        return None
    # One report per period: a correction of a period replaces the earlier figure.
    reports = [r for r in reports if r[0] != period_start]
    reports.append([period_start, minor_units, report_id])
    reports.sort(key=lambda r: (_int(r[0]), str(r[2])))
    return {"currency": currency, "reports": reports[-KEPT_REVENUE_REPORTS:]}


def revenue_change_pct(history: Mapping[str, object] | None) -> tuple[int, Decimal]:
    """(reports kept, change of the latest period against the mean of the earlier, in %).

    The change is 0 with fewer than two reports, rounded to whole percent (half to even).
    """
    raw = history.get("reports") if history else None
    reports = raw if isinstance(raw, list) else []
    if len(reports) < 2:
        return len(reports), Decimal(0)
    amounts = [Decimal(_int(r[1])) for r in reports]
    earlier = sum(amounts[:-1], Decimal(0)) / (len(amounts) - 1)
    if earlier == 0:
        return len(reports), Decimal(0)
    change = (amounts[-1] - earlier) / earlier * 100
    return len(reports), change.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
