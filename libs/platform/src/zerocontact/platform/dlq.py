"""Replaying a dead-letter topic into the topic its records came from.

A record lands in ``<topic>.dlq`` when a consumer could not apply it (see
:mod:`zerocontact.platform.kafka.consumer`). Once the cause is fixed (a bug deployed, a
missing reference created), replaying puts the records back on their original topic with their
original key, value and headers (the ``dlq_*`` headers removed). Consumers are idempotent by
``ce_id``, so a record replayed twice is applied once.

A record whose only fault was a header its producer left out (``ce_specversion``, say) is
repaired on the way: ``default_headers`` are added to each replayed record that lacks them, and
never replace a header a record has.

The replayer reads with its own consumer group and commits after the broker acknowledged the
republished records, so a replay that is interrupted and run again resumes instead of
republishing everything; records that arrive in the DLQ later are replayed by the next run. A
dead letter that went without its value (a record at the broker's size limit,
``dlq_value_dropped``) is replayed with the value read back from its original topic and offset.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.platform.kafka.consumer import VALUE_DROPPED, dead_letter_topic

DLQ_HEADER_PREFIX = "dlq_"


class NotADeadLetterTopic(ValueError):
    """Replay takes a ``<topic>.dlq`` name."""


@dataclass
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    dead_letter_topic: str
    replayed: Counter[str] = field(default_factory=Counter)  # original topic -> records
    dry_run: bool = False
    # Dead letters without their value whose original record is gone (retention): skipped.
    unrecoverable: int = 0

    @property
    def total(self) -> int:
        """Records replayed (or that would be)."""
        return sum(self.replayed.values())


def original_topic(record: ConsumerRecord[bytes, bytes], dlq_topic: str) -> str:
    """Where the record came from: its ``dlq_original_topic`` header, else the DLQ's source."""
    for name, value in record.headers:
        if name == "dlq_original_topic" and value:
            return str(value.decode())
    return dlq_topic.removesuffix(".dlq")


def replay_headers(
    headers: Sequence[tuple[str, bytes]], defaults: Mapping[str, str] | None = None
) -> list[tuple[str, bytes]]:
    """The record's own headers, without those the dead-lettering added, plus any of
    ``defaults`` it lacks (a non-empty header of the record always wins)."""
    own = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
    present = {k for k, v in own if v}
    added = [(k, v.encode()) for k, v in (defaults or {}).items() if k not in present]
    return [*[(k, v) for k, v in own if v or k not in (defaults or {})], *added]


async def replay_dead_letters(
    *,
    bootstrap: str | KafkaConnection,
    dlq_topic: str,
    limit: int | None = None,
    dry_run: bool = False,
    group_id: str | None = None,
    default_headers: Mapping[str, str] | None = None,
) -> ReplayReport:
    """Republish the records of ``dlq_topic`` not replayed before (at most ``limit``), each
    with the ``default_headers`` it lacks."""
    bad = [name for name in default_headers or {} if not name or name.startswith(DLQ_HEADER_PREFIX)]
    if bad:
        raise ValueError(f"default headers may not be empty or start with {DLQ_HEADER_PREFIX}")
    if (
        not dlq_topic.endswith(".dlq")
        or dead_letter_topic(dlq_topic.removesuffix(".dlq")) != dlq_topic
    ):
        raise NotADeadLetterTopic(f"{dlq_topic!r} is not a dead-letter topic (<topic>.dlq)")
    report = ReplayReport(dlq_topic, dry_run=dry_run)
    connection = as_connection(bootstrap)
    partitions = [
        TopicPartition(dlq_topic, p) for p in sorted(await _partitions(connection, dlq_topic))
    ]
    consumer = AIOKafkaConsumer(
        **connection.client_kwargs(),
        group_id=group_id or f"zerocontact-dlq-replay.{dlq_topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**connection.client_kwargs(), enable_idempotence=True, acks="all")
    await consumer.start()
    await producer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)  # replay what is there now, then stop
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while remaining and (limit is None or report.total < limit):
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                records = [r for r in records if r.offset < ends[tp]]
                if limit is not None:
                    records = records[: limit - report.total]
                if not records:
                    continue
                sends = []
                for record in records:
                    target = original_topic(record, dlq_topic)
                    value = record.value
                    if any(name == VALUE_DROPPED for name, _ in record.headers):
                        value = await _original_value(connection, record)
                        if value is None:
                            report.unrecoverable += 1
                            continue
                    report.replayed[target] += 1
                    if not dry_run:
                        sends.append(
                            await producer.send(
                                target,
                                value,
                                key=record.key,
                                headers=replay_headers(record.headers, default_headers),
                            )
                        )
                if not dry_run:
                    await asyncio.gather(*sends)
                    await consumer.commit({tp: records[-1].offset + 1})
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await producer.stop()
        await consumer.stop()
    return report


async def _original_value(
    connection: KafkaConnection, record: ConsumerRecord[bytes, bytes]
) -> bytes | None:
    """The value of a dead letter that went without it, read back from where it came from."""
    where = {k: v.decode() for k, v in record.headers if k.startswith(DLQ_HEADER_PREFIX)}
    try:
        tp = TopicPartition(where["dlq_original_topic"], int(where["dlq_original_partition"]))
        offset = int(where["dlq_original_offset"])
    except (KeyError, ValueError):
        return None
    reader = AIOKafkaConsumer(**connection.client_kwargs(), enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([tp])
        reader.seek(tp, offset)
        batch = await reader.getmany(tp, timeout_ms=5000, max_records=1)
        found = [r for r in batch.get(tp, []) if r.offset == offset]
    finally:
        await reader.stop()
    return found[0].value if found else None


async def _partitions(connection: KafkaConnection, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(**connection.client_kwargs(), client_id="zerocontact-dlq-replay")
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0].get("error_code") or not described[0].get("partitions"):
        raise NotADeadLetterTopic(f"topic {topic!r} does not exist on the broker")
    return {p["partition"] for p in described[0]["partitions"]}
