"""The idempotent event publisher every service uses (one per process, started in the lifespan)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import RecordMetadata

from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.platform.telemetry import publish_span

log = logging.getLogger(__name__)


class EventPublisher:
    """Publishes CloudEvents with an idempotent producer (``acks=all``).

    Keys are the party (or aggregate) the event is about, so that one party's events stay
    ordered on one partition. ``start`` tolerates a broker that is down: it keeps trying in
    the background and :meth:`ready` stays false until the broker answers.
    """

    def __init__(
        self, *, bootstrap_servers: str | KafkaConnection, client_id: str, linger_ms: int = 5
    ) -> None:
        self._connection = as_connection(bootstrap_servers)
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def start(self, *, wait: bool = False) -> None:
        """Connect, in the background unless ``wait``."""
        self._connect_task = asyncio.create_task(self._connect(), name=f"{self._client_id}-connect")
        if wait:
            await self._started.wait()

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            producer = AIOKafkaProducer(
                **self._connection.client_kwargs(),
                client_id=self._client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=self._linger_ms,
                request_timeout_ms=15_000,
            )
            try:
                await producer.start()
            except Exception as exc:  # the broker may be down at start-up: keep trying
                await producer.stop()
                log.warning("kafka producer cannot connect yet", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            self._started.set()
            return

    async def stop(self) -> None:
        """Flush what is buffered and disconnect."""
        if self._connect_task and not self._connect_task.done():
            self._connect_task.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _ready_producer(self) -> AIOKafkaProducer:
        await self._started.wait()
        assert self._producer is not None
        return self._producer

    async def publish(self, topic: str, key: str, event: CloudEvent) -> RecordMetadata:
        """Publish one event and wait for the broker's acknowledgement."""
        return (await self.publish_in_order([(topic, key, event)]))[0]

    async def publish_in_order(
        self, items: Sequence[tuple[str, str, CloudEvent]]
    ) -> list[RecordMetadata]:
        """Publish several events, pipelined, in the given order; wait for all acknowledgements.

        The idempotent producer keeps the order of sends to one partition even when
        batches are retried, so one aggregate's events arrive in the order they were written.
        Each event gets a ``<topic> publish`` span, child of the context stored with it, and
        the record carries that span's ``traceparent``.
        """
        producer = await self._ready_producer()
        spans = []
        futures = []
        try:
            for topic, key, event in items:
                span, traceparent = publish_span(
                    topic, event_id=event.id, event_type=event.type, traceparent=event.traceparent
                )
                spans.append(span)
                sent = dataclasses.replace(event, traceparent=traceparent)
                futures.append(
                    await producer.send(topic, sent.data, key=key.encode(), headers=sent.headers())
                )
            results = list(await asyncio.gather(*futures))
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.end()
            raise
        for span, result in zip(spans, results, strict=True):
            span.set_attribute("messaging.destination.partition.id", str(result.partition))
            span.set_attribute("messaging.kafka.offset", result.offset)
            span.end()
        return results

    async def publish_raw(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
    ) -> RecordMetadata:
        """Publish a record as it is (the dead-letter path forwards records it cannot read)."""
        producer = await self._ready_producer()
        return await producer.send_and_wait(topic, value, key=key, headers=list(headers))

    async def ready(self, within_s: float = 2.0) -> bool:
        """True when connected and a broker answers a metadata request within ``within_s``.

        The request names no topic, so the answer is the broker list alone: the check costs
        the same on a broker with ten topics or ten thousand (asking for every topic's
        metadata made each readiness check of every service decode the whole cluster).
        """
        if self._producer is None:
            return False
        client = self._producer.client
        brokers = client.cluster.brokers()
        if not brokers:
            return False
        node = min(broker.nodeId for broker in brokers)
        try:
            await asyncio.wait_for(client.send(node, MetadataRequest([])), within_s)
        except Exception:  # any failure to reach a broker means: not ready
            return False
        return True
