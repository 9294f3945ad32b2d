"""``zerocontact topics tail`` against the real broker, run as the CLI a person runs.

The broker is shared, so the records go to topics of this test's own; ``--decode-as`` decodes
them with the catalog rows of identity, loan and a dead-letter topic.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import Engines
from zerocontact.identity.handlers.events import sms_code_requested
from zerocontact.identity.v1 import events_pb2 as identity_events
from zerocontact.loan.domain.loans import Application
from zerocontact.loan.events import application_submitted
from zerocontact.platform.kafka import EventPublisher
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxEvent, protobuf_event

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "zerocontact"
PHONE = "+8613812345678"
RESIDENT_ID = "11010519491231002X"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _customer_registered(topic: str, customer_id: str) -> OutboxEvent:
    # Identity publishes already-masked values; the raw ones here prove tail masks anyway.
    wrapper = identity_events.IdentityEvent()
    e = wrapper.customer_registered
    e.customer_id, e.id_number_masked, e.phone_masked, e.birth_year = (
        customer_id,
        RESIDENT_ID,
        PHONE,
        1949,
    )
    return protobuf_event(
        wrapper, topic=topic, key=customer_id, source="/test", traceparent=TRACEPARENT
    )


def _loan_submitted(topic: str, party_id: str) -> OutboxEvent:
    app = Application(
        "app-1", party_id, "merchant-310", Money.of("5000", "CNY"), 12, "stock", "device-1",
        "10.0.0.1", datetime.now(UTC),
    )  # fmt: skip
    return application_submitted(app, topic=topic)


async def tail_json(engines: Engines, *args: str) -> list[dict[str, Any]]:
    """Run ``zerocontact topics tail ... --json`` and parse its lines."""
    command = [str(CLI), "topics", "tail", *args, "--json", "--bootstrap", engines.kafka_bootstrap]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
async def publisher(engines: Engines) -> AsyncIterator[EventPublisher]:
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="tail-test")
    await publisher.start(wait=True)
    yield publisher
    await publisher.stop()


async def test_identity_records_decode_with_personal_fields_masked(
    engines: Engines,
    publisher: EventPublisher,
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("tail-identity", partitions=3)
    for item in [_customer_registered(topic, "cust-1"), _customer_registered(topic, "cust-2")]:
        await publisher.publish(item.topic, item.key, item.event)
    await publisher.publish_raw(topic, key=b"cust-1", value=b"\xff\xfe not protobuf", headers=[])

    lines = await tail_json(
        engines, topic, "--decode-as", "identity.events.v1", "--from-beginning", "--key", "cust-1"
    )

    assert len(lines) == 2  # cust-2's record is filtered out; the bad one is shown, not fatal
    registered, bad = sorted(lines, key=lambda line: line["error"] is not None)
    assert registered["topic"] == topic and registered["key"] == "cust-1"
    assert registered["type"] == "zerocontact.identity.v1.CustomerRegistered"
    assert registered["event"] == {
        "customer_id": "cust-1",
        "id_number_masked": "***002X",
        "phone_masked": "***5678",
        "birth_year": 1949,
    }
    assert registered["headers"]["ce_type"] == "zerocontact.identity.v1.CustomerRegistered"
    # the publish span's context: the stored trace, the publish span's own span id
    assert registered["headers"]["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
    assert registered["headers"]["ce_subject"] == "cust-1"
    assert registered["decoded_as"] == "identity.events.v1" and registered["error"] is None
    assert bad["event"] is None and bad["size"] == 15
    assert bad["error"].startswith("not a zerocontact.identity.v1.IdentityEvent")
    assert PHONE not in json.dumps(lines) and RESIDENT_ID not in json.dumps(lines)


async def test_identity_notifications_decode_with_the_phone_masked(
    engines: Engines,
    publisher: EventPublisher,
    create_topic: Callable[..., Awaitable[str]],
) -> None:
    topic = await create_topic("tail-notify", partitions=3)
    now = datetime.now(UTC)
    sms = sms_code_requested(
        delivery_id="d-1", customer_id="cust-1", phone_masked=PHONE, template="login",
        expires_at=now + timedelta(minutes=5), requested_at=now, topic=topic,
    )  # fmt: skip
    await publisher.publish(sms.topic, sms.key, sms.event)

    [line] = await tail_json(
        engines, topic, "--decode-as", "identity.notifications.v1", "--from-beginning"
    )

    assert line["type"] == "zerocontact.identity.v1.SmsCodeRequested"
    assert line["event"]["phone_masked"] == "***5678"
    assert line["event"]["delivery_id"] == "d-1"


async def test_loan_records_and_their_dead_letters_decode(
    engines: Engines,
    publisher: EventPublisher,
    create_topic: Callable[..., Awaitable[str]],
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    topic = await create_topic("tail-loan", partitions=3)
    await kafka_admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])
    submitted = _loan_submitted(topic, "party-7")
    await publisher.publish(submitted.topic, submitted.key, submitted.event)
    dead = [
        *submitted.event.headers(),
        ("dlq_error", b"party party-7 is unknown"),
        ("dlq_error_type", b"PartyNotFound"),
        ("dlq_original_topic", topic.encode()),
        ("dlq_original_partition", b"1"),
        ("dlq_original_offset", b"0"),
        ("dlq_consumer_group", b"signals"),
    ]
    await publisher.publish_raw(
        f"{topic}.dlq", key=b"party-7", value=submitted.event.data, headers=dead
    )

    [loan] = await tail_json(engines, topic, "--decode-as", "loan.events.v1", "--since", "10m")
    assert loan["type"] == "zerocontact.loan.v1.LoanApplicationSubmitted"
    assert loan["event"]["party_id"] == "party-7"
    assert loan["event"]["amount"]["currency_code"] == "CNY"

    [letter] = await tail_json(
        engines, f"{topic}.dlq", "--decode-as", "loan.events.v1.dlq", "--from-beginning"
    )
    assert letter["event"] == loan["event"] and letter["decoded_as"] == "loan.events.v1"
    assert letter["headers"]["dlq_error"] == "party party-7 is unknown"
    assert letter["headers"]["dlq_original_topic"] == topic

    shown = await asyncio.to_thread(
        subprocess.run,
        [str(CLI), "topics", "tail", f"{topic}.dlq", "--decode-as", "loan.events.v1.dlq",
         "--bootstrap", engines.kafka_bootstrap],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for text in ("LoanApplicationSubmitted", "dlq_error", "party party-7 is unknown", "app-1"):
        assert text in shown.stdout
    assert "1 record" in shown.stderr


async def test_a_missing_topic_is_one_line_and_is_not_created(
    engines: Engines, kafka_admin: AIOKafkaAdminClient
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [str(CLI), "topics", "tail", "nobody.events.v1", "--bootstrap", engines.kafka_bootstrap],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: topic nobody.events.v1 does not exist on Kafka at {engines.kafka_bootstrap}"
    )
    assert "nobody.events.v1" not in await kafka_admin.list_topics()  # not auto-created


async def test_follow_waits_for_a_record_published_after_it_started(
    engines: Engines, publisher: EventPublisher, create_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await create_topic("tail-follow", partitions=3)
    process = await asyncio.create_subprocess_exec(
        str(CLI), "topics", "tail", topic, "--decode-as", "loan.events.v1", "--follow",
        "--limit", "1", "--json", "--bootstrap", engines.kafka_bootstrap,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.sleep(3)  # the tail has assigned the (empty) partitions by now
        assert process.returncode is None  # an empty topic does not end a --follow
        submitted = _loan_submitted(topic, "party-9")
        await publisher.publish(submitted.topic, submitted.key, submitted.event)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
    [line] = [json.loads(text) for text in stdout.decode().splitlines()]
    assert line["key"] == "party-9" and line["event"]["party_id"] == "party-9"
