"""The durable webhook dispatcher: topics → delivery log → signed POSTs.

**Ingest.** One consumer group per gateway deployment (``webhook_consumer_group``; the
replicas share the partitions) reads the loan, payroll and risk topics. For each event of a
type in :data:`~.events.EVENT_TYPES` it finds the owning partner (the gateway's ownership
records, as the streams do) and inserts one delivery per active endpoint of that partner
subscribed to the type and registered before the event happened. Inserts are keyed
``<endpoint>:<event id>``: a record read again (a restart, a rebalance) adds nothing. Offsets
are committed after the inserts, never past an event still waiting for its owner record (the
gateway records ownership right after the service answers, which may be after the service's
event is read; such an event waits up to ``webhook_owner_grace_s``, then is not the
gateway's). A record that cannot be read or applied goes to ``<topic>.dlq`` under the group's
name before the offset moves past it (:mod:`~zerocontact.gateway.dead_letters`); a database or
broker away holds that record's partition back and tries it again.

**Send.** A periodic job (``webhook_tick_s``, woken by new deliveries) runs one indexed query
for deliveries due, claims each with an atomic update (a lease: with several replicas, one
attempt per delivery at a time; a dead replica's lease lapses after ``webhook_lease_s``) and
POSTs the body signed (:mod:`.signing`). 2xx: SUCCEEDED. Otherwise the next attempt is due
after an exponential back-off with jitter (``webhook_retry_base_s`` doubling up to
``webhook_retry_max_s``), until ``webhook_max_age_s`` after the delivery was queued: FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from zerocontact.gateway.dead_letters import DeadLetters
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.store import OwnershipStore
from zerocontact.gateway.watch import Notice, read
from zerocontact.gateway.webhooks.events import ALL, EVENT_TYPES, EventType, body
from zerocontact.gateway.webhooks.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, signature
from zerocontact.gateway.webhooks.store import Endpoint, WebhookStore, utcnow
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.kafka.consumer import (
    IDLE_FETCH_WAIT_MS,
    IDLE_FETCHER_POLL_MS,
    TRANSIENT_ERRORS,
)

log = logging.getLogger(__name__)


def backoff(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds before the next attempt after ``attempts`` failures: exponential, capped,
    with "equal jitter" (half fixed, half random) so receivers coming back are not hit by
    every sender at once."""
    delay = float(min(base_s * 2.0 ** max(attempts - 1, 0), max_s))
    return delay / 2 + random.uniform(0, delay / 2)


