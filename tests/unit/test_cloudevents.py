"""CloudEvents binary-mode headers: what we write is what we read, and bad records are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version

import pytest

from zerocontact.platform.kafka.cloudevents import (
    CloudEvent,
    MalformedEvent,
    dataschema_for,
    parse_dataschema,
)
from zerocontact.platform.outbox import protobuf_event
from zerocontact.skeleton.v1.events_pb2 import SkeletonEvent


def _event(**overrides: object) -> CloudEvent:
    fields: dict[str, object] = {
        "id": "0190c4c2-0000-7000-8000-000000000001",
        "source": "/zerocontact/test",
        "type": "zerocontact.test.v1.Thing",
        "subject": "party-1",
        "data": b"\x08\x01",
        "time": datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC),
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    return CloudEvent(**(fields | overrides))  # type: ignore[arg-type]


def test_headers_round_trip() -> None:
    event = _event()
    headers = event.headers()
    names = [name for name, _ in headers]
    assert names[:7] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "content-type",
    ]
    assert dict(headers)["ce_time"] == b"2026-11-29T12:00:00.123456Z"
    assert dict(headers)["content-type"] == b"application/protobuf"
    assert CloudEvent.from_record(headers, event.data) == event


def test_no_traceparent_header_when_absent() -> None:
    assert "traceparent" not in dict(_event(traceparent=None).headers())


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"x", "missing CloudEvents headers"),
        ([("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s")], b"x", "ce_type"),
        (
            [("ce_specversion", b"0.3"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")],
            b"x",
            "unsupported ce_specversion",
        ),
        (
            [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")],
            None,
            "no value",
        ),
        (
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_type", b"t"),
                ("ce_time", b"yesterday"),
            ],
            b"x",
            "bad ce_time",
        ),
        ([("ce_id", b"\xff\xfe")], b"x", "not UTF-8"),
    ],
)
def test_malformed_records_are_refused(
    headers: list[tuple[str, bytes]], value: bytes | None, reason: str
) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        CloudEvent.from_record(headers, value)


def test_dataschema_names_the_message_and_the_contracts_release() -> None:
    schema = dataschema_for("zerocontact.loan.v1.LoanEvent")
    release = version("zerocontact-contracts")
    assert schema == f"urn:zerocontact:contracts:{release}:zerocontact.loan.v1.LoanEvent"
    assert parse_dataschema(schema) == (release, "zerocontact.loan.v1.LoanEvent")
    event = _event(dataschema=schema)
    assert dict(event.headers())["ce_dataschema"] == schema.encode()
    assert CloudEvent.from_record(event.headers(), event.data).dataschema == schema


def test_a_record_without_dataschema_still_reads() -> None:
    """Records written before ce_dataschema existed stay readable (replays, DLQ)."""
    event = _event()
    assert "ce_dataschema" not in dict(event.headers())
    assert CloudEvent.from_record(event.headers(), event.data).dataschema is None


def test_outbox_events_carry_the_dataschema_of_their_wrapper() -> None:
    wrapper = SkeletonEvent()
    wrapper.account_opened.account_id = "acc-1"
    item = protobuf_event(wrapper, topic="skeleton.events.v1", key="acc-1", source="/s")
    assert item.event.dataschema == dataschema_for("zerocontact.skeleton.v1.SkeletonEvent")


@pytest.mark.parametrize(
    "bad", ["https://example.com/x", "urn:zerocontact:contracts:", "urn:zerocontact:contracts:1.0"]
)
def test_foreign_dataschemas_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="dataschema"):
        parse_dataschema(bad)
