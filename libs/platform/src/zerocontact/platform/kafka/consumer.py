"""A consumer runner: named group, manual commits after the effect is stored, retries, DLQ.

Each record is handed to the service's handler. The offset is committed only after the
handler returned, so the effect is stored before Kafka forgets the record; handlers are
idempotent by ``ce_id`` (see :mod:`zerocontact.platform.idempotency`), so a redelivery after
a crash changes nothing. Transient failures (database or broker unreachable) are retried
with capped exponential back-off, without skipping the record. Anything else is a poison
record: it goes to ``<topic>.dlq`` with the error in its headers, and the partition moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import Counter
from pymongo.errors import ConnectionFailure

from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.metrics import DEAD_LETTERS
from zerocontact.platform.telemetry import consume_span

log = logging.getLogger(__name__)

EVENTS = Counter(
    "zc_consumer_events_total", "Records handled by consumer runners", ["group", "topic", "outcome"]
)
RETRIES = Counter("zc_consumer_retries_total", "Transient failures retried", ["group", "topic"])


class TransientError(Exception):
    """The effect cannot be stored now (a dependency is down); retry the same record later."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionFailure,  # PyMongo: AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError
    KafkaError,
    TimeoutError,
)


@dataclass(frozen=True)
class ConsumedEvent:
    """A decoded record: its CloudEvent plus where it came from."""

    event: CloudEvent
    topic: str
    partition: int
    offset: int
    key: str | None


Handler = Callable[[ConsumedEvent], Awaitable[None]]


# How long the broker holds a fetch that finds nothing (it answers at once when a record
# arrives, so this costs no latency): an idle consumer sends one fetch per 5 s, not two a second.
IDLE_FETCH_WAIT_MS = 5_000
# How often aiokafka's fetch routine wakes with nothing to do (its `consumer_timeout_ms`, 200 ms
# by default: five wake-ups a second per idle consumer). A fetch's answer, a consumed batch and
# a rebalance wake it at once, so this is only its fallback poll; 12 idle consumers in one
# process used 1.3 % of a core at 200 ms and 0.55 % at 1 s (docs/performance.md, Idle).
IDLE_FETCHER_POLL_MS = 1_000


def dead_letter_topic(topic: str) -> str:
    """The dead-letter twin of ``topic``."""
    return f"{topic}.dlq"


# A dead letter is its record plus the dlq_* headers, so a record at the broker's size limit
# cannot go to the DLQ as it is (the producer refuses it: a partition held back forever, a
# Faust agent crashed). Below this many bytes (under aiokafka's 1 MiB and Faust's 1,000,000
# byte request limits) it goes whole; above, without its value, which stays on its topic.
MAX_DEAD_LETTER_BYTES = 990_000
VALUE_DROPPED = "dlq_value_dropped"


