"""The audit trail: one ``GatewayAuditEvent{call_audited}`` record per call on ``gateway.audit.v1``.

Recording never waits on Kafka: records go into a bounded queue that a background job flushes
into the producer (batched by linger). Records carry partner, method, outcome, reason, latency
and the peer address — never request fields, so no personal data in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.gateway.v1 import audit_pb2
from zerocontact.platform.ids import new_id
from zerocontact.platform.jobs import PeriodicJob
from zerocontact.platform.kafka.cloudevents import CloudEvent, dataschema_for
from zerocontact.platform.kafka.connection import KafkaConnection, as_connection

log = logging.getLogger(__name__)


class AuditSink:
    """Queue audit records and publish them in the background."""

    def __init__(
        self, bootstrap: str | KafkaConnection, topic: str, *, capacity: int = 100_000
    ) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(
            **as_connection(bootstrap).client_kwargs(), linger_ms=20, acks=1
        )
        self._queue: asyncio.Queue[audit_pb2.GatewayCallAudited] = asyncio.Queue(capacity)
        # No pause between runs: each run waits for the first record itself.
        self._flusher = PeriodicJob("gateway-audit", 0.0, self._flush)
        self.dropped = 0
        self.flush_delay_s = 0.005

    async def start(self) -> None:
        """Connect the producer and start draining."""
        await self.producer.start()
        self._flusher.start()

    async def stop(self) -> None:
        """Publish what is queued, then stop."""
        if self._flusher.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 5)
            await self._flusher.stop()
        await self.producer.stop()

    def record(
        self,
        *,
        partner_id: str,
        method: str,
        outcome: str,
        reason: str,
        latency_us: int,
        replayed: bool,
        started_at: datetime,
        peer: str,
    ) -> None:
        """Queue one record (dropped, and counted, if the queue is full)."""
        seconds = started_at.timestamp()  # cheaper than Timestamp.FromDatetime per call
        started = Timestamp(seconds=int(seconds), nanos=started_at.microsecond * 1000)
        record = audit_pb2.GatewayCallAudited(
            call_id=new_id(), partner_id=partner_id, method=method, outcome=outcome,
            reason=reason, latency_us=latency_us, replayed=replayed, started_at=started,
            peer=peer,
        )  # fmt: skip
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _flush(self) -> None:
        """Publish one batch: wait for a record, then take what queued within the delay."""
        batch = [await self._queue.get()]
        # Publish after the calls that queued these have answered (the producer batches
        # by linger anyway): the audit trail stays off the calls' latency.
        await asyncio.sleep(self.flush_delay_s)
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        for record in batch:
            try:
                event = CloudEvent(
                    id=record.call_id,
                    source="/zerocontact/gateway",
                    type=audit_pb2.GatewayCallAudited.DESCRIPTOR.full_name,
                    subject=record.partner_id or "-",
                    data=audit_pb2.GatewayAuditEvent(call_audited=record).SerializeToString(),
                    dataschema=dataschema_for(audit_pb2.GatewayAuditEvent.DESCRIPTOR.full_name),
                )
                await self.producer.send(
                    self.topic, event.data, key=event.subject.encode(), headers=event.headers()
                )
            except Exception:  # the audit trail must not take the gateway down
                log.exception("audit record not published")
            finally:
                self._queue.task_done()
