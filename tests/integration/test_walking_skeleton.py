"""The walking skeleton on real engines: HTTP → aggregate + outbox → Kafka → idempotent projection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pymongo import AsyncMongoClient

from tests.integration.catalog_keys import check_record
from tests.integration.harness import (
    Engines,
    RunningApp,
    count_records,
    eventually,
    random_key,
    serve,
)
from tests.integration.spans import hex_trace, recorded_spans, span_id, trace_id
from zerocontact.platform.kafka.cloudevents import dataschema_for
from zerocontact.skeleton.app import create_accounts_app, create_projection_app
from zerocontact.skeleton.settings import AccountsSettings, ProjectionSettings
from zerocontact.skeleton.v1 import events_pb2

PHONE = "+8613812345678"


@dataclass
class Skeleton:
    accounts: RunningApp
    projection: RunningApp
    topic: str
    accounts_db: str
    projection_db: str
    engines: Engines


@pytest.fixture
async def skeleton(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    kafka_admin: Any,
    unique_name: Callable[[str], str],
) -> AsyncIterator[Skeleton]:
    topic = await create_topic("skeleton-events", partitions=3)
    from aiokafka.admin import NewTopic

    await kafka_admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])
    accounts_db = unique_name("acc").replace("-", "_")[:60]
    projection_db = unique_name("proj").replace("-", "_")[:60]
    accounts = create_accounts_app(
        AccountsSettings(
            kafka_bootstrap_servers=engines.kafka_bootstrap,
            mongodb_uri=engines.mongodb_uri,
            mongodb_database=accounts_db,
            topic=topic,
            outbox_sweep_interval_s=0.5,
            pii_key=random_key(),
            pii_index_key=random_key(),
        )
    )
    projection = create_projection_app(
        ProjectionSettings(
            kafka_bootstrap_servers=engines.kafka_bootstrap,
            mongodb_uri=engines.mongodb_uri,
            mongodb_database=projection_db,
            topic=topic,
            consumer_group=unique_name("group"),
        )
    )
    async with serve(accounts) as acc, serve(projection) as proj:
        yield Skeleton(acc, proj, topic, accounts_db, projection_db, engines)


async def open_account(s: Skeleton, key: str = "open-key-0001", **overrides: str) -> dict[str, Any]:
    body = {"holder_name": "Li Wei", "holder_phone": PHONE, "currency": "CNY"} | overrides
    r = await s.accounts.client.post("/v1/accounts", json=body, headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def deposit(s: Skeleton, account_id: str, key: str, amount: str, **headers: str) -> Any:
    return await s.accounts.client.post(
        f"/v1/accounts/{account_id}/deposits",
        json={"amount": amount, "currency": "CNY"},
        headers={"Idempotency-Key": key, **headers},
    )


async def balance(s: Skeleton, account_id: str) -> dict[str, Any] | None:
    r = await s.projection.client.get(f"/v1/balances/{account_id}")
    return r.json() if r.status_code == 200 else None


async def read_topic(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


@pytest.fixture
def spans(skeleton: Skeleton) -> Iterator[InMemorySpanExporter]:
    with recorded_spans() as exporter:  # after the apps configured tracing
        yield exporter


async def test_deposit_travels_from_http_to_the_projection(
    skeleton: Skeleton, mongo_client: AsyncMongoClient[dict[str, Any]], spans: InMemorySpanExporter
) -> None:
    account = await open_account(skeleton)
    assert account["holder_phone"] == "+86*******5678"
    # The caller's trace (as the gateway's would be) travels in the request's traceparent.
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        r = await deposit(skeleton, account["account_id"], "dep-000000001", "125.50")
    assert r.status_code == 200, r.text
    assert r.json()["balance_minor"] == 12550

    # The aggregate is stored with its phone encrypted, and its outbox drains.
    accounts = mongo_client[skeleton.accounts_db]["accounts"]

    async def drained() -> dict[str, Any] | None:
        doc = await accounts.find_one({"_id": account["account_id"]})
        return doc if doc and doc["_outbox"] == {} and doc["_outbox_pending"] is False else None

    doc = await eventually(drained)
    assert doc["balance_minor"] == 12550
    assert doc["version"] == 2
    assert PHONE not in str(doc)
    assert doc["holder_phone_masked"] == "+86*******5678"

    # The events are protobuf with CloudEvents headers, keyed by the account.
    records = await read_topic(skeleton.engines.kafka_bootstrap, skeleton.topic, 2)
    assert {r.key for r in records} == {account["account_id"].encode()}
    for record in records:  # keyed and described as proto/topics.toml says
        check_record("skeleton.events.v1", record.key, record.headers, record.value)
    opened, deposited = records  # one key, one partition: write order
    headers = dict(deposited.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"zerocontact.skeleton.v1.DepositRecorded"
    assert headers["ce_source"] == b"/zerocontact/skeleton/accounts"
    assert headers["ce_subject"] == account["account_id"].encode()
    assert headers["content-type"] == b"application/protobuf"
    assert (
        headers["ce_dataschema"] == dataschema_for("zerocontact.skeleton.v1.SkeletonEvent").encode()
    )
    assert headers["ce_id"] and headers["ce_time"].endswith(b"Z")
    # The event continues the caller's trace; the header names the relay's publish span.
    assert trace_id(headers["traceparent"]) == hex_trace(caller)
    assert span_id(headers["traceparent"]) != format(caller.get_span_context().span_id, "016x")
    event = events_pb2.SkeletonEvent.FromString(deposited.value)
    assert event.deposit_recorded.amount.minor_units == 12550
    assert event.deposit_recorded.amount.currency_code == "CNY"
    assert event.deposit_recorded.balance_after.minor_units == 12550
    opened_event = events_pb2.SkeletonEvent.FromString(opened.value)
    assert opened_event.account_opened.holder_phone == "+86*******5678"
    assert PHONE.encode() not in opened.value

    # The second app applied it, in a process span that is the publish span's child.
    got = await eventually(lambda: _balance_is(skeleton, account["account_id"], 12550))
    assert got["deposits"] == 1
    in_trace = [s for s in spans.get_finished_spans() if hex_trace(s) == hex_trace(caller)]
    publish = next(s for s in in_trace if s.name == f"{skeleton.topic} publish")
    process = next(s for s in in_trace if s.name == f"{skeleton.topic} process")
    assert format(publish.context.span_id, "016x") == span_id(headers["traceparent"])
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    server = next(s for s in in_trace if s.kind is trace.SpanKind.SERVER)
    assert publish.parent is not None and publish.parent.span_id == server.context.span_id
    metrics = (await skeleton.accounts.client.get("/metrics")).text
    assert 'zc_outbox_published_total{collection="accounts"}' in metrics
    metrics = (await skeleton.projection.client.get("/metrics")).text
    assert "zc_consumer_events_total{" in metrics


async def _balance_is(s: Skeleton, account_id: str, minor: int) -> dict[str, Any] | None:
    got = await balance(s, account_id)
    return got if got and got["balance_minor"] == minor else None


async def test_redelivered_event_changes_nothing(skeleton: Skeleton) -> None:
    account = await open_account(skeleton)
    await deposit(skeleton, account["account_id"], "dep-000000001", "10.00")
    await eventually(lambda: _balance_is(skeleton, account["account_id"], 1000))

    records = await read_topic(skeleton.engines.kafka_bootstrap, skeleton.topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=skeleton.engines.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(3):  # the same deposit event, delivered again (same ce_id)
            await producer.send_and_wait(
                skeleton.topic,
                records[1].value,
                key=records[1].key,
                headers=list(records[1].headers),
            )
    finally:
        await producer.stop()
    # A later, different deposit proves the redeliveries were consumed before it.
    await deposit(skeleton, account["account_id"], "dep-000000002", "0.01")
    got = await eventually(lambda: _balance_is(skeleton, account["account_id"], 1001))
    assert got["deposits"] == 2


async def test_poison_messages_go_to_the_dlq_and_the_partition_moves_on(skeleton: Skeleton) -> None:
    account = await open_account(skeleton)
    key = account["account_id"].encode()
    producer = AIOKafkaProducer(bootstrap_servers=skeleton.engines.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(skeleton.topic, b"not a cloud event", key=key)
        await producer.send_and_wait(
            skeleton.topic,
            b"\xff\xff\xff garbage",
            key=key,
            headers=[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"poison-1"),
                ("ce_source", b"/test"),
                ("ce_type", b"zerocontact.skeleton.v1.DepositRecorded"),
            ],
        )
        # A newer producer's event (oneof field 99, unknown here) is skipped, not dead-lettered.
        await producer.send_and_wait(
            skeleton.topic,
            b"\x9a\x06\x00",  # field 99, length-delimited, empty
            key=key,
            headers=[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"future-1"),
                ("ce_source", b"/test"),
                ("ce_type", b"zerocontact.skeleton.v1.AccountClosed"),
            ],
        )
    finally:
        await producer.stop()
    await deposit(skeleton, account["account_id"], "dep-000000001", "3.00")
    await eventually(lambda: _balance_is(skeleton, account["account_id"], 300))

    assert await count_records(skeleton.engines.kafka_bootstrap, f"{skeleton.topic}.dlq") == 2
    dead = await read_topic(skeleton.engines.kafka_bootstrap, f"{skeleton.topic}.dlq", 2)
    assert sorted(r.value for r in dead) == sorted([b"not a cloud event", b"\xff\xff\xff garbage"])
    for record in dead:
        headers = dict(record.headers)
        assert headers["dlq_original_topic"] == skeleton.topic.encode()
        assert headers["dlq_error"]
        assert headers["dlq_error_type"] in {b"MalformedEvent", b"DecodeError"}
        assert record.key == key


async def test_same_idempotency_key_returns_the_first_result(
    skeleton: Skeleton, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    first = await open_account(skeleton, key="open-key-same")
    again = await open_account(skeleton, key="open-key-same")
    assert again["account_id"] == first["account_id"]
    other = await skeleton.accounts.client.post(
        "/v1/accounts",
        json={"holder_name": "Zhang San", "holder_phone": PHONE, "currency": "CNY"},
        headers={"Idempotency-Key": "open-key-same"},
    )
    assert other.status_code == 409
    assert other.json()["title"] == "idempotency_conflict"

    r1 = await deposit(skeleton, first["account_id"], "dep-twice-0001", "5.00")
    r2 = await deposit(skeleton, first["account_id"], "dep-twice-0001", "5.00")
    assert r1.json()["balance_minor"] == r2.json()["balance_minor"] == 500
    r3 = await deposit(skeleton, first["account_id"], "dep-twice-0001", "6.00")
    assert r3.status_code == 409
    assert await mongo_client[skeleton.accounts_db]["accounts"].count_documents({}) == 1
    await eventually(lambda: _balance_is(skeleton, first["account_id"], 500))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"holder_name": "Li Wei", "holder_phone": "13812345678", "currency": "CNY"},
            "body.holder_phone",
        ),
        ({"holder_name": "", "holder_phone": PHONE, "currency": "CNY"}, "body.holder_name"),
        ({"holder_name": "Li Wei", "holder_phone": PHONE, "currency": "yuan"}, "body.currency"),
    ],
)
async def test_bad_account_input_is_refused_with_the_field_and_changes_nothing(
    skeleton: Skeleton,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    body: dict[str, str],
    field: str,
) -> None:
    r = await skeleton.accounts.client.post(
        "/v1/accounts", json=body, headers={"Idempotency-Key": "open-key-bad1"}
    )
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["errors"]]
    assert "13812345678" not in r.text  # personal data is never echoed back
    assert await mongo_client[skeleton.accounts_db]["accounts"].count_documents({}) == 0


@pytest.mark.parametrize(
    ("amount", "key", "status"),
    [
        ("0", "dep-000000001", 422),
        ("-5", "dep-000000001", 422),
        ("1.005", "dep-000000001", 422),  # CNY has two decimals
        ("10.00", "bad key!", 422),
        ("1000000000000", "dep-000000001", 422),
    ],
)
async def test_bad_deposit_is_refused_and_changes_nothing(
    skeleton: Skeleton, amount: str, key: str, status: int
) -> None:
    account = await open_account(skeleton)
    r = await deposit(skeleton, account["account_id"], key, amount)
    assert r.status_code == status, r.text
    after = await skeleton.accounts.client.get(f"/v1/accounts/{account['account_id']}")
    assert after.json()["balance_minor"] == 0
    assert after.json()["version"] == 1


async def test_unknown_account_is_404(skeleton: Skeleton) -> None:
    r = await deposit(skeleton, "0190c4c2-0000-7000-8000-000000000000", "dep-000000001", "1.00")
    assert r.status_code == 404
