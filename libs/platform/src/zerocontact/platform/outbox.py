"""Transactional outbox without multi-document transactions.

FerretDB (and a MongoDB without a replica set) has no multi-document transactions, so the
events an aggregate emits are embedded in the aggregate's own document and written in the
same single-document update as the state change: either both are stored or neither is.

Pending events live in a map ``_outbox`` keyed ``v<version>-<n>`` (zero-padded, so sorting
the keys gives the write order) with ``_outbox_pending: true`` beside it. The
:class:`OutboxRelay` publishes an aggregate's pending events in key order with the
idempotent producer, then removes exactly the keys it published (``$unset``) and clears
the flag only if nothing new arrived meanwhile: one update guarded by the ``_outbox_written``
token every event-adding write renews, or, when a write came between, an unset and a guarded
clear. A map rather than an array because
FerretDB 1.24 lacks the positional ``$`` operator and ignores ``$pull`` conditions.

The relay is nudged right after each write (latency) and sweeps every few seconds for
whatever a crash left behind (recovery). A writer that knows everything the aggregate holds
pending after its write (:func:`write_aggregate` returns it from the write's pre-image, an
insert from the document it inserted: :func:`pending_events`) hands it to the nudge, and the
relay publishes it without reading the document back; a nudge without it reads the document.
Delivery is at least once: a crash between the
broker's acknowledgement and the ``$unset`` republishes the same events with the same
``ce_id``, which idempotent consumers ignore. Both crashes can be injected for the reliability
suite (:mod:`zerocontact.platform.faults`, off unless a test process arms them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from prometheus_client import Counter, Gauge
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.faults import AFTER_PUBLISH, AFTER_STATE_WRITE, CrashPoints, crash_points
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent, dataschema_for
from zerocontact.platform.kafka.consumer import TransientError
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.telemetry import current_traceparent

log = logging.getLogger(__name__)

OUTBOX = "_outbox"
PENDING = "_outbox_pending"
# A fresh token with every write that adds events: the relay clears what it published in
# one update guarded by the token it read, and falls back to two when a write came between.
WRITTEN = "_outbox_written"

PUBLISHED = Counter(
    "zc_outbox_published_total", "Events published by the outbox relay", ["collection"]
)
OLDEST_PENDING = Gauge(
    "zc_outbox_oldest_pending_seconds",
    "Age of the oldest unpublished event seen by the last sweep",
    ["collection"],
)

Document = dict[str, Any]


@dataclass(frozen=True)
class OutboxEvent:
    """An event waiting in an aggregate's document to be published."""

    topic: str
    key: str
    event: CloudEvent


def protobuf_event(
    wrapper: Message,
    *,
    topic: str,
    key: str,
    source: str,
    subject: str | None = None,
    time: datetime | None = None,
    traceparent: str | None = None,
    event_id: str | None = None,
) -> OutboxEvent:
    """The outbox event for a topic's wrapper message (one ``oneof event`` set).

    ``ce_type`` is the full proto name of the event set in the wrapper, as every consumer
    checks; ``ce_dataschema`` names the wrapper (what the value decodes as) and the contracts
    release. The id is a fresh UUIDv7 unless ``event_id`` fixes it (derived ids make a
    re-emitted event recognisable as the same one). The event keeps the active span's context
    (or ``traceparent``, a context stored earlier), so its publish continues that trace.
    """
    kind = wrapper.WhichOneof("event")
    if kind is None:
        raise ValueError(f"{wrapper.DESCRIPTOR.full_name} has no event set")
    event = CloudEvent(
        id=event_id or new_id(),
        source=source,
        type=getattr(wrapper, kind).DESCRIPTOR.full_name,
        subject=key if subject is None else subject,
        data=wrapper.SerializeToString(),
        time=time or datetime.now(UTC),
        traceparent=traceparent or current_traceparent(),
        dataschema=dataschema_for(wrapper.DESCRIPTOR.full_name),
    )
    return OutboxEvent(topic=topic, key=key, event=event)


def _entries(events: Sequence[OutboxEvent], version: int) -> dict[str, Document]:
    return {
        f"v{version:012d}-{n:04d}": {
            "topic": item.topic,
            "key": item.key,
            "id": item.event.id,
            "source": item.event.source,
            "type": item.event.type,
            "subject": item.event.subject,
            "time": item.event.time,
            "traceparent": item.event.traceparent,
            "dataschema": item.event.dataschema,
            "data": item.event.data,
        }
        for n, item in enumerate(events)
    }


def outbox_fields(events: Sequence[OutboxEvent], *, version: int) -> Document:
    """The ``$set`` fields that store ``events`` with an update to the aggregate's ``version``."""
    fields: Document = {f"{OUTBOX}.{k}": v for k, v in _entries(events, version).items()}
    if fields:
        fields[PENDING] = True
        fields[WRITTEN] = new_id()
    return fields


