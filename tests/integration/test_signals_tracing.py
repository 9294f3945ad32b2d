"""The signals worker continues the trace of what it consumes, and logs JSON only.

The real worker (``python -m zerocontact.signals worker -l debug``, a subprocess on topics of
this run) consumes a loan application and a marketing interaction, each carrying a known
``traceparent``; the risk assessment and the engagement signal it writes carry a ``traceparent``
of the same trace (a new span: the worker's publish span). Every line the process wrote is a
JSON object, and the line logged while the application was scored carries its trace id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.harness import (
    RUN_ID,
    Engines,
    eventually,
    start_signals_worker,
    stop_process,
)
from tests.integration.test_gateway_support import signals_ready
from tests.integration.test_signals_pipeline import application
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent

PARTITIONS = 6


def _traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


def _opened(party: str, traceparent: str) -> CloudEvent:
    event = marketing_pb.MarketingEvent(
        offer_interaction=marketing_pb.OfferInteraction(
            delivery_id=str(uuid.uuid4()), party_id=party, campaign_id=str(uuid.uuid4()),
            stage="opened",
        )
    )  # fmt: skip
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="zerocontact.marketing",
        type="zerocontact.marketing.v1.OfferInteraction",
        subject=party,
        data=event.SerializeToString(),
        traceparent=traceparent,
    )


async def _records(bootstrap: str, topic: str, want: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:

        async def probe() -> list[Any]:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(batch)
            return found if len(found) >= want else []

        await eventually(probe, within_s=60, interval=0.05)
    finally:
        await consumer.stop()
    return found


@pytest.fixture
async def topics(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[dict[str, str]]:
    token = uuid.uuid4().hex[:10]
    names = {
        name: f"t{RUN_ID}-sigtrace-{name}-{token}"
        for name in ("loan", "identity", "risk", "marketing", "engagement")
    }
    await kafka_admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in names.values()]
        + [NewTopic(f"{names[n]}.dlq", 1, 1) for n in ("loan", "identity")]
    )
    yield names


async def test_the_worker_continues_the_trace_and_logs_json(
    engines: Engines, topics: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    data = tmp_path / "data"
    data.mkdir()
    process, port = start_signals_worker(
        engines,
        app_id=f"t{RUN_ID}-sigtrace-{uuid.uuid4().hex[:8]}",
        data_dir=data,
        log=log,
        topics=topics,
        level="debug",  # the line logged per assessment is DEBUG
    )
    try:
        await eventually(lambda: signals_ready(port), within_s=90, interval=0.3)
        producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            party = str(uuid.uuid4())
            loan_trace, loan_parent = _traceparent()
            app_event = application(party, device=f"dev-{party[:8]}", address="198.51.100.20")
            app_event = dataclasses.replace(app_event, traceparent=loan_parent)
            await producer.send_and_wait(
                topics["loan"], app_event.data, key=party.encode(), headers=app_event.headers()
            )
            mkt_trace, mkt_parent = _traceparent()
            opened = _opened(party, mkt_parent)
            await producer.send_and_wait(
                topics["marketing"], opened.data, key=party.encode(), headers=opened.headers()
            )
        finally:
            await producer.stop()

        [assessment] = await _records(engines.kafka_bootstrap, topics["risk"], 1)
        engagement = await _records(engines.kafka_bootstrap, topics["engagement"], 1)
        for record, trace_id, parent in (
            (assessment, loan_trace, loan_parent),
            (engagement[0], mkt_trace, mkt_parent),
        ):
            headers = dict(record.headers)
            sent = headers["traceparent"].decode()
            version, sent_trace, sent_span, _ = sent.split("-")
            assert (version, sent_trace) == ("00", trace_id)  # the same trace, continued
            assert sent_span != parent.split("-")[2]  # from a span of the worker's own
            assert headers["ce_type"]  # beside the CloudEvents headers
    finally:
        await asyncio.to_thread(stop_process, process)

    lines = log.read_text().splitlines()
    assert lines, "the worker wrote nothing"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} of the worker's output is not JSON: {line[:300]!r}")
    assert all({"ts", "level", "logger", "message", "service"} <= set(p) for p in parsed)
    assert {p["service"] for p in parsed} == {"signals"}
    scored = [p for p in parsed if p["message"] == "application assessed"]
    assert scored and all(p["trace_id"] == loan_trace for p in scored), scored
    assert all(len(p["span_id"]) == 16 for p in scored)
