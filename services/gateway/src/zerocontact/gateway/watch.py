"""Fan-out of the services' event topics to watch streams.

One consumer per gateway instance, with no consumer group (nothing committed: a watcher only
needs what happens while it watches), positioned at the end of every partition before the
gateway serves. A watcher subscribes *before* it reads the current state over HTTP, so a change
between the read and the subscription is still delivered (at worst twice; watchers compare
states and send a change once).

Every event carries its position (topic, partition, offset) and CloudEvents id, and the hub
knows, at any point between two of its reads, up to which offset it has handed records out
(:meth:`EventHub.position`). A stream resuming from a token (:mod:`.resume`) subscribes, takes
that position, and reads what lies between the token and it with a consumer of its own
(:func:`replay`): the two ranges join without a gap or an overlap.

A record the hub cannot read (no CloudEvents headers, a value that is not the topic's message)
goes to ``<topic>.dlq`` in the background (:mod:`.dead_letters`) while the hub reads on; a
replay skips it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from zerocontact.gateway.dead_letters import DeadLetters
from zerocontact.gateway.resume import Position, ResumeTokens, expired
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.payroll.v1 import events_pb2 as payroll_pb2
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.platform.kafka.consumer import IDLE_FETCH_WAIT_MS, IDLE_FETCHER_POLL_MS
from zerocontact.signals.v1 import risk_pb2

log = logging.getLogger(__name__)

ALERTS = "alerts"
# initial metadata of a resumable stream: the token of the position it starts from
RESUME_TOKEN_HEADER = "x-resume-token"


@dataclass(frozen=True)
class Notice:
    """One event a watcher may care about."""

    kind: str  # the oneof field name, e.g. "loan_approved"
    message: Any
    event_id: str = ""  # CloudEvents id
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    topic: str = ""
    partition: int = -1
    offset: int = -1


def decode(
    topic: str, value: bytes, *, loan_topic: str, payroll_topic: str, risk_topic: str
) -> list[tuple[str, Notice]]:
    """The (watch key, notice) pairs of one record's value (position and id not set)."""
    out: list[tuple[str, Notice]] = []
    if topic == loan_topic:
        event = loan_pb2.LoanEvent.FromString(value)
        kind = event.WhichOneof("event")
        if kind is None:
            return out
        inner = getattr(event, kind)
        notice = Notice(kind, inner)
        for name in ("application_id", "loan_id"):
            key = getattr(inner, name, "")
            if key:
                out.append((f"{name[:-3]}:{key}", notice))
    elif topic == payroll_topic:
        payroll = payroll_pb2.PayrollEvent.FromString(value)
        which = payroll.WhichOneof("event")
        if which is None:
            return out
        message = getattr(payroll, which)
        batch_id = getattr(message, "batch_id", "")
        if batch_id:
            out.append((f"batch:{batch_id}", Notice(which, message)))
    elif topic == risk_topic:
        risk = risk_pb2.RiskEvent.FromString(value)
        if risk.WhichOneof("event") == "risk_alert":
            out.append((ALERTS, Notice("risk_alert", risk.risk_alert)))
    return out


def read(
    record: Any, *, loan_topic: str, payroll_topic: str, risk_topic: str
) -> list[tuple[str, Notice]]:
    """The (watch key, notice) pairs of one record, each notice with the record's position,
    CloudEvents id and time; empty for an event no watcher or webhook is about (a kind these
    contracts do not know yet included).

    Raises for a record that breaks the topics' contract, which the caller dead-letters:
    :class:`~zerocontact.platform.kafka.cloudevents.MalformedEvent` when its CloudEvents headers
    are missing or bad, protobuf's ``DecodeError`` when its value is not the topic's message.
    """
    event = CloudEvent.from_record(record.headers or (), record.value)
    pairs = decode(
        record.topic, event.data, loan_topic=loan_topic, payroll_topic=payroll_topic,
        risk_topic=risk_topic,
    )  # fmt: skip
    if not pairs:
        return []
    first = pairs[0][1]
    notice = Notice(
        first.kind, first.message, event.id, event.time, record.topic, record.partition,
        record.offset,
    )  # fmt: skip
    return [(key, notice) for key, _ in pairs]


