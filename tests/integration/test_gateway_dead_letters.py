"""The gateway's readers of the loan, payroll and risk topics follow the dead-letter contract:
a record the watch streams' event hub or the webhook dispatcher cannot read goes to
``<topic>.dlq`` with the ``dlq_*`` headers, once per reader, while the streams and the
dispatcher's partitions go on; ``zerocontact dlq replay`` puts a repaired one back and a watcher
receives it. Before, both logged a warning and skipped it: no dead letter at all.

The gateway runs alone (no service behind it: nothing here calls one) on the real broker and
FerretDB.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, eventually, random_key
from zerocontact.gateway import certs
from zerocontact.gateway.app import RunningGateway, running
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.watch import Notice
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.platform.dlq import replay_dead_letters
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.outbox import protobuf_event
from zerocontact.signals.v1 import risk_pb2

NOWHERE = "http://127.0.0.1:9"  # no service behind the gateway: nothing here calls one
DLQ_HEADERS = (
    "dlq_error", "dlq_error_type", "dlq_original_topic", "dlq_original_partition",
    "dlq_original_offset", "dlq_consumer_group",
)  # fmt: skip


@pytest.fixture
async def gateway(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> AsyncIterator[tuple[RunningGateway, GatewaySettings]]:
    topics = {role: unique_name(role) for role in ("loan", "payroll", "risk", "audit")}
    await kafka_admin.create_topics(
        [NewTopic(t, 3, 1) for t in topics.values()]
        + [NewTopic(f"{topics[r]}.dlq", 1, 1) for r in ("loan", "payroll", "risk")]
    )
    ca = certs.issue_ca()
    ca.write(tmp_path, "ca")
    certs.issue_server(ca).write(tmp_path, "server")
    database = unique_name("gw").replace("-", "_")[:60]
    settings = GatewaySettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
        mongodb_database=database, grpc_host="127.0.0.1", grpc_port=0, http_port=0,
        tls_cert_file=str(tmp_path / "server.crt"), tls_key_file=str(tmp_path / "server.key"),
        client_ca_file=str(tmp_path / "ca.crt"), credential_pepper=SecretStr(random_key()),
        pii_key=SecretStr(random_key()), pii_index_key=SecretStr(random_key()),
        loan_topic=topics["loan"],
        payroll_topic=topics["payroll"], risk_topic=topics["risk"], audit_topic=topics["audit"],
        webhook_consumer_group=unique_name("hooks"), watch_reader=unique_name("watch"),
        identity_url=NOWHERE, loan_url=NOWHERE, payroll_url=NOWHERE, assistant_url=NOWHERE,
    )  # fmt: skip
    async with AsyncExitStack() as stack:
        stack.push_async_callback(mongo_client.drop_database, database)
        gw = await stack.enter_async_context(running(settings))
        yield gw, settings


def _approved(application_id: str) -> CloudEvent:
    wrapper = loan_pb.LoanEvent(
        loan_approved=loan_pb.LoanApproved(application_id=application_id, party_id="party-1")
    )
    return protobuf_event(wrapper, topic="loan", key="party-1", source="/test/loan").event


def _alert() -> CloudEvent:
    wrapper = risk_pb2.RiskEvent(
        risk_alert=risk_pb2.RiskAlert(alert_id=str(uuid.uuid4()), party_id="party-1")
    )
    return protobuf_event(wrapper, topic="risk", key="party-1", source="/test/signals").event


async def _read(engines: Engines, topic: str, count: int) -> list[dict[str, bytes]]:
    """The headers of the first ``count`` records of a one-partition topic (waits for them)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=engines.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, bytes]] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)

        async def enough() -> bool:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(dict(r.headers) for r in batch)
            return len(found) >= count

        await eventually(enough, within_s=60, interval=0.1)
        await asyncio.sleep(1)  # and no more than that
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            found.extend(dict(r.headers) for r in batch)
    finally:
        await consumer.stop()
    return found