class WebhookDispatcher:
    """Ingests events into the delivery log and sends due deliveries."""

    def __init__(
        self,
        settings: GatewaySettings,
        store: WebhookStore,
        owners: OwnershipStore,
        dead_letters: DeadLetters,
    ) -> None:
        self.settings = settings
        self.store = store
        self.owners = owners
        self.dead_letters = dead_letters  # signed with the consumer group's name
        self._endpoints: dict[str, list[Endpoint]] = {}
        self._by_id: dict[str, Endpoint] = {}
        self._loaded = -1e9
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.sender = PeriodicJob(
            "gateway-webhook-sender",
            settings.webhook_tick_s,
            self._send_tick,
            idle_interval_s=settings.webhook_idle_tick_s,
        )
        self._limit = asyncio.Semaphore(settings.webhook_concurrency)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the consumer group and start sending."""
        s = self.settings
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=s.webhook_timeout_s),
            headers={"User-Agent": "zerocontact-webhooks/1"},
        )
        consumer = AIOKafkaConsumer(
            s.loan_topic,
            s.payroll_topic,
            s.risk_topic,
            **s.kafka_connection().client_kwargs(),
            group_id=s.webhook_consumer_group,
            enable_auto_commit=False,
            # A new deployment reads what the topics hold; only events after an endpoint was
            # registered are delivered to it.
            auto_offset_reset="earliest",
            fetch_max_wait_ms=IDLE_FETCH_WAIT_MS,  # answered at once when a record arrives
            consumer_timeout_ms=IDLE_FETCHER_POLL_MS,
        )
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._ingest_loop(), name="gateway-webhook-ingest")
        self.sender.start()

    async def stop(self) -> None:
        """Stop ingesting and sending (an attempt in flight is cancelled: its lease lapses
        and it is tried again)."""
        await self.sender.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._http is not None:
            await self._http.close()

    def endpoints_changed(self) -> None:
        """Re-read the endpoints before the next event (one was created or deleted here)."""
        self._loaded = -1e9

    # -- ingest ---------------------------------------------------------------------------

    async def _endpoints_of(self, partner_id: str) -> list[Endpoint]:
        await self._refresh()
        return self._endpoints.get(partner_id, [])

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded < self.settings.webhook_endpoint_cache_s:
            return
        endpoints = await self.store.active_endpoints()
        by_partner: dict[str, list[Endpoint]] = {}
        for endpoint in endpoints:
            by_partner.setdefault(endpoint.partner_id, []).append(endpoint)
        self._endpoints = by_partner
        self._by_id = {e.endpoint_id: e for e in endpoints}
        self._loaded = time.monotonic()

    async def _owner(self, notice: Notice, event_type: EventType) -> str | None:
        for kind, field in event_type.owners:
            resource_id = getattr(notice.message, field, "")
            if resource_id:
                owner = await self.owners.owner(kind, resource_id)
                if owner is not None:
                    return owner
        return None

    async def ingest(self, notice: Notice) -> bool:
        """Queue the deliveries of one event; False when its owner is not known (yet)."""
        event_type = EVENT_TYPES.get(notice.kind)
        if event_type is None:
            return True
        await self._refresh()
        if not self._endpoints:  # nobody subscribed to anything: no owner look-up
            return True
        owner = await self._owner(notice, event_type)
        if owner is None:
            return False
        added = False
        for endpoint in await self._endpoints_of(owner):
            if not (event_type.name in endpoint.event_types or ALL in endpoint.event_types):
                continue
            if notice.time < endpoint.created_at:
                continue  # happened before the endpoint was registered
            added |= await self.store.add_delivery(
                endpoint, event_id=notice.event_id, event_type=event_type.name,
                event_time=notice.time, body=body(notice, event_type),
                max_age_s=self.settings.webhook_max_age_s,
            )  # fmt: skip
        if added:
            self.sender.wake()
        return True

    async def _ingest_loop(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        waiting: deque[tuple[TopicPartition, int, Notice]] = deque()  # owner not known yet
        consumed: dict[TopicPartition, int] = {}  # next offset per partition read so far
        retried = time.monotonic()
        delay = 0.1  # after a transient failure: capped exponential back-off
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=500)
                changed, held = bool(batches), False
                for tp, records in batches.items():
                    for record in records:
                        try:
                            await self._ingest_record(tp, record, waiting)
                        except TRANSIENT_ERRORS as exc:
                            # MongoDB or Kafka away: this record and the rest of its partition
                            # are read again (the other partitions go on).
                            log.warning(
                                "webhook ingest failed; retrying",
                                extra={"topic": tp.topic, "offset": record.offset,
                                       "error": str(exc)},
                            )  # fmt: skip
                            if tp in consumer.assignment():
                                consumer.seek(tp, record.offset)
                            held = True
                            break
                        consumed[tp] = record.offset + 1
                if waiting and time.monotonic() - retried >= 0.5:
                    retried = time.monotonic()
                    for item in list(waiting):
                        if await self.ingest(item[2]) or not self._young(item[2]):
                            waiting.remove(item)
                            changed = True
                if changed:
                    await self._commit(consumer, consumed, waiting)
                if held:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                else:
                    delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:  # the commit or a waiting event's retry: try again later
                log.exception("webhook ingest failed; retrying")
                await asyncio.sleep(1.0)

    async def _ingest_record(
        self,
        tp: TopicPartition,
        record: Any,
        waiting: deque[tuple[TopicPartition, int, Notice]],
    ) -> None:
        """Queue one record's deliveries (or its wait for an owner); dead-letter it when it
        cannot be read or applied (decision 6: anything but a transient failure, which raises)."""
        s = self.settings
        try:
            pairs = read(
                record, loan_topic=s.loan_topic, payroll_topic=s.payroll_topic,
                risk_topic=s.risk_topic,
            )  # fmt: skip
            if not pairs or pairs[0][1].kind not in EVENT_TYPES:
                return
            notice = pairs[0][1]
            if not await self.ingest(notice) and self._young(notice):
                waiting.append((tp, record.offset, notice))
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # poison: to <topic>.dlq before the offset moves past it
            await self.dead_letters.send(record, exc)

    def _young(self, notice: Notice) -> bool:
        age = (datetime.now(UTC) - notice.time).total_seconds()
        return age < self.settings.webhook_owner_grace_s

    @staticmethod
    async def _commit(
        consumer: AIOKafkaConsumer,
        consumed: dict[TopicPartition, int],
        waiting: deque[tuple[TopicPartition, int, Notice]],
    ) -> None:
        offsets = dict(consumed)
        for tp, offset, _ in waiting:  # never past an event still waiting for its owner
            offsets[tp] = min(offsets.get(tp, offset), offset)
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets:
            await consumer.commit(offsets)

    # -- send -----------------------------------------------------------------------------

    async def _send_tick(self) -> bool:
        """One tick of the sender; False when nothing was due (the job then ticks less often,
        up to ``webhook_idle_tick_s``; a new delivery wakes it)."""
        return await self.send_due() > 0

    async def send_due(self) -> int:
        """Claim and attempt every due delivery (one indexed query when none is due)."""
        now = utcnow()
        due = await self.store.due(now, self.settings.webhook_claims_per_tick)
        if not due:
            return 0
        claimed = [
            doc
            for doc in [await self.store.claim(d, now, self.settings.webhook_lease_s) for d in due]
            if doc is not None
        ]
        await asyncio.gather(*(self._attempt(doc) for doc in claimed))
        return len(claimed)

    async def _attempt(self, doc: dict[str, Any]) -> None:
        s = self.settings
        async with self._limit:
            await self._refresh()
            endpoint = self._by_id.get(doc["endpoint_id"])
            if endpoint is None:  # deleted since: no attempt, no retry
                await self.store.abandon(doc, "endpoint deleted")
                return
            payload = doc["body"].encode()
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(endpoint.secret, payload, stamp),
                EVENT_ID_HEADER: doc["event_id"],
            }
            error, code = "", 0
            assert self._http is not None
            try:
                async with self._http.post(
                    endpoint.url, data=payload, headers=headers, allow_redirects=False
                ) as response:
                    code = response.status
                    await response.read()
                    if not 200 <= code < 300:
                        error = f"HTTP {code}"
            except TimeoutError:
                error = f"timed out after {s.webhook_timeout_s:g} s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            now = utcnow()
            if not error:
                await self.store.succeeded(doc, code, now)
                return
            delay = backoff(int(doc.get("attempts", 0)) + 1, s.webhook_retry_base_s,
                            s.webhook_retry_max_s)  # fmt: skip
            status = await self.store.attempt_failed(doc, error, code, now, delay)
            log.info("webhook %s to %s: %s (%s)", doc["_id"], endpoint.endpoint_id, error, status)
