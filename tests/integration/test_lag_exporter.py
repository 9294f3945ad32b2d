"""``zerocontact kafka lag-exporter`` against the real broker: lag per partition over HTTP,
growing while no consumer runs; a setting it cannot use is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import ROOT, Engines, eventually, free_port, stop_process


def _lags(text: str, group: str) -> dict[int, float]:
    """The exposition's ``zc_consumer_group_lag`` of ``group``, by partition."""
    return {
        int(sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "zc_consumer_group_lag" and sample.labels["group"] == group
    }


@pytest.fixture
def exporter(engines: Engines, tmp_path: Path) -> Iterator[str]:
    """The exporter as operators run it (a subprocess, reading every second); its URL."""
    port = free_port()
    log = tmp_path / "lag-exporter.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "zerocontact.platform.cli", "kafka", "lag-exporter",
             "--port", str(port), "--host", "127.0.0.1", "--interval", "1",
             "--bootstrap", engines.kafka_bootstrap],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        stop_process(process, within_s=10)
    assert process.returncode == 0, log.read_text()  # SIGTERM ends it cleanly


async def test_lag_per_partition_is_read_from_the_broker_and_grows_without_consumers(
    engines: Engines,
    exporter: str,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topic = await create_topic("lag", partitions=3)
    group = unique_name("lag-group")
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap)
    await producer.start()
    try:
        for partition, records in ((0, 10), (1, 4), (2, 0)):
            for n in range(records):
                await producer.send_and_wait(topic, b"x%d" % n, partition=partition)
        # The group read some of it, committed, and died (nothing of it runs any more).
        consumer = AIOKafkaConsumer(
            bootstrap_servers=engines.kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(3)])
            await consumer.commit(
                {TopicPartition(topic, 0): 3, TopicPartition(topic, 1): 4, TopicPartition(topic, 2): 0}
            )  # fmt: skip
        finally:
            await consumer.stop()

        async with httpx.AsyncClient(timeout=5) as http:

            async def lags() -> dict[int, float] | None:
                try:
                    response = await http.get(exporter)
                except httpx.TransportError:
                    return None  # not listening yet
                assert response.status_code == 200
                return _lags(response.text, group) or None

            # N - K per partition: 10 - 3, 4 - 4 (caught up), 0 - 0
            assert await eventually(lags, within_s=30) == {0: 7, 1: 0, 2: 0}

            for n in range(5):  # producers go on; the dead consumer's lag grows
                await producer.send_and_wait(topic, b"y%d" % n, partition=1)

            async def grown() -> dict[int, float] | None:
                now = await lags()
                return now if now and now[1] == 5 else None

            assert await eventually(grown, within_s=15) == {0: 7, 1: 5, 2: 0}
            text = (await http.get(exporter)).text
            stamps = [
                s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name == "zc_consumer_group_lag_last_success_timestamp_seconds"
            ]
            assert stamps and stamps[0] > 0
    finally:
        await producer.stop()


def test_a_setting_it_cannot_use_is_one_line() -> None:
    env = {**os.environ, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    env.pop("KAFKA_SASL_USERNAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "zerocontact.platform.cli", "kafka", "lag-exporter",
         "--port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("error: KAFKA_SASL_USERNAME is not set")
