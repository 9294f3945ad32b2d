"""Replays: after a load, every consumer group (the services' and the signals worker's) is
reset to the earliest offset and runs again; projections, ledger and decisions are unchanged.

The real identity, loan and payroll services and the signals worker run as subprocesses on
the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``, on databases, topics and groups
of their own. After the load (customers who log in, apply and accept; a payroll batch) has
settled, the scenario takes a snapshot of every document of every database and of the event
ids on every topic, takes it again a few seconds later (documents that change by themselves,
such as a job's lease, are left out of the comparison), stops every process, commits the
beginning offset of every partition each group had committed, starts them again, waits until
every group has caught up, and compares. ``lost``: documents or events gone; ``duplicated``:
documents changed or added and events published again with a new id by the services.

    .venv/bin/python -m tests.chaos.replay [--quick] [--applications 100] [--items 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from pymongo import AsyncMongoClient

from tests.chaos.scenario import Row
from tests.chaos.support import (
    Findings,
    Load,
    Suite,
    check_groups,
    check_loans,
    check_payroll,
    conclude,
    engine_urls,
    log,
    quiet_reconnect_logs,
    read_topic,
    report,
    wait_caught_up,
)

Snapshot = dict[str, str]  # "<db>.<collection>/<_id>" → digest of the document


async def documents(suite: Suite, mongo: AsyncMongoClient[dict[str, Any]]) -> Snapshot:
    out: Snapshot = {}
    for name in ("identity", "loan", "payroll", "rail"):
        db = mongo[suite.db(name)]
        for collection in await db.list_collection_names():
            async for doc in db[collection].find({}):
                text = json.dumps(doc, sort_keys=True, default=str)
                out[f"{name}.{collection}/{doc['_id']}"] = hashlib.sha256(text.encode()).hexdigest()
    return out


async def event_ids(suite: Suite) -> dict[str, Counter[str]]:
    return {
        topic: Counter(r.ce_id for r in await read_topic(suite.urls.kafka, topic))
        for topic in [*suite.topics, suite.topic("marketing"), suite.topic("engagement")]
    }


async def rewind(bootstrap: str, group: str) -> int:
    """Commit the beginning offset of every partition ``group`` has committed; the records
    that will be read again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    if not committed:
        return 0
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        parts = list(committed)
        consumer.assign(parts)
        starts = await consumer.beginning_offsets(parts)
        await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in parts})
    finally:
        await consumer.stop()
    return sum(max(0, meta.offset - starts[tp]) for tp, meta in committed.items())


async def scenario(args: argparse.Namespace) -> int:
    urls = engine_urls()
    applications = args.applications or (10 if args.quick else 100)
    items = args.items or (100 if args.quick else 2_000)
    workdir = Path(tempfile.mkdtemp(prefix="zc-chaos-replay-"))
    suite = Suite(urls, workdir)
    findings = Findings()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(urls.mongodb, tz_aware=True)
    load: Load | None = None
    row: Row | None = None
    try:
        await suite.start()
        load = Load(suite)
        log(
            f"suite up (logs in {workdir}); the load: {applications} applications, {items} salaries"
        )
        customers = list(await asyncio.gather(*(load.customer() for _ in range(applications))))
        enterprise, rep = await load.employer()
        batch = await load.payroll_batch(enterprise, rep, items, seed=3)
        applied: dict[str, str] = {}
        errors = await load.applications(customers, 10.0, applied)
        findings.failures += [f"a journey failed: {e!r}" for e in errors[:5]]
        await check_payroll(suite, mongo, {batch: items}, findings, within_s=600)
        await asyncio.sleep(5)  # the last acceptances' disbursements
        await check_loans(suite, mongo, applied, [c.party_id for c in customers], findings)
        await check_groups(suite, findings, within_s=120)
        if findings.failures:  # the load itself went wrong: nothing to replay
            findings.failures.insert(0, "the load did not settle before the replay")
            row = Row("replay", 0, findings.operations, findings.lost, findings.duplicated, None,
                      "the load did not settle")  # fmt: skip
            return report([row], findings.failures)
        before = await documents(suite, mongo)
        events_before = await event_ids(suite)
        await asyncio.sleep(6)
        again = await documents(suite, mongo)
        moving = {k for k in set(before) | set(again) if before.get(k) != again.get(k)}
        log(f"snapshot: {len(before)} documents ({len(moving)} change by themselves); rewinding")
        suite.stop()
        replayed = 0
        for group in suite.groups:
            replayed += await rewind(urls.kafka, group)
        log(f"{len(suite.groups)} groups rewound: {replayed} records to read again")
        began = time.monotonic()
        for service in suite.services.values():
            service.restart()
        for service in suite.services.values():
            await service.wait_ready()
        lags = await wait_caught_up(urls.kafka, suite.groups, within_s=600)
        recover = time.monotonic() - began
        if lags:
            findings.fail(f"groups not caught up after the replay: {lags}")
        await asyncio.sleep(6)  # outbox sweeps: anything a replayed handler wrote is published
        after = await documents(suite, mongo)
        events_after = await event_ids(suite)
        keys = (set(before) | set(after)) - moving
        gone = sorted(k for k in keys if k in before and k not in after)
        changed = sorted(k for k in keys if k in before and k in after and before[k] != after[k])
        added = sorted(k for k in keys if k not in before)
        if gone:
            findings.fail(
                f"{len(gone)} documents gone after the replay: {gone[:3]}", lost=len(gone)
            )
        if changed:
            findings.fail(
                f"{len(changed)} documents changed by the replay: {changed[:3]}",
                duplicated=len(changed),
            )
        if added:
            findings.fail(
                f"{len(added)} documents added by the replay: {added[:3]}", duplicated=len(added)
            )
        service_topics = {suite.topic(t) for t in ("identity", "notes", "loan", "payroll")}
        republished = 0
        for topic, ids in events_after.items():
            old = events_before.get(topic, Counter())
            missing = set(old) - set(ids)
            new = set(ids) - set(old)
            if missing:
                findings.fail(f"{topic}: {len(missing)} events gone", lost=len(missing))
            if new and topic in service_topics:
                findings.fail(
                    f"{topic}: {len(new)} new events after the replay", duplicated=len(new)
                )
            elif new:
                republished += len(new)
                findings.notes.append(
                    f"{topic.rsplit('-', 1)[-1]}: {len(new)} records derived again"
                )
        row = Row(
            "replay", len(suite.groups), replayed, findings.lost, findings.duplicated,
            round(recover, 1),
            f"{len(suite.groups)} groups rewound, {replayed} records re-read; "
            f"{len(keys)} documents compared ({len(moving)} moving by themselves left out); "
            + "; ".join(findings.notes),
        )  # fmt: skip
    finally:
        if load is not None:
            await load.close()
        suite.stop()
        await suite.drop()
        await mongo.close()
    return conclude(workdir, [row] if row else [], findings.failures)


def main() -> int:
    quiet_reconnect_logs()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 applications, 100 salaries")
    parser.add_argument("--applications", type=int, default=0)
    parser.add_argument("--items", type=int, default=0)
    return asyncio.run(scenario(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
