"""What a process costs at rest on a broker crowded with topics (docs/performance.md, "Idle").

A long-lived local broker collects thousands of topics (every test run, every benchmark). The
cost at rest of the suite's processes must not grow with them: the services' readiness check
(every ``ENGINE_POLL_S`` in every service, and every ``/readyz``) once asked the broker for
every topic's metadata and decoded the whole cluster each time, and an idle signals worker sat
at most of a core with metadata requests on such a broker. Each test measures CPU time, not
latency (CPU time barely moves on a loaded machine), against a bound far above the healthy
figure and far below the bad one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import (
    RUN_ID,
    Engines,
    eventually,
    start_signals_worker,
    stop_process,
)
from zerocontact.platform.kafka.producer import EventPublisher

pytestmark = pytest.mark.timeout(900)

CROWD_TOPICS = 1_000
CROWD_PARTITIONS = 3
# A loaded broker serves new topics long after the controller made them; the tests start once
# it serves this many (the check's old cost was ~17 ms of CPU at 433 topics, ~1.7 ms at 33).
CROWD_SERVED = 500
# Healthy: ~0.2-0.5 ms of CPU per readiness check whatever the broker holds.
READY_CPU_BOUND_MS = 5.0
# Healthy: ~1 % of a core at rest. The state this guards against: 81 %.
WORKER_IDLE_BOUND_PERCENT = 15.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
async def crowded_broker(engines: Engines) -> AsyncIterator[list[str]]:
    """``CROWD_TOPICS`` topics of this run on the broker, deleted afterwards."""
    names = [f"t{RUN_ID}-crowd-{n:05d}" for n in range(CROWD_TOPICS)]
    admin = AIOKafkaAdminClient(
        bootstrap_servers=engines.kafka_bootstrap, request_timeout_ms=120_000
    )
    await admin.start()
    try:
        for first in range(0, len(names), 100):
            await admin.create_topics(
                [NewTopic(n, CROWD_PARTITIONS, 1) for n in names[first : first + 100]]
            )

        async def served() -> bool:
            return len(set(names) & set(await admin.list_topics())) >= CROWD_SERVED

        await eventually(served, within_s=600, interval=2.0)
        yield names
    finally:
        for first in range(0, len(names), 100):
            await admin.delete_topics(names[first : first + 100])
        await admin.close()


async def test_readiness_check_cost_does_not_grow_with_the_topics(
    engines: Engines, crowded_broker: list[str]
) -> None:
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="idle-cost")
    await publisher.start(wait=True)
    try:
        assert await publisher.ready(10)  # connected, metadata of the crowd known or not
        calls = 20
        began = time.process_time()
        results = [await publisher.ready(10) for _ in range(calls)]
        per_call_ms = (time.process_time() - began) / calls * 1000
    finally:
        await publisher.stop()
    assert all(results)
    assert per_call_ms < READY_CPU_BOUND_MS, (
        f"a readiness check cost {per_call_ms:.1f} ms of CPU with {len(crowded_broker)} "
        f"extra topics on the broker"
    )


async def test_idle_signals_worker_on_a_crowded_broker(
    engines: Engines,
    crowded_broker: list[str],
    tmp_path: Path,
    unique_name: Callable[[str], str],
    create_topic: Callable[..., asyncio.Future[str]],
) -> None:
    topics = {
        "loan": await create_topic("loan", partitions=6),
        "identity": await create_topic("identity", partitions=6),
        "risk": await create_topic("risk", partitions=6),
    }
    process, port = start_signals_worker(
        engines,
        app_id=unique_name("idle-signals"),
        data_dir=tmp_path / "signals",
        log=tmp_path / "signals.log",
        topics=topics,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, within_s=300, interval=1.0)
        await asyncio.sleep(10)  # past the start-up's table recovery and first commits
        window_s = 20.0
        before, began = _cpu_seconds(process.pid), time.monotonic()
        await asyncio.sleep(window_s)
        percent = 100 * (_cpu_seconds(process.pid) - before) / (time.monotonic() - began)
    finally:
        stop_process(process)
    log_tail = (tmp_path / "signals.log").read_text(errors="replace")[-2000:]
    assert percent < WORKER_IDLE_BOUND_PERCENT, (
        f"the idle signals worker used {percent:.1f} % of a core with "
        f"{len(crowded_broker)} extra topics on the broker\n{log_tail}"
    )
