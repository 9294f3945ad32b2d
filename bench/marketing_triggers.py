"""Marketing benchmark: salary paid -> delivered offer latency at a steady rate, and segment
recomputation throughput over 100,000 profiles.

What runs (all real, on the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``):
* the marketing service as a subprocess (``uvicorn --factory zerocontact.marketing.app:create_app``)
  on a database and topics of this run, with its ChannelSimulator (``--channel-latency-ms``);
* payroll's side: ``SalaryPaid`` records produced to the run's payroll topic at ``--rate``/s.

Phase 1 (latency): an approved salary-paid campaign (in-app card, wealth R2); parties with
consent, no quiet hours and grade C3, linked to their payee cards. Each party gets at most
5 salaries (the in-app daily cap). For each SalaryPaid the bench notes when it produced it
and when the ``OfferInteraction(delivered)`` for that party arrived on the marketing topic
(per party in order: one employer, so one partition, so in order).

Phase 2 (segments): ``--profiles`` profile documents are inserted straight into the run's
database (setup only: in production they come from events), a segment is defined
(``risk_grade >= 5``, matching ``--match-percent`` of them) and ``POST /v1/segments/recompute``
is timed twice: the first run joins the matching profiles (one version-guarded write with its
``SegmentMembershipChanged`` event each); the second changes nothing (evaluation only).
The last line is JSON.

    .venv/bin/python bench/marketing_triggers.py [--rate 10] [--seconds 20] [--profiles 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.payroll.v1 import events_pb2 as payroll_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.money import Money

ROOT = Path(__file__).resolve().parents[1]
EMPLOYER = "bench-employer"
DISCLOSURE = "理财非存款，产品有风险，投资须谨慎。"
PER_PARTY = 5  # the in-app daily cap


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return Path("/proc/loadavg").read_text().split()[:3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def start_marketing(
    bootstrap: str,
    mongodb_uri: str,
    token: str,
    port: int,
    latency_ms: float,
    log: Path,
    operator_key: str,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ZC_MARKETING_OPERATOR_KEY": operator_key,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URI": mongodb_uri,
        "ZC_MARKETING_MONGODB_DATABASE": f"bench_marketing_{token}",
        "ZC_MARKETING_CONSUMER_GROUP": f"bench-marketing-{token}",
        "ZC_MARKETING_TOPIC": f"bench-{token}-marketing",
        "ZC_MARKETING_NOTIFICATIONS_TOPIC": f"bench-{token}-notifications",
        "ZC_MARKETING_IDENTITY_TOPIC": f"bench-{token}-identity",
        "ZC_MARKETING_LOAN_TOPIC": f"bench-{token}-loan",
        "ZC_MARKETING_PAYROLL_TOPIC": f"bench-{token}-payroll",
        "ZC_MARKETING_ENGAGEMENT_TOPIC": f"bench-{token}-engagement",
        "ZC_MARKETING_SIMULATOR_LATENCY_MS": str(latency_ms),
        "ZC_MARKETING_CACHE_SECONDS": "0.5",
        "ZC_MARKETING_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "zerocontact.marketing.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def salary_record(card: str, amount: Money) -> tuple[bytes, list[tuple[str, bytes]]]:
    w = payroll_pb.PayrollEvent()
    p = w.salary_paid
    p.batch_id, p.employer_id, p.end_to_end_id = "bench", EMPLOYER, uuid.uuid4().hex
    p.card_masked, p.bank = card, "ICBC"
    p.amount.CopyFrom(amount.to_proto())
    p.rail_reference, p.attempts = uuid.uuid4().hex, 1
    p.paid_at.FromDatetime(datetime.now(UTC))
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="/bench",
        type=p.DESCRIPTOR.full_name,
        subject=EMPLOYER,
        data=w.SerializeToString(),
    )
    return event.data, event.headers()


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: Any = None,
    *,
    operator: str = "bench-author",
) -> Any:
    # The client carries X-Operator-Key; the operator id says who acts (four eyes: the
    # approver is not the author).
    headers = {"Idempotency-Key": uuid.uuid4().hex, "X-Operator-Id": operator}
    r = await client.request(method, url, json=body, headers=headers)
    if r.status_code >= 300:
        raise SystemExit(f"{method} {url} -> {r.status_code} {r.text}")
    return r.json()


async def latency_phase(
    client: httpx.AsyncClient, bootstrap: str, token: str, rate: float, seconds: float
) -> dict[str, Any]:
    total = int(rate * seconds)
    parties = [f"bench-party-{i:05d}" for i in range((total + PER_PARTY - 1) // PER_PARTY)]
    cards = {p: f"622202{i:06d}{i % 10000:04d}" for i, p in enumerate(parties)}
    cards = {p: f"{c[:6]}******{c[-4:]}" for p, c in cards.items()}
    await call(
        client,
        "PUT",
        "/v1/products/wealth-r2",
        {"product_id": "wealth-r2", "kind": "wealth", "name": "稳健理财", "risk_level": 2},
    )
    campaign = await call(
        client,
        "POST",
        "/v1/campaigns",
        {
            "name": "bench",
            "goal": "latency",
            "budget_minor": 10**9,
            "product_id": "wealth-r2",
            "holdout_percent": 0,
            "variants": [
                {
                    "id": "card",
                    "channel": "in_app",
                    "title": "工资到账",
                    "body": "稳健理财。" + DISCLOSURE,
                }
            ],
            "trigger": {"kind": "salary_paid", "min_month_salary_minor": 0},
        },
    )
    await call(client, "POST", f"/v1/campaigns/{campaign['id']}/review")
    await call(client, "POST", f"/v1/campaigns/{campaign['id']}/approve", operator="bench-approver")
    sem = asyncio.Semaphore(8)

    async def prepare(party: str) -> None:
        async with sem:
            await call(
                client,
                "PUT",
                "/v1/payee-links",
                {"employer_id": EMPLOYER, "card_masked": cards[party], "party_id": party},
            )
            await call(
                client,
                "PUT",
                f"/v1/parties/{party}/preferences",
                {"consented_channels": ["in_app"], "quiet_start": "00:00", "quiet_end": "00:00"},
            )
            await call(client, "POST", f"/v1/parties/{party}/risk-tolerance", {"grade": 3})

    await asyncio.gather(*(prepare(p) for p in parties))
    for party in parties:  # the grade comes through the marketing topic into the profile
        while True:
            r = await client.get(f"/v1/parties/{party}/profile")
            if r.status_code == 200 and r.json()["risk_grade"] == 3:
                break
            await asyncio.sleep(0.2)

    sent_at: dict[str, deque[float]] = defaultdict(deque)
    latencies: list[float] = []
    reader = AIOKafkaConsumer(
        f"bench-{token}-marketing",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        fetch_max_wait_ms=10,
    )
    await reader.start()
    await reader.seek_to_end()
    done = asyncio.Event()

    async def read() -> None:
        seen: set[str] = set()
        while not done.is_set():
            for batch in (await reader.getmany(timeout_ms=20)).values():
                now = time.perf_counter()
                for rec in batch:
                    ce_id = dict(rec.headers)["ce_id"].decode()
                    if ce_id in seen:
                        continue
                    seen.add(ce_id)
                    w = marketing_pb.MarketingEvent.FromString(rec.value or b"")
                    if (
                        w.WhichOneof("event") != "offer_interaction"
                        or w.offer_interaction.stage != "delivered"
                    ):
                        continue
                    queue = sent_at.get(w.offer_interaction.party_id)
                    if queue:
                        latencies.append(now - queue.popleft())
                        if len(latencies) >= total:
                            done.set()

    reader_task = asyncio.create_task(read())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    started = time.perf_counter()
    amount = Money.of("9000.00", "CNY")
    for n in range(total):
        party = parties[n % len(parties)]
        due = started + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        value, headers = salary_record(cards[party], amount)
        sent_at[party].append(time.perf_counter())
        await producer.send(f"bench-{token}-payroll", value, key=EMPLOYER.encode(), headers=headers)
    await producer.flush()
    produced_s = time.perf_counter() - started
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 60)
    done.set()
    await reader_task
    await producer.stop()
    await reader.stop()
    ordered = sorted(latencies)
    return {
        "events": total,
        "delivered": len(latencies),
        "rate_per_s": rate,
        "achieved_rate_per_s": round(total / produced_s, 1),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 1),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
    }


async def segment_phase(
    client: httpx.AsyncClient, mongodb_uri: str, token: str, profiles: int, match_percent: float
) -> dict[str, Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    collection = mongo[f"bench_marketing_{token}"]["profiles"]
    every = max(1, round(100 / match_percent)) if match_percent > 0 else 0
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for i in range(profiles):
        batch.append(
            {
                "_id": f"seg-{i:06d}",
                "party_kind": "customer",
                "kyc_level": 3,
                "risk_grade": 5 if every and i % every == 0 else 3,
                "salary": {"202611": 900_000},
                "salary_total_minor": 900_000,
                "counts": {"salary_paid": {"20261130": 1}},
            }
        )
        if len(batch) == 5000:
            await collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        await collection.insert_many(batch, ordered=False)
    inserted_s = time.perf_counter() - started
    await call(
        client,
        "PUT",
        "/v1/segments/aggressive",
        {
            "segment_id": "aggressive",
            "name": "C5",
            "rule": {
                "all": [
                    {"attr": "risk_grade", "op": ">=", "value": 5},
                    {"count": "salary_paid", "window_days": 30, "op": ">=", "value": 0},
                ]
            },
        },
    )
    first = await call(client, "POST", "/v1/segments/recompute")
    second = await call(client, "POST", "/v1/segments/recompute")
    await mongo.close()
    return {
        "profiles": profiles,
        "insert_seconds": round(inserted_s, 1),
        "first": first,
        "first_profiles_per_s": round(first["profiles"] / first["seconds"]),
        "second_unchanged": second,
        "second_profiles_per_s": round(second["profiles"] / second["seconds"]),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--match-percent", type=float, default=5.0)
    parser.add_argument("--channel-latency-ms", type=float, default=15.0)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    mongodb_uri = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
    token = uuid.uuid4().hex[:8]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    names = [
        f"bench-{token}-{k}"
        for k in ("marketing", "notifications", "identity", "loan", "payroll", "engagement")
    ]
    await admin.create_topics([NewTopic(n, 3, 1) for n in names])
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"bench-marketing-{token}.log"
    operator_key = secrets.token_urlsafe(32)
    service = start_marketing(
        bootstrap, mongodb_uri, token, port, args.channel_latency_ms, log, operator_key
    )
    result: dict[str, Any] = {
        "bench": "marketing_triggers",
        "loadavg_before": loadavg(),
    }
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=3600,
            headers={"X-Operator-Key": operator_key, "X-Operator-Id": "bench-author"},
        ) as client:
            for _ in range(300):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise SystemExit(f"marketing did not become ready; see {log}")
            result["latency"] = await latency_phase(
                client, bootstrap, token, args.rate, args.seconds
            )
            print("salary -> delivered:", json.dumps(result["latency"]), flush=True)
            result["segments"] = await segment_phase(
                client, mongodb_uri, token, args.profiles, args.match_percent
            )
            print("segment recompute:", json.dumps(result["segments"]), flush=True)
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(20)
        except subprocess.TimeoutExpired:
            service.kill()
        await admin.delete_topics(names)
        await admin.close()
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri)
        await mongo.drop_database(f"bench_marketing_{token}")
        await mongo.close()
    result["loadavg_after"] = loadavg()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
