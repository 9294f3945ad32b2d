"""UUIDv7 ids: unique, time-ordered, and carrying their creation time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from zerocontact.platform.ids import id_time, new_id


def test_new_id_is_a_canonical_uuid7_string() -> None:
    value = new_id()
    assert len(value) == 36
    assert str(uuid.UUID(value)) == value
    assert uuid.UUID(value).version == 7


def test_ids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [new_id() for _ in range(50_000)]  # tens of ids per millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_id_time_is_the_creation_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(milliseconds=1)
    value = new_id()
    after = datetime.now(UTC) + timedelta(milliseconds=1)
    created = id_time(value)
    assert created.tzinfo is UTC
    assert before <= created <= after
    assert created.microsecond % 1000 == 0  # millisecond precision, exactly


def test_id_time_of_a_known_id() -> None:
    # the first 48 bits are Unix milliseconds: 0x018f4df73e00 = 1_715_000_000_000
    value = "018f4df7-3e00-7000-8000-000000000000"
    assert id_time(value) == datetime(2024, 5, 6, 12, 53, 20, tzinfo=UTC)


@pytest.mark.parametrize("value", [str(uuid.uuid4()), "not-a-uuid"])
def test_id_time_refuses_other_values(value: str) -> None:
    with pytest.raises(ValueError):
        id_time(value)
