"""The platform's ConsumerRunner on the real broker: partitions side by side, each in order;
an optimistic-concurrency conflict is retried, never dead-lettered."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import Engines, count_records
from tests.integration.test_walking_skeleton import read_topic
from zerocontact.platform.dlq import replay_dead_letters
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.outbox import ConcurrentUpdate


async def _produce(engines: Engines, topic: str, records: list[tuple[int, str]]) -> None:
    """Send ``(partition, subject)`` records, each a CloudEvent whose subject names it."""
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, subject in records:
            event = CloudEvent(
                id=str(uuid.uuid4()), source="/test", type="test.Thing", subject=subject, data=b""
            )
            await producer.send_and_wait(
                topic, b"", key=subject.encode(), partition=partition, headers=event.headers()
            )
    finally:
        await producer.stop()


async def _run(
    engines: Engines,
    topic: str,
    group: str,
    handler: Callable[[ConsumedEvent], Awaitable[None]],
    done: asyncio.Event,
) -> None:
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id=group)
    await publisher.start(wait=True)
    runner = ConsumerRunner(
        bootstrap_servers=engines.kafka_bootstrap,
        topics=[topic],
        group_id=group,
        handler=handler,
        publisher=publisher,
        retry_initial_s=0.01,
    )
    await runner.start()
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        await runner.stop()
        await publisher.stop()


async def test_partitions_are_handled_side_by_side_each_in_order(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await create_topic("side-by-side", partitions=2)
    # The first record of each partition waits until the other partition's first record has
    # started: handled one partition after the other, whichever goes first would wait forever
    # (the test's 30 s timeout); side by side, both go on.
    await _produce(engines, topic, [(0, "a1"), (0, "a2"), (1, "b1"), (1, "b2")])
    started = {"a1": asyncio.Event(), "b1": asyncio.Event()}
    other = {"a1": "b1", "b1": "a1"}
    done = asyncio.Event()
    handled: list[str] = []

    async def handler(consumed: ConsumedEvent) -> None:
        subject = consumed.event.subject or ""
        if subject in started:
            started[subject].set()
            await asyncio.wait_for(started[other[subject]].wait(), 20)
        handled.append(subject)
        if len(handled) == 4:
            done.set()

    await _run(engines, topic, unique_name("group"), handler, done)
    # each partition in its own order
    assert handled.index("a1") < handled.index("a2")
    assert handled.index("b1") < handled.index("b2")


async def test_a_concurrent_update_is_retried_not_dead_lettered(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    kafka_admin: AIOKafkaAdminClient,
    unique_name: Callable[[str], str],
) -> None:
    topic = await create_topic("conflict", partitions=1)
    await kafka_admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])
    await _produce(engines, topic, [(0, "x")])
    attempts: list[str] = []
    done = asyncio.Event()

    async def handler(consumed: ConsumedEvent) -> None:
        attempts.append(consumed.event.subject or "")
        if len(attempts) < 3:
            raise ConcurrentUpdate("another writer moved the aggregate")
        done.set()

    await _run(engines, topic, unique_name("group"), handler, done)
    assert attempts == ["x", "x", "x"]
    assert await count_records(engines.kafka_bootstrap, f"{topic}.dlq") == 0


async def test_a_record_at_the_size_limit_is_dead_lettered_and_replayed_whole(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    kafka_admin: AIOKafkaAdminClient,
    unique_name: Callable[[str], str],
) -> None:
    # Found by tests/chaos/poison.py: the dead-letter copy of a record near the broker's
    # 1 MiB limit (the record plus the dlq_* headers) was refused by the producer, retried as
    # a transient failure forever, and the partition never moved on.
    topic = await create_topic("oversized", partitions=1)
    await kafka_admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])
    big = os.urandom(1_048_000)
    event = CloudEvent(
        id=str(uuid.uuid4()), source="/test", type="test.Big", subject="big", data=b""
    )
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, big, key=b"big", headers=event.headers())
    finally:
        await producer.stop()
    await _produce(engines, topic, [(0, "after")])
    done = asyncio.Event()
    handled: list[str] = []

    async def handler(consumed: ConsumedEvent) -> None:
        if consumed.event.type == "test.Big":
            raise ValueError("cannot read this")
        handled.append(consumed.event.subject or "")
        done.set()

    await _run(engines, topic, unique_name("group"), handler, done)
    assert handled == ["after"]  # the partition went on
    [dead] = await read_topic(engines.kafka_bootstrap, f"{topic}.dlq", 1)
    headers = dict(dead.headers)
    assert dead.value == b"" and headers["dlq_value_dropped"] == b"1048000"
    assert headers["dlq_error_type"] == b"ValueError" and headers["ce_id"] == event.id.encode()

    report = await replay_dead_letters(bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}.dlq")
    assert report.replayed == {topic: 1} and report.unrecoverable == 0
    replayed = (await read_topic(engines.kafka_bootstrap, topic, 3))[-1]
    assert replayed.value == big  # read back from the original topic
    assert dict(replayed.headers)["ce_id"] == event.id.encode()
