"""How pending events are laid out in an aggregate's document."""

from __future__ import annotations

from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.outbox import (
    OutboxEvent,
    outbox_document,
    outbox_fields,
    pending_events,
)


def _events(n: int) -> list[OutboxEvent]:
    return [
        OutboxEvent("t", "k", CloudEvent(id=f"e{i}", source="/s", type="t", subject="k", data=b""))
        for i in range(n)
    ]


def test_keys_sort_in_write_order_across_versions() -> None:
    keys = [k for v in (9, 10, 11) for k in outbox_document(_events(12), version=v)["_outbox"]]
    assert keys == sorted(keys)


def test_update_fields_are_dotted_and_raise_the_flag() -> None:
    fields = outbox_fields(_events(2), version=3)
    assert set(fields) == {
        "_outbox.v000000000003-0000",
        "_outbox.v000000000003-0001",
        "_outbox_pending",
        "_outbox_written",
    }
    assert fields["_outbox_pending"] is True
    # a new token per write: the relay's single clearing write is guarded by it
    assert fields["_outbox_written"] != outbox_fields(_events(2), version=3)["_outbox_written"]
    assert fields["_outbox.v000000000003-0001"]["id"] == "e1"


def test_no_events_no_flag() -> None:
    assert outbox_fields([], version=1) == {}
    document = outbox_document([], version=1)
    assert document["_outbox"] == {} and document["_outbox_pending"] is False


def test_pending_after_an_insert_is_what_it_inserted() -> None:
    document = outbox_document(_events(2), version=1)
    pending = pending_events(document)
    assert [e.event.id for e in pending.events] == ["e0", "e1"]
    assert pending.keys == tuple(sorted(document["_outbox"]))
    assert pending.token == document["_outbox_written"]


def test_pending_after_an_update_adds_its_events_after_the_uncleared_ones() -> None:
    # the pre-image still holds version 2's event (published or not, it was not cleared)
    before = outbox_document(_events(1), version=2)
    fields = outbox_fields(_events(2), version=3)
    pending = pending_events(before, fields)
    assert pending.keys == (
        "v000000000002-0000",
        "v000000000003-0000",
        "v000000000003-0001",
    )
    assert [e.event.id for e in pending.events] == ["e0", "e0", "e1"]
    # guarded by the token of this write, not the pre-image's
    assert pending.token == fields["_outbox_written"] != before["_outbox_written"]


def test_an_update_without_events_keeps_the_pending_and_their_token() -> None:
    before = outbox_document(_events(1), version=1)
    pending = pending_events(before, {"state": "X", **outbox_fields([], version=2)})
    assert pending.keys == ("v000000000001-0000",)
    assert pending.token == before["_outbox_written"]
