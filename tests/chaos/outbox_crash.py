"""Outbox crash points: the writer dies between its state write and the publish, and between the
publish and the outbox's clearing, at random, and is restarted every time.

The walking skeleton's accounts app (a real service: HTTP, aggregate + outbox in FerretDB, the
platform's relay, Kafka) runs under :mod:`tests.chaos.restarts` with both crash points of
:mod:`zerocontact.platform.faults` armed; its balances projection (the platform's consumer
runner, ``apply_once``) runs beside it, never crashed. Clients open accounts and make deposits,
retrying each request with its idempotency key until it is answered, until the writer has died
the target number of times. Then, once the outboxes are empty and the projection caught up:

- every committed change (account opened, deposit recorded: from the writer's database) is on
  the topic (``lost`` counts those that are not, and acknowledged deposits missing from the
  database);
- no change is on the topic as two different events, and the projection applied each once: its
  deposit count and balance equal the writer's per account (``duplicated`` counts the excess);
- records republished after a crash between publish and clearing (same ``ce_id``) are counted
  in ``detail``: the consumer saw them and ignored them; nothing went to the dead-letter topic.

    .venv/bin/python -m tests.chaos.outbox_crash [--quick] [--crashes N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import AsyncMongoClient

from tests.chaos.scenario import (
    Row,
    chaos_engines,
    create_topics,
    database_name,
    finish,
    log_dir,
    remove_run,
    run_token,
    start_app,
)
from tests.integration.harness import (
    ROOT,
    Engines,
    eventually,
    free_port,
    random_key,
    stop_process,
)
from zerocontact.platform.faults import AFTER_PUBLISH, AFTER_STATE_WRITE
from zerocontact.skeleton.v1 import events_pb2

SCENARIO = "outbox_crash"
ACCOUNTS = 20
CLIENTS = 4
PROBABILITY = "0.08"  # per crash point passed: ~15 % of the relay's flushes die


@dataclass
class Writer:
    """The accounts app under the restarter, and what it reported."""

    process: subprocess.Popen[bytes]
    port: int
    deaths: int = 0
    recoveries: list[float] = field(default_factory=list)
    first_ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self) -> None:
        assert self.process.stdout is not None
        while line := await asyncio.to_thread(self.process.stdout.readline):
            event = json.loads(line)
            if event["event"] == "died":
                self.deaths += 1
            elif event["event"] == "ready":
                self.first_ready.set()
                if event["recover_s"] is not None:
                    self.recoveries.append(event["recover_s"])


@dataclass
class Ledger:
    """What the clients were told: account ids and the deposits acknowledged on each."""

    accounts: list[str] = field(default_factory=list)
    deposits: dict[str, dict[str, int]] = field(default_factory=dict)  # account -> id -> minor
    retries: int = 0

    @property
    def operations(self) -> int:
        return len(self.accounts) + sum(len(d) for d in self.deposits.values())


async def request(
    client: httpx.AsyncClient, ledger: Ledger, path: str, body: dict[str, Any], key: str
) -> dict[str, Any]:
    """POST until answered: a dead writer resets the connection; the key makes retries safe."""
    for _ in range(600):
        try:
            answer = await client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            ledger.retries += 1
            await asyncio.sleep(0.05)
            continue
        if answer.status_code >= 500 or answer.status_code == 409:
            ledger.retries += 1  # not ready yet after a restart, or a busy account
            await asyncio.sleep(0.1)
            continue
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result
    raise RuntimeError(f"{path}: no answer after 600 attempts")


async def drive(writer: Writer, ledger: Ledger, crashes: int, min_deposits: int) -> None:
    """Open the accounts, then deposit from several clients until the writer died enough."""
    url = f"http://127.0.0.1:{writer.port}"
    limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection per request
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for n in range(ACCOUNTS):
            body = {
                "holder_name": f"Chaos {n}",
                "holder_phone": "+8613812345678",
                "currency": "CNY",
            }
            opened = await request(client, ledger, "/v1/accounts", body, f"chaos-open-{n:04d}")
            ledger.accounts.append(opened["account_id"])
            ledger.deposits[opened["account_id"]] = {}
        done = 0

        async def deposits(worker: int) -> None:
            nonlocal done
            rng = random.Random(worker)
            n = 0
            while writer.deaths < crashes or done < min_deposits:
                account = rng.choice(ledger.accounts)
                minor = rng.randint(1, 99_999)
                key = f"chaos-dep-{worker}-{n:06d}"
                n += 1
                body = {"amount": f"{minor // 100}.{minor % 100:02d}", "currency": "CNY"}
                await request(client, ledger, f"/v1/accounts/{account}/deposits", body, key)
                ledger.deposits[account][key] = minor
                done += 1

        await asyncio.gather(*(deposits(w) for w in range(CLIENTS)))


async def drained(mongo: AsyncMongoClient[dict[str, Any]], db: str) -> bool:
    return await mongo[db]["accounts"].count_documents({"_outbox_pending": True}) == 0


async def read_all(engines: Engines, topic: str) -> list[Any]:
    """Every record on ``topic`` now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=engines.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return records
    finally:
        await consumer.stop()


