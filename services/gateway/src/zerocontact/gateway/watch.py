"""Fan-out of the services' event topics to watch streams.

One consumer per gateway instance, with no consumer group (nothing committed: a watcher only
needs what happens while it watches), positioned at the end of every partition before the
gateway serves. A watcher subscribes *before* it reads the current state over HTTP, so a change
between the read and the subscription is still delivered (at worst twice; watchers compare
states and send a change once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.payroll.v1 import events_pb2 as payroll_pb2
from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.signals.v1 import risk_pb2

log = logging.getLogger(__name__)

ALERTS = "alerts"


@dataclass(frozen=True)
class Notice:
    """One event a watcher may care about."""

    kind: str  # the oneof field name, e.g. "loan_approved"
    message: Any


class EventHub:
    """Reads the loan, payroll and risk topics and hands each event to its watchers."""

    def __init__(
        self,
        bootstrap: str | KafkaConnection,
        *,
        loan_topic: str,
        payroll_topic: str,
        risk_topic: str,
    ):
        self.connection = as_connection(bootstrap)
        self.loan_topic = loan_topic
        self.payroll_topic = payroll_topic
        self.risk_topic = risk_topic
        self._watchers: dict[str, set[asyncio.Queue[Notice]]] = defaultdict(set)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Assign every partition of the three topics and seek to their ends."""
        consumer = AIOKafkaConsumer(
            **self.connection.client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=50,
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
                await consumer.position(tp)  # resolve now: nothing after this point is missed
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

    def _dispatch(self, topic: str, value: bytes) -> None:
        if topic == self.loan_topic:
            event = loan_pb2.LoanEvent.FromString(value)
            kind = event.WhichOneof("event")
            if kind is None:
                return
            inner = getattr(event, kind)
            notice = Notice(kind, inner)
            for field in ("application_id", "loan_id"):
                key = getattr(inner, field, "")
                if key:
                    self._deliver(f"{field[:-3]}:{key}", notice)
        elif topic == self.payroll_topic:
            payroll = payroll_pb2.PayrollEvent.FromString(value)
            which = payroll.WhichOneof("event")
            if which is None:
                return
            message = getattr(payroll, which)
            batch_id = getattr(message, "batch_id", "")
            if batch_id:
                self._deliver(f"batch:{batch_id}", Notice(which, message))
        elif topic == self.risk_topic:
            risk = risk_pb2.RiskEvent.FromString(value)
            if risk.WhichOneof("event") == "risk_alert":
                self._deliver(ALERTS, Notice("risk_alert", risk.risk_alert))

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    try:
                        self._dispatch(tp.topic, record.value or b"")
                    except Exception:  # an unreadable record must not stop every watch
                        log.warning("unreadable record on %s at %s", tp.topic, record.offset)