def outbox_document(events: Sequence[OutboxEvent], *, version: int) -> Document:
    """The outbox fields of a new aggregate document holding ``events``."""
    return {OUTBOX: _entries(events, version), PENDING: bool(events), WRITTEN: new_id()}


class ConcurrentUpdate(TransientError):
    """Another writer changed the aggregate since it was read; reload and try again.

    Transient: a consumer that lets it escape retries the same record instead of
    dead-lettering it (partitions are handled side by side, so two records may race).
    """


async def insert_aggregate(
    collection: AsyncCollection[Document], doc: Document, events: Sequence[OutboxEvent]
) -> bool:
    """Insert a new aggregate at ``version`` 1 with its events; False if its ``_id`` exists."""
    try:
        await collection.insert_one({**doc, "version": 1, **outbox_document(events, version=1)})
    except DuplicateKeyError:
        return False
    return True


async def update_aggregate(
    collection: AsyncCollection[Document],
    doc_id: Any,
    *,
    version: int,
    changes: Document,
    events: Sequence[OutboxEvent],
    extra: Document | None = None,
) -> None:
    """``$set`` ``changes`` and store ``events`` if the aggregate is still at ``version``.

    One single-document write (the state change and its events together), guarded by the
    version read; ``extra`` adds other update operators. ``ConcurrentUpdate`` otherwise.
    """
    update: Document = {
        "$set": {**changes, "version": version + 1, **outbox_fields(events, version=version + 1)}
    }
    if extra:
        update.update(extra)
    result = await collection.update_one({"_id": doc_id, "version": version}, update)
    if result.matched_count != 1:
        raise ConcurrentUpdate(str(doc_id))


@dataclass(frozen=True)
class PendingEvents:
    """Everything an aggregate holds unpublished right after one write, in write order, and
    the token of the write that added the last of them: what :meth:`OutboxRelay.nudge`
    publishes without reading the document back.

    ``token`` guards the relay's single clearing write (None: a document from before tokens,
    cleared in two writes). It may include events a relay published meanwhile but had not
    cleared yet: they are published again with the same ``ce_id`` (at least once).
    """

    token: str | None
    keys: tuple[str, ...]
    events: tuple[OutboxEvent, ...]


def pending_events(
    document: Mapping[str, Any], fields: Mapping[str, Any] | None = None
) -> PendingEvents:
    """What an aggregate holds pending after a write: ``document`` as inserted, or a write's
    pre-image with the write's ``$set`` ``fields`` (:func:`outbox_fields` among them)."""
    entries: dict[str, Any] = dict(document.get(OUTBOX) or {})
    token = document.get(WRITTEN)
    prefix = f"{OUTBOX}."
    for name, value in (fields or {}).items():
        if name.startswith(prefix):
            entries[name[len(prefix) :]] = value
        elif name == WRITTEN:
            token = value
    keys = tuple(sorted(entries))
    return PendingEvents(token, keys, tuple(_stored_event(entries[k]) for k in keys))


async def write_aggregate(
    collection: AsyncCollection[Document], query: Document, update: Document
) -> PendingEvents:
    """One single-document ``update`` of the aggregate ``query`` matches (its ``_id`` and the
    version read, typically); ``ConcurrentUpdate`` if none does.

    The same one command as ``update_one`` (``findAndModify``), but it answers the
    pre-image, so it returns everything the aggregate holds pending after the write
    (:func:`pending_events`) for the relay's nudge.
    """
    before = await collection.find_one_and_update(
        query, update, return_document=ReturnDocument.BEFORE
    )
    if before is None:
        raise ConcurrentUpdate(str(query.get("_id")))
    return pending_events(before, update.get("$set"))


def _stored_event(entry: Mapping[str, Any]) -> OutboxEvent:
    time = entry["time"]
    if time.tzinfo is None:  # a client created without tz_aware hands back naive UTC datetimes
        time = time.replace(tzinfo=UTC)
    return OutboxEvent(
        topic=entry["topic"],
        key=entry["key"],
        event=CloudEvent(
            id=entry["id"],
            source=entry["source"],
            type=entry["type"],
            subject=entry["subject"],
            data=bytes(entry["data"]),
            time=time,
            traceparent=entry.get("traceparent"),
            # Stored by the writer: the contracts release the data was serialized with (an
            # entry from before ce_dataschema existed has none and is published without it).
            dataschema=entry.get("dataschema"),
        ),
    )


async def ensure_outbox_index(collection: AsyncCollection[Document]) -> None:
    """The index the relay's sweep uses to find aggregates with pending events."""
    await collection.create_index([(PENDING, ASCENDING)], name="outbox_pending")