async def check(
    row: Row, engines: Engines, ledger: Ledger, topic: str, writer_db: str, projection_db: str
) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(engines.mongodb_uri)
    try:
        stored = {d["_id"]: d async for d in mongo[writer_db]["accounts"].find({})}
        balances = {d["_id"]: d async for d in mongo[projection_db]["balances"].find({})}
    finally:
        await mongo.close()
    records = await read_all(engines, topic)
    ids_per_change: dict[str, set[str]] = {}
    ce_ids: Counter[str] = Counter()
    for record in records:
        ce_id = dict(record.headers)["ce_id"].decode()
        ce_ids[ce_id] += 1
        wrapper = events_pb2.SkeletonEvent.FromString(record.value)
        if wrapper.WhichOneof("event") == "account_opened":
            change = f"open:{wrapper.account_opened.account_id}"
        else:
            change = f"deposit:{wrapper.deposit_recorded.account_id}:{wrapper.deposit_recorded.deposit_id}"
        ids_per_change.setdefault(change, set()).add(ce_id)

    committed: set[str] = set()
    for account_id in ledger.accounts:
        doc = stored.get(account_id)
        if doc is None:
            row.lost += 1 + len(ledger.deposits[account_id])
            row.fail(f"account {account_id} acknowledged but not stored")
            continue
        committed.add(f"open:{account_id}")
        committed.update(f"deposit:{account_id}:{d}" for d in doc.get("deposits", {}))
        missing = set(ledger.deposits[account_id]) - set(doc.get("deposits", {}))
        if missing:
            row.lost += len(missing)
            row.fail(f"{len(missing)} acknowledged deposits of {account_id} not stored")
        acknowledged = sum(ledger.deposits[account_id].values())
        if int(doc["balance_minor"]) != acknowledged:
            row.fail(
                f"{account_id}: stored balance {doc['balance_minor']} != acknowledged {acknowledged}"
            )
        if doc.get("_outbox"):
            row.fail(f"{account_id}: outbox not empty after the drain")
        view = balances.get(account_id, {})
        expected_deposits = len(doc.get("deposits", {}))
        seen = int(view.get("deposits", 0))
        if seen > expected_deposits:
            row.duplicated += seen - expected_deposits
        elif seen < expected_deposits:
            row.lost += expected_deposits - seen
            row.fail(f"{account_id}: projection applied {seen} of {expected_deposits} deposits")
        if int(view.get("balance_minor", 0)) != int(doc["balance_minor"]):
            row.fail(
                f"{account_id}: projected balance {view.get('balance_minor')} != {doc['balance_minor']}"
            )
    unpublished = committed - set(ids_per_change)
    if unpublished:
        row.lost += len(unpublished)
        row.fail(f"{len(unpublished)} committed changes never published")
    twice = [change for change, ids in ids_per_change.items() if len(ids) > 1]
    if twice:
        row.duplicated += len(twice)
        row.fail(f"{len(twice)} changes published as two different events")
    dead = await read_all(engines, f"{topic}.dlq")
    if dead:
        row.fail(f"{len(dead)} records dead-lettered")
    row.operations = ledger.operations
    republished = sum(n - 1 for n in ce_ids.values())
    row.detail += (
        f"; {len(committed)} changes committed, {len(records)} records"
        f" ({republished} republished after a crash, ignored by the projection)"
    )


def crash_points_hit(log: Path) -> Counter[str]:
    text = log.read_text(errors="replace")
    return Counter(
        point
        for point in (AFTER_STATE_WRITE, AFTER_PUBLISH)
        for _ in range(text.count(f"crash at {point}\n"))
    )


