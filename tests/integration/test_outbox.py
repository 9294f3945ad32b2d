"""The outbox relay on real engines: order per aggregate, crash recovery by sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.harness import Engines
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.outbox import (
    ConcurrentUpdate,
    OutboxEvent,
    OutboxRelay,
    ensure_outbox_index,
    outbox_document,
    outbox_fields,
    pending_events,
    write_aggregate,
)


def _event(topic: str, key: str, n: int) -> OutboxEvent:
    return OutboxEvent(
        topic=topic,
        key=key,
        event=CloudEvent(
            id=f"{key}-{n}", source="/test", type="test.Event", subject=key, data=str(n).encode()
        ),
    )


async def _consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < count:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    got.extend((r.key, r.value) for r in batch)
    finally:
        await consumer.stop()
    return got


async def test_sweep_publishes_what_a_crash_left_behind_in_write_order(
    engines: Engines,
    mongo_db: AsyncDatabase[dict[str, Any]],
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("outbox", partitions=3)
    aggregates = mongo_db["aggregates"]
    await ensure_outbox_index(aggregates)
    # Three aggregates written, then "crashed" before any relay was nudged.
    for agg in ("a", "b", "c"):
        await aggregates.insert_one(
            {
                "_id": agg,
                "version": 1,
                **outbox_document([_event(topic, agg, 0), _event(topic, agg, 1)], version=1),
            }
        )
        for version in range(2, 6):
            await aggregates.update_one(
                {"_id": agg},
                {
                    "$set": {
                        "version": version,
                        **outbox_fields([_event(topic, agg, version)], version=version),
                    }
                },
            )
    assert await aggregates.count_documents({"_outbox_pending": True}) == 3

    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="outbox-test")
    await publisher.start(wait=True)
    try:
        relay = OutboxRelay(publisher=publisher, collections=[aggregates], sweep_interval_s=60)
        assert await relay.sweep() == 18
        assert await relay.sweep() == 0  # nothing is published twice once marked
    finally:
        await publisher.stop()

    records = await _consume(engines.kafka_bootstrap, topic, 18)
    for agg in ("a", "b", "c"):
        values = [int(v) for k, v in records if k == agg.encode()]
        assert values == [0, 1, 2, 3, 4, 5]
    assert await aggregates.count_documents({"_outbox_pending": True}) == 0
    assert await aggregates.count_documents({"_outbox": {}}) == 3


async def test_nudged_relay_publishes_promptly(
    engines: Engines,
    mongo_db: AsyncDatabase[dict[str, Any]],
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("outbox-nudge", partitions=1)
    aggregates = mongo_db["aggregates"]
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="outbox-test")
    await publisher.start(wait=True)
    relay = OutboxRelay(publisher=publisher, collections=[aggregates], sweep_interval_s=3600)
    await relay.start()
    try:
        await relay.sweep()  # the start-up sweep is done; from here only nudges publish
        await aggregates.insert_one(
            {"_id": "x", "version": 1, **outbox_document([_event(topic, "x", 7)], version=1)}
        )
        relay.nudge("aggregates", "x")
        for _ in range(200):  # published and cleared
            if (await aggregates.find_one({"_id": "x"}) or {}).get("_outbox") == {}:
                break
            await asyncio.sleep(0.05)
        # and a nudge that carries what its write left pending (no read back)
        pending = await write_aggregate(
            aggregates,
            {"_id": "x", "version": 1},
            {"$set": {"version": 2, **outbox_fields([_event(topic, "x", 8)], version=2)}},
        )
        relay.nudge("aggregates", "x", pending)
        records = await _consume(engines.kafka_bootstrap, topic, 2)
    finally:
        await relay.stop()
        await publisher.stop()
    assert records == [(b"x", b"7"), (b"x", b"8")]


class _WritesDuringPublish(EventPublisher):
    """A real publisher that, while the relay publishes, lets the aggregate take a new event
    (the race between the relay's read and its clearing write, made to happen every time)."""

    def __init__(self, *, during: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._during: Callable[[], Awaitable[None]] | None = during

    async def publish_in_order(self, items: Any) -> Any:
        result = await super().publish_in_order(items)
        if self._during is not None:
            during, self._during = self._during, None
            await during()
        return result


async def test_an_event_written_while_the_relay_publishes_is_not_lost(
    engines: Engines,
    mongo_db: AsyncDatabase[dict[str, Any]],
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("outbox-race", partitions=1)
    aggregates = mongo_db["aggregates"]
    await aggregates.insert_one(
        {"_id": "r", "version": 1, **outbox_document([_event(topic, "r", 1)], version=1)}
    )

    async def write_version_2() -> None:
        await aggregates.update_one(
            {"_id": "r"},
            {"$set": {"version": 2, **outbox_fields([_event(topic, "r", 2)], version=2)}},
        )

    publisher = _WritesDuringPublish(
        during=write_version_2, bootstrap_servers=engines.kafka_bootstrap, client_id="outbox-race"
    )
    await publisher.start(wait=True)
    try:
        relay = OutboxRelay(publisher=publisher, collections=[aggregates], sweep_interval_s=60)
        assert await relay.flush(aggregates, "r") == 1
        # the guarded single write missed (a write came between): event 2 is still pending
        doc = await aggregates.find_one({"_id": "r"})
        assert doc is not None and doc["_outbox_pending"] is True and len(doc["_outbox"]) == 1
        assert await relay.flush(aggregates, "r") == 1  # and now one write clears it
        doc = await aggregates.find_one({"_id": "r"})
        assert doc is not None and doc["_outbox_pending"] is False and doc["_outbox"] == {}
    finally:
        await publisher.stop()
    assert await _consume(engines.kafka_bootstrap, topic, 2) == [(b"r", b"1"), (b"r", b"2")]


class _Commands(monitoring.CommandListener):
    """The names of the commands a client sent (``find``, ``update``, ...)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


async def _write(aggregates: Any, topic: str, version: int) -> Any:
    """Version ``version`` of aggregate "w" with its event, guarded by the version before."""
    return await write_aggregate(
        aggregates,
        {"_id": "w", "version": version - 1},
        {
            "$set": {
                "version": version,
                **outbox_fields([_event(topic, "w", version)], version=version),
            }
        },
    )


async def test_a_nudge_carrying_what_the_write_left_pending_publishes_without_reading_back(
    engines: Engines,
    mongo_db: AsyncDatabase[dict[str, Any]],
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("outbox-carried", partitions=1)
    commands = _Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        engines.mongodb_uri, tz_aware=True, event_listeners=[commands]
    )
    aggregates = client[mongo_db.name]["aggregates"]
    first = {"_id": "w", "version": 1, **outbox_document([_event(topic, "w", 1)], version=1)}
    await aggregates.insert_one(first)
    assert pending_events(first).keys == ("v000000000001-0000",)
    # Version 1's event was never published (no nudge: a crash, say); version 2 is written.
    pending = await _write(aggregates, topic, 2)
    assert [e.event.id for e in pending.events] == ["w-1", "w-2"]
    with pytest.raises(ConcurrentUpdate):  # a stale version changes nothing
        await _write(aggregates, topic, 2)

    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="carried")
    await publisher.start(wait=True)
    try:
        relay = OutboxRelay(publisher=publisher, collections=[aggregates], sweep_interval_s=60)
        commands.names.clear()
        assert await relay.flush(aggregates, "w", pending) == 2
        assert commands.names == ["update"]  # one guarded clear, no read
        doc = await aggregates.find_one({"_id": "w"})
        assert doc is not None and doc["_outbox_pending"] is False and doc["_outbox"] == {}
        assert doc["version"] == 2
    finally:
        await publisher.stop()
        await client.close()
    assert await _consume(engines.kafka_bootstrap, topic, 2) == [(b"w", b"1"), (b"w", b"2")]


async def test_a_stale_carried_nudge_loses_nothing_and_keeps_the_order(
    engines: Engines,
    mongo_db: AsyncDatabase[dict[str, Any]],
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("outbox-stale", partitions=1)
    aggregates = mongo_db["aggregates"]
    await aggregates.insert_one({"_id": "w", "version": 1, **outbox_document([], version=1)})
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="stale")
    await publisher.start(wait=True)
    try:
        relay = OutboxRelay(publisher=publisher, collections=[aggregates], sweep_interval_s=3600)
        second = await _write(aggregates, topic, 2)
        third = await _write(aggregates, topic, 3)  # before version 2's nudge is handled
        # Version 2's flush publishes what its write left: its clear is refused (a newer
        # token), so it removes only its own event and leaves the flag up for version 3.
        assert await relay.flush(aggregates, "w", second) == 1
        doc = await aggregates.find_one({"_id": "w"})
        assert doc is not None and doc["_outbox_pending"] is True
        assert list(doc["_outbox"]) == ["v000000000003-0000"]
        # Version 3's carries 2 again (not cleared when it was written) and 3.
        assert await relay.flush(aggregates, "w", third) == 2
        doc = await aggregates.find_one({"_id": "w"})
        records = await _consume(engines.kafka_bootstrap, topic, 3)
    finally:
        await publisher.stop()
    # At least once, first occurrences in write order; nothing left pending.
    assert [v for _, v in records] == [b"2", b"2", b"3"]
    assert doc is not None and doc["_outbox_pending"] is False
