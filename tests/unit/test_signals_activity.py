"""The activity-bucket arithmetic: one bucket value serves the 1 h and 24 h windows of a key."""

from __future__ import annotations

from zerocontact.signals import features
from zerocontact.signals.features import (
    APPLICATIONS,
    FAILED_AUTHENTICATIONS,
    IDS,
    PARTIES,
    SLOTS,
    counted,
    feature,
    has_id,
    members_of,
    slot_of,
    window_part,
)

BUCKET_S = features.ACTIVITY_BUCKET.total_seconds()
SLOT_S = features.SLOT.total_seconds()


def _count(value: dict[str, object] | None, slot: int, **kwargs: str) -> dict[str, object]:
    updated = counted(value, slot, member_cap=3, ids_cap=2, **kwargs)
    assert updated is not None
    return updated


def test_slots_split_a_bucket_into_quarter_hours() -> None:
    start = 10 * BUCKET_S
    assert SLOTS == 16
    assert slot_of(start, start) == 0
    assert slot_of(start + SLOT_S - 0.001, start) == 0
    assert slot_of(start + SLOT_S, start) == 1
    assert slot_of(start + BUCKET_S - 0.001, start) == SLOTS - 1


def test_one_count_serves_the_slot_and_the_bucket_total() -> None:
    value = _count(None, 3, count=APPLICATIONS)
    value = _count(value, 3, count=APPLICATIONS)
    value = _count(value, 9, count=APPLICATIONS)
    hourly, daily = feature("applications_per_party_1h"), feature("applications_per_party_24h")
    assert window_part(hourly, value, 3) == 2
    assert window_part(hourly, value, 9) == 1
    assert window_part(hourly, value, 4) == 0
    assert window_part(daily, value, 0) == 3  # the 4 h feature reads the bucket's total
    # Another measure of the same key is counted apart.
    logins = feature("failed_authentications_1h")
    assert window_part(logins, value, 3) == 0
    value = _count(value, 3, count=FAILED_AUTHENTICATIONS)
    assert window_part(logins, value, 3) == 1
    assert window_part(hourly, value, 3) == 2
    assert window_part(hourly, None, 3) == 0


def test_members_are_distinct_and_capped() -> None:
    value = _count(None, 0, count=APPLICATIONS, member="p2")
    value = _count(value, 0, count=APPLICATIONS, member="p1")
    value = _count(value, 0, count=APPLICATIONS, member="p1")
    assert members_of(value) == ["p1", "p2"]
    value = _count(value, 0, member="p3")
    assert counted(value, 0, member="p4", member_cap=3, ids_cap=2) is None  # at the cap
    assert counted(value, 0, member="p3", member_cap=3, ids_cap=2) is None  # already there
    assert members_of(value, PARTIES) == ["p1", "p2", "p3"]


def test_the_id_guard_keeps_the_newest_ids_and_rides_in_the_same_value() -> None:
    value = _count(None, 0, count=APPLICATIONS, event_id="e1")
    assert has_id(value, "e1") and not has_id(value, "e2") and not has_id(None, "e1")
    assert counted(value, 0, event_id="e1", member_cap=3, ids_cap=2) is None  # nothing new
    value = _count(value, 0, event_id="e2")
    value = _count(value, 0, event_id="e3")
    assert value[IDS] == ["e2", "e3"]  # capped: the oldest goes
    assert window_part(feature("applications_per_party_1h"), value, 0) == 1


def test_an_id_the_bucket_holds_counts_nothing_again() -> None:
    # The device stage counted a redelivered record of its topic twice: the id it keeps in
    # the counted bucket now stops the second count (and the member and the id stay as they are).
    value = _count(None, 2, count=APPLICATIONS, member="p1", event_id="e1")
    for member in ("p1", "p2"):
        again = counted(
            value, 2, count=APPLICATIONS, member=member, event_id="e1", member_cap=3, ids_cap=2
        )
        assert again is None
    value = _count(value, 2, count=APPLICATIONS, member="p1", event_id="e2")
    assert window_part(feature("applications_per_device_1h"), value, 2) == 2
    assert members_of(value) == ["p1"]