def dead_letter_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers of a dead letter for a record and its ``dlq_*`` headers.

    A record too large to carry them keeps its value on its original topic: the dead letter
    has an empty value and ``dlq_value_dropped`` (the value's size), and a replay reads it back
    from ``dlq_original_topic/partition/offset``.
    """
    size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers)
    if size <= MAX_DEAD_LETTER_BYTES:
        return value, list(headers)
    return b"", [*headers, (VALUE_DROPPED, str(len(value or b"")).encode())]


def dead_letter_of(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    *,
    error: BaseException,
    topic: str,
    partition: int,
    offset: int,
    group: str,
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers of the dead letter of a record ``group`` could not apply: the
    record's own headers plus ``dlq_error``, ``dlq_error_type``, ``dlq_original_topic``,
    ``dlq_original_partition``, ``dlq_original_offset`` and ``dlq_consumer_group`` (the one
    contract every reader of the product follows, so ``zerocontact dlq replay`` can put it back);
    sized by :func:`dead_letter_record`."""
    return dead_letter_record(
        key,
        value,
        [
            *headers,
            ("dlq_error", str(error)[:1000].encode()),
            ("dlq_error_type", type(error).__name__.encode()),
            ("dlq_original_topic", topic.encode()),
            ("dlq_original_partition", str(partition).encode()),
            ("dlq_original_offset", str(offset).encode()),
            ("dlq_consumer_group", group.encode()),
        ],
    )


async def publish_dead_letter(
    publisher: EventPublisher, record: ConsumerRecord[bytes, bytes], error: Exception, *, group: str
) -> None:
    """Send ``record``, which ``group`` could not apply, to ``<topic>.dlq`` (:func:`dead_letter_of`)
    and wait for the broker's acknowledgement (a broker that does not take it raises); logged
    and counted in ``zc_dead_letters_total``."""
    log.error(
        "poison record sent to the dead-letter topic",
        extra={
            "group": group,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "error": repr(error),
        },
    )
    value, headers = dead_letter_of(
        record.key, record.value, record.headers or (), error=error, topic=record.topic,
        partition=record.partition, offset=record.offset, group=group,
    )  # fmt: skip
    await publisher.publish_raw(
        dead_letter_topic(record.topic), key=record.key, value=value, headers=headers
    )
    DEAD_LETTERS.labels(group, record.topic).inc()


class ConsumerRunner:
    """Runs one consumer group over ``topics`` until stopped."""

    def __init__(
        self,
        *,
        bootstrap_servers: str | KafkaConnection,
        topics: Sequence[str],
        group_id: str,
        handler: Handler,
        publisher: EventPublisher,
        client_id: str | None = None,
        max_records: int = 500,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        fetch_max_wait_ms: int = IDLE_FETCH_WAIT_MS,
    ) -> None:
        self._connection = as_connection(bootstrap_servers)
        self._topics = list(topics)
        self._group = group_id
        self._handler = handler
        self._publisher = publisher
        self._client_id = client_id or group_id
        self._max_records = max_records
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Partitions whose record a transient failure holds back (several, side by side).
        self._held: set[tuple[str, int]] = set()

    async def start(self) -> None:
        """Start consuming in a background task (connecting waits for the broker)."""
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self._group}")

    async def stop(self) -> None:
        """Stop after the record in hand; uncommitted records are redelivered later."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except TimeoutError:
                self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @property
    def retrying(self) -> bool:
        """True while a transient failure holds a record back."""
        return bool(self._held)

    @property
    def running(self) -> bool:
        """True while the consume loop is alive."""
        return self._task is not None and not self._task.done()

    async def _connect(self) -> AIOKafkaConsumer:
        delay = self._retry_initial
        while not self._stopping.is_set():
            consumer = AIOKafkaConsumer(
                *self._topics,
                **self._connection.client_kwargs(),
                group_id=self._group,
                client_id=self._client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                fetch_max_wait_ms=self._fetch_max_wait_ms,
                consumer_timeout_ms=IDLE_FETCHER_POLL_MS,
            )
            try:
                await consumer.start()
            except KafkaError as exc:
                await consumer.stop()
                log.warning(
                    "consumer cannot connect yet", extra={"group": self._group, "error": str(exc)}
                )
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            return consumer
        raise asyncio.CancelledError

    async def _run(self) -> None:
        try:
            self._consumer = await self._connect()
        except asyncio.CancelledError:
            return
        consumer = self._consumer
        while not self._stopping.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
            if not batches:
                continue
            # Partitions side by side, each in its own order: the key's order is the contract
            # (one aggregate, one key, one partition); a slow record holds back only its own
            # partition instead of every record fetched with it.
            partitions = list(batches)
            done = await asyncio.gather(
                *(self._process_partition(batches[tp]) for tp in partitions)
            )
            offsets = {tp: n for tp, n in zip(partitions, done, strict=True) if n is not None}
            if offsets:
                await self._commit(consumer, offsets)
            if len(offsets) < len(partitions):
                return  # stopping in the middle of a retry: leave that record uncommitted

    async def _process_partition(self, records: list[ConsumerRecord[bytes, bytes]]) -> int | None:
        """Handle records in order; return the offset to commit, None when stopped mid-way."""
        for record in records:
            if not await self._process(record):
                return None
        last: int = records[-1].offset
        return last + 1

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced while we worked; the new owner redelivers, handlers are idempotent.
            log.warning(
                "commit refused after rebalance", extra={"group": self._group, "error": str(exc)}
            )

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        delay = self._retry_initial
        while not self._stopping.is_set():
            try:
                await self._apply(record)
            except TRANSIENT_ERRORS as exc:
                self._held.add((record.topic, record.partition))
                RETRIES.labels(self._group, record.topic).inc()
                log.warning(
                    "transient failure, retrying",
                    extra={
                        "group": self._group,
                        "topic": record.topic,
                        "offset": record.offset,
                        "error": str(exc),
                    },
                )
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._held.discard((record.topic, record.partition))
            return True
        return False

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = CloudEvent.from_record(record.headers, record.value)
            with consume_span(
                record.topic,
                group=self._group,
                partition=record.partition,
                offset=record.offset,
                event_id=event.id,
                event_type=event.type,
                traceparent=event.traceparent,
            ):
                await self._handler(
                    ConsumedEvent(
                        event=event,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key.decode(errors="replace") if record.key is not None else None,
                    )
                )
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # poison: anything the handler cannot apply, however often tried
            await publish_dead_letter(self._publisher, record, exc, group=self._group)
            EVENTS.labels(self._group, record.topic, "dead_lettered").inc()
            return
        EVENTS.labels(self._group, record.topic, "applied").inc()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
