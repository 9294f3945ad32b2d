"""Replaying a dead-letter topic on the real broker."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import Engines, count_records
from tests.integration.test_walking_skeleton import read_topic
from zerocontact.platform.dlq import NotADeadLetterTopic, replay_dead_letters

CE = [("ce_specversion", b"1.0"), ("ce_source", b"/test"), ("ce_type", b"test.Thing")]


async def _dead_letters(engines: Engines, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(
                f"{topic}.dlq",
                f"value-{i}".encode(),
                key=b"party-1",
                headers=[
                    *CE,
                    ("ce_id", f"id-{i}".encode()),
                    ("dlq_error", b"boom"),
                    ("dlq_error_type", b"ValueError"),
                    ("dlq_original_topic", topic.encode()),
                    ("dlq_original_partition", b"0"),
                    ("dlq_original_offset", str(i).encode()),
                    ("dlq_consumer_group", b"g"),
                ],
            )
    finally:
        await producer.stop()


@pytest.fixture
async def topic_with_dlq(
    create_topic: Callable[..., Awaitable[str]], kafka_admin: AIOKafkaAdminClient
) -> str:
    topic = await create_topic("replay", partitions=3)
    await kafka_admin.create_topics([NewTopic(f"{topic}.dlq", 1, 1)])
    return topic


async def test_replay_republishes_with_original_headers_once(
    engines: Engines, topic_with_dlq: str
) -> None:
    topic = topic_with_dlq
    await _dead_letters(engines, topic, 3)

    dry = await replay_dead_letters(
        bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}.dlq", dry_run=True
    )
    assert dry.total == 3
    assert await count_records(engines.kafka_bootstrap, topic) == 0  # a dry run publishes nothing

    report = await replay_dead_letters(
        bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}.dlq", limit=2
    )
    assert report.replayed == {topic: 2}
    report = await replay_dead_letters(bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}.dlq")
    assert report.replayed == {topic: 1}  # resumes after the first two
    again = await replay_dead_letters(bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}.dlq")
    assert again.total == 0

    records = await read_topic(engines.kafka_bootstrap, topic, 3)
    assert sorted(r.value for r in records) == [b"value-0", b"value-1", b"value-2"]
    for record in records:
        headers: dict[str, Any] = dict(record.headers)
        assert record.key == b"party-1"
        assert headers["ce_type"] == b"test.Thing"
        assert headers["ce_id"] == b"id-" + record.value[-1:]
        assert not [k for k in headers if k.startswith("dlq_")]


async def test_cli_replays_and_refuses_a_topic_that_is_not_a_dlq(
    engines: Engines, topic_with_dlq: str
) -> None:
    topic = topic_with_dlq
    await _dead_letters(engines, topic, 1)
    cli = [
        sys.executable,
        "-m",
        "zerocontact.platform.cli",
        "dlq",
        "replay",
        "--bootstrap",
        engines.kafka_bootstrap,
    ]
    done = await asyncio.to_thread(
        subprocess.run, [*cli, f"{topic}.dlq"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "replayed 1 records" in done.stdout
    refused = await asyncio.to_thread(
        subprocess.run, [*cli, topic], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2
    assert "is not a dead-letter topic" in refused.stderr
    assert await count_records(engines.kafka_bootstrap, topic) == 1
    with pytest.raises(NotADeadLetterTopic, match="does not exist"):
        await replay_dead_letters(
            bootstrap=engines.kafka_bootstrap, dlq_topic=f"{topic}-missing.dlq"
        )


async def test_cli_repairs_a_header_the_producer_left_out(
    engines: Engines, topic_with_dlq: str
) -> None:
    topic = topic_with_dlq
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap)
    await producer.start()
    try:
        for i, specversion in enumerate([None, b"1.0"]):
            own = [(k, v) for k, v in CE if k != "ce_specversion"]
            if specversion is not None:
                own.append(("ce_specversion", specversion))
            await producer.send_and_wait(
                f"{topic}.dlq",
                f"value-{i}".encode(),
                key=b"party-1",
                headers=[
                    *own,
                    ("ce_id", f"id-{i}".encode()),
                    ("dlq_original_topic", topic.encode()),
                ],
            )
    finally:
        await producer.stop()
    cli = [sys.executable, "-m", "zerocontact.platform.cli", "dlq", "replay", f"{topic}.dlq",
           "--bootstrap", engines.kafka_bootstrap]  # fmt: skip
    refused = await asyncio.to_thread(
        subprocess.run, [*cli, "--default-header", "dlq_error=x"], capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "NAME=VALUE" in refused.stderr
    done = await asyncio.to_thread(
        subprocess.run, [*cli, "--default-header", "ce_specversion=1.0"], capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = await read_topic(engines.kafka_bootstrap, topic, 2)
    for record in records:
        specversions = [v for k, v in record.headers if k == "ce_specversion"]
        assert specversions == [b"1.0"]  # added where missing, never doubled