class EventHub:
    """Reads the loan, payroll and risk topics and hands each event to its watchers."""

    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        *,
        loan_topic: str,
        payroll_topic: str,
        risk_topic: str,
        tokens: ResumeTokens | None = None,
        dead_letters: DeadLetters | None = None,
    ):
        self.connection = as_connection(bootstrap)
        self.tokens = tokens or ResumeTokens(b"")
        # where an unreadable record goes (None: logged and skipped, for a hub on its own)
        self.dead_letters = dead_letters
        self.loan_topic = loan_topic
        self.payroll_topic = payroll_topic
        self.risk_topic = risk_topic
        self._watchers: dict[str, set[asyncio.Queue[Notice]]] = defaultdict(set)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        # topic → partition → the next offset to hand out (everything before it was)
        self._positions: dict[str, dict[int, int]] = defaultdict(dict)
        # told every key an event names, watched or not (the read model drops its views)
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with every key an event names (``loan:<id>``, ...), as read."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Assign every partition of the three topics and seek to their ends."""
        consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            # The broker answers a fetch as soon as a record arrives: the wait only bounds
            # how often an idle hub asks (IDLE_FETCH_WAIT_MS; 50 ms was 20 fetches a second).
            fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,
            consumer_timeout_ms=IDLE_FETCHER_POLL_MS,
        )
        await consumer.start()
        topics = [self.loan_topic, self.payroll_topic, self.risk_topic]
        # Without a group, a subscription is assigned every partition of the topics.
        consumer.subscribe(topics)
        for _ in range(100):
            assigned = consumer.assignment()
            if {tp.topic for tp in assigned} >= set(topics):
                break
            await consumer.getmany(timeout_ms=50)  # drives the metadata refresh
        partitions = list(consumer.assignment())
        if partitions:
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                # resolve now: nothing after this point is missed
                self._positions[tp.topic][tp.partition] = await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="gateway-event-hub")

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self.dead_letters is not None:
            await self.dead_letters.drain()

    @contextlib.contextmanager
    def watch(self, *keys: str) -> Iterator[asyncio.Queue[Notice]]:
        """A queue receiving every event about any of ``keys`` while the block runs."""
        queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize=10_000)
        for key in keys:
            self._watchers[key].add(queue)
        try:
            yield queue
        finally:
            for key in keys:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(queue)
                    if not watchers:
                        del self._watchers[key]

    def position(self, topic: str) -> dict[int, int]:
        """Up to where (next offset per partition) the hub has handed out ``topic``'s records.

        Read it in the same step as :meth:`watch` subscribes (no ``await`` between): every
        record from it on reaches the queue, none before it does."""
        return dict(self._positions[topic])

    def add_key(self, queue: asyncio.Queue[Notice], key: str) -> None:
        """Also send events about ``key`` to ``queue`` (e.g. the loan of a watched application)."""
        self._watchers[key].add(queue)

    def remove_key(self, queue: asyncio.Queue[Notice], key: str) -> None:
        """Undo :meth:`add_key`."""
        watchers = self._watchers.get(key)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[key]

    def _deliver(self, key: str, notice: Notice) -> None:
        for queue in list(self._watchers.get(key, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck watcher loses events, not us
                queue.put_nowait(notice)

    def _read(self, record: Any) -> list[tuple[str, Notice]]:
        return read(
            record, loan_topic=self.loan_topic, payroll_topic=self.payroll_topic,
            risk_topic=self.risk_topic,
        )  # fmt: skip

    def _dispatch(self, record: Any) -> None:
        try:
            pairs = self._read(record)
        except Exception as exc:  # poison: it must not stop every watch
            if self.dead_letters is None:
                log.warning("unreadable record on %s at %s", record.topic, record.offset)
            else:  # in the background: the streams go on meanwhile
                self.dead_letters.send_in_background(record, exc)
            return
        for key, _ in pairs:
            for listener in self._listeners:
                listener(key)
        for key, notice in pairs:
            self._deliver(key, notice)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                positions = self._positions[tp.topic]
                for record in records:
                    self._dispatch(record)
                    positions[tp.partition] = record.offset + 1

    async def replay(
        self, topic: str, start: dict[int, int], until: dict[int, int], keys: Iterable[str]
    ) -> list[Notice]:
        """The notices about ``keys`` in ``topic`` from ``start`` up to (not including)
        ``until``, per partition, read by a consumer of its own without a group; OUT_OF_RANGE
        (:func:`~zerocontact.gateway.resume.expired`) when ``start`` is older than the log."""
        wanted = set(keys)
        spans = {p: (start.get(p, -1), end) for p, end in until.items() if start.get(p, -1) < end}
        if not spans:
            return []
        consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        out: list[Notice] = []
        try:
            tps = [TopicPartition(topic, p) for p in spans]
            consumer.assign(tps)
            first = await consumer.beginning_offsets(tps)
            for tp in tps:
                begin, end = spans[tp.partition]
                if begin < 0:  # a partition the token did not know yet: from its start
                    begin = first[tp]
                elif begin < first[tp]:
                    raise expired()
                spans[tp.partition] = (begin, end)
                consumer.seek(tp, begin)
            todo = {tp for tp in tps if spans[tp.partition][0] < spans[tp.partition][1]}
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=200, max_records=2000)
                for tp, records in batches.items():
                    end = spans[tp.partition][1]
                    for record in records:
                        if record.offset >= end:
                            break
                        try:
                            pairs = self._read(record)
                        except Exception:  # dead-lettered when the live hub read it
                            continue
                        if any(key in wanted for key, _ in pairs):
                            out.append(pairs[0][1])
                for tp in list(todo):
                    if await consumer.position(tp) >= spans[tp.partition][1]:
                        todo.discard(tp)
        finally:
            await consumer.stop()
        return out


class Cursor:
    """A stream's position: the next offset per partition of its topic, advanced by every
    notice the stream has taken (sent, or skipped as not its own or not a change)."""

    def __init__(self, topic: str, offsets: dict[int, int]) -> None:
        self.topic = topic
        self.offsets = dict(offsets)

    def fresh(self, notice: Notice) -> bool:
        """Whether the stream has not taken ``notice`` yet (a live notice the token's position
        is already past, e.g. from a replica that was ahead, is not fresh)."""
        return notice.offset >= self.offsets.get(notice.partition, -1)

    def advance(self, notice: Notice) -> None:
        """The stream has taken ``notice``."""
        if notice.partition >= 0:
            self.offsets[notice.partition] = max(
                self.offsets.get(notice.partition, 0), notice.offset + 1
            )


class Resumable:
    """The position of one watch stream over one topic, and its resume tokens.

    Use it inside :meth:`EventHub.watch`'s block, in this order::

        with hub.watch(key) as queue:
            stream = Resumable(hub, topic, key, partner_id)  # no await before this
            stream.resume(request.resume_token)  # INVALID_ARGUMENT for a bad token
            for notice in await stream.replay([key]): if stream.take(notice): ...
            while ...: notice = await queue.get(); if stream.take(notice): ...

    Without a token the stream starts at the hub's position; with one, :meth:`replay`
    returns what lies between the token and that position (read from the topic), and
    :meth:`take` then drops live notices the token was already past.
    """

    def __init__(self, hub: EventHub, topic: str, key: str, partner_id: str) -> None:
        self.hub, self.topic, self.key, self.partner_id = hub, topic, key, partner_id
        self.live = hub.position(topic)
        self.cursor = Cursor(topic, self.live)
        self.resumed: Position | None = None
        self._pending = 0

    @property
    def state(self) -> tuple[str, ...]:
        """The folded state the token carried (empty without one)."""
        return self.resumed.state if self.resumed else ()

    def resume(self, token: str) -> None:
        """Start from ``token``'s position (nothing to do when empty); INVALID_ARGUMENT
        naming ``resume_token`` for a token not this partner's stream's."""
        if token:
            self.resumed = self.hub.tokens.verify(
                token, partner_id=self.partner_id, topic=self.topic, key=self.key
            )
            self.cursor = Cursor(self.topic, self.resumed.offsets)

    async def replay(self, keys: Iterable[str]) -> list[Notice]:
        """The notices about ``keys`` between the token and the live position, oldest first per
        partition (empty without a token); OUT_OF_RANGE when the topic no longer holds them.
        Pass each to :meth:`take`, in order, as it is handled."""
        if self.resumed is None:
            return []
        replayed = await self.hub.replay(self.topic, self.resumed.offsets, self.live, keys)
        self._pending = len(replayed)
        if not replayed:
            self._join()
        return replayed

    def _join(self) -> None:
        for partition, offset in self.live.items():
            self.cursor.offsets[partition] = max(self.cursor.offsets.get(partition, 0), offset)

    def take(self, notice: Notice) -> bool:
        """Advance past ``notice``; False when the stream had taken it already (skip it)."""
        if not self.cursor.fresh(notice):
            return False
        self.cursor.advance(notice)
        if self._pending:
            self._pending -= 1
            if not self._pending:  # the replay is over: the stream is at the live position
                self._join()
        return True

    def token(self, state: tuple[str, ...] = ()) -> str:
        """The token of the stream's position now (with the folded ``state``, if any)."""
        return self.hub.tokens.sign(
            Position(self.partner_id, self.topic, self.key, self.cursor.offsets, state)
        )