def start_writer(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The accounts app under the restarter, both crash points armed; (process, port)."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.restarts", "--port", str(port),
             "--factory", "zerocontact.skeleton.app:create_accounts_app"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=sink,
            env={
                **os.environ, **env, "OTEL_SDK_DISABLED": "true",
                "ZC_SKELETON_OUTBOX_SWEEP_INTERVAL_S": "0.2", "ZC_SKELETON_LOG_LEVEL": "WARNING",
                "ZC_SKELETON_PII_KEY": random_key(), "ZC_SKELETON_PII_INDEX_KEY": random_key(),
                "ZC_FAULT_INJECTION": "allow",
                "ZC_FAULT_CRASH_POINTS": f"{AFTER_STATE_WRITE},{AFTER_PUBLISH}",
                "ZC_FAULT_CRASH_PROBABILITY": PROBABILITY,
            },
        )  # fmt: skip
    return process, port


async def run(engines: Engines, *, crashes: int, min_deposits: int) -> Row:
    token = run_token("outbox")
    topic = f"{token}-skeleton-events"
    writer_db, projection_db = database_name(token, "acc"), database_name(token, "proj")
    logs = log_dir(token)
    await create_topics(engines, {topic: 3})
    engine_env = {
        "KAFKA_BOOTSTRAP_SERVERS": engines.kafka_bootstrap,
        "MONGODB_URI": engines.mongodb_uri,
    }
    projection, _ = start_app(
        "zerocontact.skeleton.app:create_projection_app",
        env={
            **engine_env,
            "ZC_SKELETON_PROJECTION_MONGODB_DATABASE": projection_db,
            "ZC_SKELETON_PROJECTION_TOPIC": topic,
            "ZC_SKELETON_PROJECTION_CONSUMER_GROUP": f"{token}-projection",
        },
        log=logs / "projection.log",
    )
    writer_log = logs / "accounts.log"
    process, port = start_writer(
        {**engine_env, "ZC_SKELETON_MONGODB_DATABASE": writer_db, "ZC_SKELETON_TOPIC": topic},
        writer_log,
    )
    writer = Writer(process, port)
    follower = asyncio.create_task(writer.follow())
    row = Row(SCENARIO)
    ledger = Ledger()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(engines.mongodb_uri)
    began = time.monotonic()
    try:
        async with asyncio.timeout(120):
            await writer.first_ready.wait()
        await drive(writer, ledger, crashes, min_deposits)
        drive_s = time.monotonic() - began
        # The writer keeps crashing at random while it drains: recovery is the relay's sweep.
        await eventually(lambda: drained(mongo, writer_db), within_s=300, interval=0.5)
        expected = {a: len(d) for a, d in ledger.deposits.items()}

        async def caught_up() -> bool:
            views = {d["_id"]: d async for d in mongo[projection_db]["balances"].find({})}
            return all(int(views.get(a, {}).get("deposits", -1)) >= n for a, n in expected.items())

        await eventually(caught_up, within_s=300, interval=0.5)
        await asyncio.sleep(2)  # anything republished late is applied (or ignored) by now
    finally:
        await mongo.close()
        stop_process(process)
        stop_process(projection)
        follower.cancel()
    points = crash_points_hit(writer_log)
    row.faults = writer.deaths
    row.recover_s = max(writer.recoveries) if writer.recoveries else None
    p50 = statistics.median(writer.recoveries) if writer.recoveries else 0.0
    row.detail = (
        f"writer killed {writer.deaths}x ({points[AFTER_STATE_WRITE]} after the state write,"
        f" {points[AFTER_PUBLISH]} after the publish), restart to ready p50 {p50:.2f} s;"
        f" {ledger.retries} client retries in {drive_s:.0f} s"
    )
    await check(row, engines, ledger, topic, writer_db, projection_db)
    if writer.deaths < crashes:
        row.fail(f"only {writer.deaths} of {crashes} crashes happened")
    if sum(points.values()) != writer.deaths:
        row.fail(f"{writer.deaths} deaths but {sum(points.values())} crash points logged")
    if not row.failures:
        await remove_run(engines, token)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 crashes instead of 1,000")
    parser.add_argument("--crashes", type=int, help="how many times the writer dies")
    args = parser.parse_args()
    crashes = args.crashes or (40 if args.quick else 1000)
    with chaos_engines() as engines:
        row = asyncio.run(run(engines, crashes=crashes, min_deposits=crashes * 2))
    return finish([row])


if __name__ == "__main__":
    sys.exit(main())