class OutboxRelay:
    """Publishes pending outbox events of the given collections; one per service process."""

    def __init__(
        self,
        *,
        publisher: EventPublisher,
        collections: Sequence[AsyncCollection[Document]],
        sweep_interval_s: float = 5.0,
        batch_size: int = 64,
        faults: CrashPoints | None = None,
    ) -> None:
        self._publisher = publisher
        # None: the environment's (off unless a test process arms them: platform.faults).
        self._faults = crash_points() if faults is None else faults
        self._collections = {c.name: c for c in collections}
        self._sweep_interval = sweep_interval_s
        self._batch_size = batch_size
        self._queue: asyncio.Queue[tuple[str, Any, PendingEvents | None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def nudge(
        self, collection: str, aggregate_id: Any, pending: PendingEvents | None = None
    ) -> None:
        """Ask for ``aggregate_id``'s pending events to be published now: ``pending`` (what
        the write that nudges left pending, :func:`write_aggregate`) without reading the
        document, or whatever the document holds."""
        self._queue.put_nowait((collection, aggregate_id, pending))

    async def start(self) -> None:
        """Run the relay loop in the background."""
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop the loop; whatever is still pending is published by the next sweep."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + self._sweep_interval
                try:
                    first = await asyncio.wait_for(
                        self._queue.get(), max(0.0, next_sweep - loop.time())
                    )
                except TimeoutError:
                    continue
                # Everything nudged meanwhile, each aggregate once, flushed side by side: one
                # aggregate's events stay in order (one flush publishes all it has pending), and
                # a broker or database round trip is waited for once per batch, not per event.
                # An aggregate's last nudge wins: what its write left pending includes every
                # earlier write's events not yet cleared (cleared ones were published).
                batch = {(first[0], first[1]): first[2]}
                while len(batch) < self._batch_size and not self._queue.empty():
                    name, aggregate_id, pending = self._queue.get_nowait()
                    batch[(name, aggregate_id)] = pending
                results = await asyncio.gather(
                    *(
                        self.flush(self._collections[n], i, pending)
                        for (n, i), pending in batch.items()
                    ),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, Exception):
                        raise result
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # engines down: the next sweep picks everything up again
                self.last_error = repr(exc)
                log.warning(
                    "outbox relay failed, will retry on the next sweep", extra={"error": repr(exc)}
                )
                await asyncio.sleep(min(self._sweep_interval, 1.0))

    async def flush(
        self,
        collection: AsyncCollection[Document],
        aggregate_id: Any,
        pending: PendingEvents | None = None,
    ) -> int:
        """Publish one aggregate's pending events in order; return how many were published.

        ``pending``: what the last write left pending (published without reading the
        document); otherwise the document is read."""
        if pending is None:
            # By _id alone: FerretDB 1.24 (SQLite) pushes only an `_id` equality down to SQL
            # and scans the whole collection for any other filter (architecture.md, decision 3).
            doc = await collection.find_one(
                {"_id": aggregate_id}, {OUTBOX: 1, PENDING: 1, WRITTEN: 1}
            )
            if not doc or doc.get(PENDING) is not True:
                return 0
            pending = pending_events(doc)
        if not pending.keys:
            return 0
        keys = pending.keys
        self._faults.reached(AFTER_STATE_WRITE)  # stored, unpublished: the next sweep publishes
        await self._publisher.publish_in_order([(e.topic, e.key, e.event) for e in pending.events])
        self._faults.reached(AFTER_PUBLISH)  # published, not cleared: republished, same ce_id
        unset = {f"{OUTBOX}.{k}": "" for k in keys}
        token = pending.token
        if token is not None:
            # Nothing was added since (same token): remove and clear in one write.
            done = await collection.update_one(
                {"_id": aggregate_id, WRITTEN: token},
                {"$unset": unset, "$set": {PENDING: False}},
            )
            if done.matched_count == 1:
                PUBLISHED.labels(collection.name).inc(len(keys))
                return len(keys)
        await collection.update_one({"_id": aggregate_id}, {"$unset": unset})
        # Clear the flag only if no new event arrived between the read and the unset.
        await collection.update_one({"_id": aggregate_id, OUTBOX: {}}, {"$set": {PENDING: False}})
        PUBLISHED.labels(collection.name).inc(len(keys))
        return len(keys)

    async def sweep(self) -> int:
        """Publish everything still pending in every collection (crash recovery)."""
        published = 0
        for collection in self._collections.values():
            oldest: datetime | None = None
            async for doc in collection.find({PENDING: True}, {OUTBOX: 1}):
                for entry in (doc.get(OUTBOX) or {}).values():
                    t = _stored_event(entry).event.time
                    oldest = t if oldest is None or t < oldest else oldest
                published += await self.flush(collection, doc["_id"])
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            OLDEST_PENDING.labels(collection.name).set(age)
        return published