async def _next(queue: asyncio.Queue[Notice], within_s: float = 60) -> Notice:
    return await asyncio.wait_for(queue.get(), within_s)


async def _lag(engines: Engines, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=engines.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in range(3)]
        ends = await consumer.end_offsets(partitions)
        return sum(e - (committed[tp].offset if tp in committed else 0) for tp, e in ends.items())
    finally:
        await consumer.stop()
        await admin.close()


async def test_unreadable_records_are_dead_lettered_by_both_readers_and_the_streams_go_on(
    engines: Engines, gateway: tuple[RunningGateway, GatewaySettings]
) -> None:
    gw, settings = gateway
    hub = gw.gateway.hub
    application = str(uuid.uuid4())
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all")
    await producer.start()
    send: Callable[..., Awaitable[Any]] = producer.send_and_wait
    try:
        with hub.watch(f"application:{application}") as queue, hub.watch("alerts") as alerts:
            # loan: a truncated value, then a good event on the same partition
            good = _approved(application)
            await send(settings.loan_topic, good.data[: len(good.data) // 2], key=b"party-1",
                       partition=0, headers=good.headers())  # fmt: skip
            later = _approved(application)
            await send(settings.loan_topic, later.data, key=b"party-1", partition=0,
                       headers=later.headers())  # fmt: skip
            assert (await _next(queue)).event_id == later.id  # the stream went on
            # risk: an alert without its ce_id, then a good one
            alert = _alert()
            headers = [(k, v) for k, v in alert.headers() if k != "ce_id"]
            await send(settings.risk_topic, alert.data, key=b"party-1", partition=1,
                       headers=headers)  # fmt: skip
            after = _alert()
            await send(settings.risk_topic, after.data, key=b"party-1", partition=1,
                       headers=after.headers())  # fmt: skip
            assert (await _next(alerts)).event_id == after.id
            # payroll: a value that is not a PayrollEvent (a missing field tag)
            await send(settings.payroll_topic, b"\xff\xff\xff", key=b"party-1", partition=2,
                       headers=_alert().headers())  # fmt: skip

            readers = {settings.webhook_consumer_group, settings.watch_reader}
            for topic, partition, offset, error in (
                (settings.loan_topic, 0, 0, "DecodeError"),
                (settings.risk_topic, 1, 0, "MalformedEvent"),
                (settings.payroll_topic, 2, 0, "DecodeError"),
            ):
                letters = await _read(engines, f"{topic}.dlq", 2)
                assert len(letters) == 2, (topic, letters)  # one per reader, nothing else
                assert {h["dlq_consumer_group"].decode() for h in letters} == readers
                for h in letters:
                    assert all(h.get(name) for name in DLQ_HEADERS), h
                    assert h["dlq_original_topic"].decode() == topic
                    assert int(h["dlq_original_partition"]) == partition
                    assert int(h["dlq_original_offset"]) == offset
                    assert h["dlq_error_type"].decode() == error

            # the dispatcher's partitions did not stop at the poison: its group committed the end
            async def caught_up() -> bool:
                lags = [
                    await _lag(engines, settings.webhook_consumer_group, t)
                    for t in (settings.loan_topic, settings.payroll_topic, settings.risk_topic)
                ]
                return not any(lags)

            await eventually(caught_up, within_s=60, interval=0.5)

            # a record whose only fault was a header its producer left out: repaired on replay
            lost = _approved(application)
            await send(settings.loan_topic, lost.data, key=b"party-1", partition=0,
                       headers=[(k, v) for k, v in lost.headers() if k != "ce_specversion"])  # fmt: skip
            await _read(engines, f"{settings.loan_topic}.dlq", 4)
            report = await replay_dead_letters(
                bootstrap=engines.kafka_bootstrap, dlq_topic=f"{settings.loan_topic}.dlq",
                default_headers={"ce_specversion": "1.0"},
            )  # fmt: skip
            assert report.total == 4  # two readers' copies of each of the two poison records
            assert (await _next(queue)).event_id == lost.id
    finally:
        await producer.stop()
