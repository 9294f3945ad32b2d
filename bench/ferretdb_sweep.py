"""What one periodic sweep costs the MongoDB-wire server on a loaded collection.

The outbox relays' crash-recovery sweep (`find({_outbox_pending: true})`) and the services'
polls (`{state: "EXECUTING"}`, ...) run every few seconds at rest. This fills a collection
with ``--documents`` documents, ``--pending`` of them pending, with the indexes the services
create, and runs each query ``--sweeps`` times: per sweep, the wall time and the server
process's CPU time (``/proc/<pid>/stat``, found from the port it listens on). The server is
the one ``MONGODB_URI`` names, else the embedded one on ``ZC_MONGODB_PORT`` (27017); the
database it creates is dropped at the end. The last line is JSON.

``--polls`` measures instead every periodic read the services run at rest, through the
services' own repository code, against the data ``bench/idle.py --after-load`` leaves: each
service's collections and indexes (created by its repository) in a database of its own, and
``--documents`` filler documents (idle.py's) in every collection an outbox relay sweeps. Per
poll: the server's CPU per call (mean of ``--calls``), the poll's interval at rest (the
settings' default) and what that makes at rest, as % of one core. ``--fill-polled`` fills
every other collection a poll reads as well (what history leaves there: delivered webhooks,
old reminders, expired keys not yet purged, ...), except work queues their job empties.

    .venv/bin/python bench/ferretdb_sweep.py [--documents 100000] [--pending 5] [--sweeps 20]
    .venv/bin/python bench/ferretdb_sweep.py --polls [--documents 20000] [--calls 10] [--fill-polled]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pymongo import ASCENDING, AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "local"))
from idle import fill_collection, swept_collections
from localsuite.ports import port_owner

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DATABASE = "bench_ferretdb_sweep"
POLLS_DATABASE = "bench_ferretdb_polls"
QUERIES: dict[str, dict[str, Any]] = {
    "outbox sweep {_outbox_pending: true}": {"_outbox_pending": True},
    'state poll {state: "EXECUTING"}': {"state": "EXECUTING"},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def fill(client: AsyncMongoClient[dict[str, Any]], documents: int, pending: int) -> None:
    docs = client[DATABASE]["aggregates"]
    await docs.drop()
    await docs.create_index([("_outbox_pending", ASCENDING)], name="outbox_pending")
    await docs.create_index([("state", ASCENDING)], name="state")
    every = max(documents // max(pending, 1), 1)
    batch: list[dict[str, Any]] = []
    for n in range(documents):
        live = pending > 0 and n % every == 0 and n // every < pending
        batch.append(
            {
                "_id": f"agg-{n:08d}",
                "state": "EXECUTING" if live else "DONE",
                "amount_minor": 10_000 + n,
                "version": 3,
                "_outbox": {"v00000003-0": {"type": "Done"}} if live else {},
                "_outbox_pending": live,
            }
        )
        if len(batch) == 1000:
            await docs.insert_many(batch)
            batch = []
    if batch:
        await docs.insert_many(batch)


@dataclass(frozen=True)
class Poll:
    """One read a service's periodic job makes at rest, and how often it makes it."""

    service: str
    name: str
    interval_s: float
    call: Callable[[], Awaitable[object]]
    # A work queue its job empties (in-flight items only): no history to fill it with.
    drained: bool = False


class ReadCollections(monitoring.CommandListener):
    """The (database, collection) of every find, count and delete sent."""

    def __init__(self) -> None:
        self.read: set[tuple[str, str]] = set()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "count", "delete"):
            self.read.add((event.database_name, str(event.command[event.command_name])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class _NoPublisher:
    """The relays' publisher where nothing is pending: a sweep that publishes is a bug here."""

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("the filler has no pending event")


async def service_polls(databases: dict[str, AsyncDatabase[dict[str, Any]]]) -> list[Poll]:
    """Each service's collections and indexes (its repository creates them) and the reads
    its periodic jobs make at rest, through its own code."""
    from zerocontact.assistant.repository import AssistantRepository
    from zerocontact.gateway.settings import GatewaySettings
    from zerocontact.gateway.webhooks.store import INDEXES as WEBHOOK_INDEXES
    from zerocontact.gateway.webhooks.store import WebhookStore
    from zerocontact.identity.app import PURGE_INTERVAL_S
    from zerocontact.identity.repository.parties import PartyRepository
    from zerocontact.identity.repository.sessions import ChallengeRepository, SessionRepository
    from zerocontact.identity.settings import IdentitySettings
    from zerocontact.identity.trust.log import MerkleLog
    from zerocontact.identity.trust.repository import TrustRepository
    from zerocontact.identity.trust.sequencer import LeafQueue
    from zerocontact.loan.domain.loans import LoanState
    from zerocontact.loan.repository import LoanRepository
    from zerocontact.loan.settings import LoanSettings
    from zerocontact.marketing.repository import Repository as MarketingRepository
    from zerocontact.marketing.settings import MarketingSettings
    from zerocontact.payroll.domain.batches import BatchState
    from zerocontact.payroll.repository import PayrollRepository
    from zerocontact.payroll.settings import PayrollSettings
    from zerocontact.platform.mongo import ensure_indexes
    from zerocontact.platform.outbox import ensure_outbox_index
    from zerocontact.platform.pii import FieldCipher
    from zerocontact.skeleton.repository import AccountRepository

    def default(settings: type[Any], field: str) -> float:
        return float(settings.model_fields[field].default)

    loan = LoanRepository(databases["loan"])
    await loan.create_indexes()
    marketing = MarketingRepository(databases["marketing"])
    await marketing.create_indexes()
    payroll = PayrollRepository(databases["payroll"])
    await payroll.create_indexes()
    await SessionRepository(databases["identity"]).create_indexes()
    await PartyRepository(databases["identity"]).create_indexes()
    trust = TrustRepository(databases["identity"])
    await trust.create_indexes()
    await ensure_outbox_index(MerkleLog(databases["identity"]).heads)
    await AssistantRepository(databases["assistant"]).create_indexes()
    await AccountRepository(databases["skeleton"]).create_indexes()
    challenges = ChallengeRepository(databases["identity"])
    queue = LeafQueue(databases["identity"])
    await ensure_indexes(databases["gateway"], WEBHOOK_INDEXES)
    webhooks = WebhookStore(
        databases["gateway"], FieldCipher(os.urandom(32), index_key=os.urandom(32))
    )

    def now() -> datetime:
        return datetime.now(UTC)

    recovery = default(LoanSettings, "recovery_interval_s")
    cutoff = timedelta(seconds=default(LoanSettings, "recovery_min_age_s"))
    reminders = default(MarketingSettings, "reminder_poll_s")
    schedules = default(MarketingSettings, "schedule_poll_s")
    scheduler = default(PayrollSettings, "scheduler_interval_s")

    async def due_campaigns() -> list[object]:
        return [due async for due in marketing.due_campaigns(now())]

    async def triggered_campaigns() -> list[object]:
        return [found async for found in marketing.triggered_campaigns()]

    polls = [
        Poll("loan", "recovery: BOOKED loans", recovery,
             lambda: loan.loans_in_state(LoanState.BOOKED, older_than=now() - cutoff)),
        Poll("loan", "recovery: accepted without a loan", recovery,
             lambda: loan.accepted_without_loan(now() - cutoff)),
        Poll("loan", "recovery: pending repayments", recovery,
             loan.loans_with_pending_repayment),
        Poll("loan", "overdue scan", default(LoanSettings, "overdue_scan_interval_s"),
             lambda: loan.loans_past_due(now().date())),
        Poll("marketing", "reminders: due reminders", reminders,
             lambda: marketing.due_reminders(now())),
        # The reminder tick reloads the campaign book (cache_seconds < the tick).
        Poll("marketing", "reminders: campaign book", reminders, triggered_campaigns),
        Poll("marketing", "schedules: due campaigns", schedules, due_campaigns),
        Poll("payroll", "scheduler: SUBMITTED batches", scheduler,
             lambda: payroll.batches_in_state(BatchState.SUBMITTED)),
        Poll("payroll", "scheduler: APPROVED batches", scheduler,
             lambda: payroll.batches_in_state(BatchState.APPROVED)),
        Poll("payroll", "scheduler: EXECUTING batches", scheduler,
             lambda: payroll.batch_ids_in_state(BatchState.EXECUTING)),
        Poll("payroll", "scheduler: oldest EXECUTING", scheduler,
             payroll.oldest_executing_start),
        Poll("identity", "trust-log queue read (idle)", default(IdentitySettings, "trust_log_idle_poll_s"),
             queue.scan, drained=True),
        Poll("identity", "purge: challenges, deliveries", PURGE_INTERVAL_S,
             lambda: challenges.purge_expired(now=now())),
        Poll("identity", "trust: expired recordings", default(IdentitySettings, "trust_recording_purge_interval_s"),
             lambda: trust.expired_recordings(now(), limit=100)),
        Poll("gateway", "webhooks: due deliveries (idle)", default(GatewaySettings, "webhook_idle_tick_s"),
             lambda: webhooks.due(now(), 100)),
    ]  # fmt: skip
    return polls


async def outbox_sweeps(
    client: AsyncMongoClient[dict[str, Any]], databases: list[str]
) -> list[Poll]:
    """Every outbox relay's crash-recovery sweep, one per swept collection."""
    from zerocontact.platform.outbox import OutboxRelay
    from zerocontact.platform.settings import ServiceSettings

    interval = float(ServiceSettings.model_fields["outbox_sweep_interval_s"].default)
    polls = []
    for db, name in await swept_collections(client, prefix=POLLS_DATABASE):
        if db not in databases:
            continue
        relay = OutboxRelay(publisher=_NoPublisher(), collections=[client[db][name]])  # type: ignore[arg-type]
        polls.append(
            Poll(
                db.removeprefix(f"{POLLS_DATABASE}_"),
                f"outbox sweep: {name}",
                interval,
                relay.sweep,
            )
        )
    return polls


async def measure_polls(
    client: AsyncMongoClient[dict[str, Any]],
    reads: ReadCollections,
    pid: int | None,
    *,
    documents: int,
    calls: int,
    fill_polled: bool,
) -> None:
    """Print each periodic read's server CPU per call and at rest (``--polls``)."""
    services = ("identity", "loan", "payroll", "marketing", "assistant", "gateway", "skeleton")
    names = {service: f"{POLLS_DATABASE}_{service}" for service in services}
    for name in names.values():
        await client.drop_database(name)
    try:
        started = time.perf_counter()
        polls = await service_polls({s: client[n] for s, n in names.items()})
        swept = await swept_collections(client, prefix=POLLS_DATABASE)
        filled = list(swept)
        if fill_polled:
            reads.read.clear()
            for poll in polls:
                if not poll.drained:
                    await poll.call()
            filled += sorted(reads.read - set(swept))
        for db, name in filled:
            await fill_collection(client[db][name], "polls", documents)
        polls += await outbox_sweeps(client, list(names.values()))
        print(
            f"filled {documents} documents in each of {len(swept)} swept collections"
            + (f" and {len(filled) - len(swept)} more the polls read" if fill_polled else "")
            + f" in {time.perf_counter() - started:.1f} s"
        )
        rows: list[dict[str, Any]] = []
        for poll in polls:
            await poll.call()  # warm: first-use costs (indexes opened, plans) are not the poll's
            cpu0 = cpu_seconds(pid) if pid else 0.0
            wall0 = time.perf_counter()
            for _ in range(calls):
                await poll.call()
            wall = (time.perf_counter() - wall0) / calls
            cpu = ((cpu_seconds(pid) if pid else 0.0) - cpu0) / calls
            rows.append(
                {
                    "service": poll.service,
                    "poll": poll.name,
                    "interval_s": poll.interval_s,
                    "server_cpu_ms_per_call": round(1000 * cpu, 2) if pid else None,
                    "wall_ms_per_call": round(1000 * wall, 2),
                    "percent_of_a_core_at_rest": round(100 * cpu / poll.interval_s, 3)
                    if pid
                    else None,
                }
            )
        print(
            f"\n{'service':<10} {'poll':<38} {'every s':>8} {'CPU ms/call':>12} "
            f"{'wall ms':>8} {'% at rest':>10}"
        )
        for row in sorted(rows, key=lambda r: -(r["percent_of_a_core_at_rest"] or 0)):
            print(
                f"{row['service']:<10} {row['poll']:<38} {row['interval_s']:>8g} "
                f"{row['server_cpu_ms_per_call'] if pid else '-':>12} "
                f"{row['wall_ms_per_call']:>8} {row['percent_of_a_core_at_rest'] if pid else '-':>10}"
            )
        total = sum(r["percent_of_a_core_at_rest"] or 0 for r in rows)
        print(f"{'total':<10} {'':<38} {'':>8} {'':>12} {'':>8} {total:>10.3f}")
        print(
            json.dumps(
                {
                    "documents": documents,
                    "filled_collections": len(filled),
                    "calls": calls,
                    "total_percent": round(total, 3),
                    "polls": rows,
                }
            )
        )
    finally:
        for name in names.values():
            await client.drop_database(name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=None)
    parser.add_argument("--pending", type=int, default=5)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--polls", action="store_true", help="the services' periodic reads")
    parser.add_argument("--calls", type=int, default=10, help="calls per poll (--polls)")
    parser.add_argument(
        "--fill-polled",
        action="store_true",
        help="--polls: fill every collection a poll reads too (history: delivered webhooks, "
        "old reminders, ...), not only the swept ones idle.py fills",
    )
    args = parser.parse_args()

    uri = os.environ.get("MONGODB_URI") or (
        f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', '27017')}/"
    )
    pid = port_owner(urlparse(uri).port or 27017)
    reads = ReadCollections()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri, event_listeners=[reads], tz_aware=True
    )
    if args.polls:
        try:
            await measure_polls(
                client,
                reads,
                pid,
                documents=args.documents or 20_000,
                calls=args.calls,
                fill_polled=args.fill_polled,
            )
        finally:
            await client.close()
        return
    args.documents = args.documents or 100_000
    try:
        started = time.perf_counter()
        await fill(client, args.documents, args.pending)
        print(f"filled {args.documents} documents in {time.perf_counter() - started:.1f} s")
        docs = client[DATABASE]["aggregates"]
        results: dict[str, dict[str, float]] = {}
        for label, query in QUERIES.items():
            walls, cpus = [], []
            for _ in range(args.sweeps):
                cpu0 = cpu_seconds(pid) if pid else 0.0
                wall0 = time.perf_counter()
                found = [doc async for doc in docs.find(query, {"_outbox": 1})]
                walls.append(time.perf_counter() - wall0)
                cpus.append((cpu_seconds(pid) if pid else 0.0) - cpu0)
                if len(found) != args.pending:
                    raise SystemExit(f"{label}: {len(found)} documents, expected {args.pending}")
            walls.sort()
            row = {
                "wall_ms_median": 1000 * walls[len(walls) // 2],
                "server_cpu_ms_per_sweep": 1000 * sum(cpus) / len(cpus) if pid else -1.0,
            }
            results[label] = row
            print(
                f"{label}: {row['wall_ms_median']:.1f} ms (median of {args.sweeps}), "
                + (
                    f"server CPU {row['server_cpu_ms_per_sweep']:.1f} ms per sweep"
                    if pid
                    else "server CPU not measured (its process is not on this machine)"
                )
            )
        print(json.dumps({"documents": args.documents, "pending": args.pending, **results}))
    finally:
        await client.drop_database(DATABASE)
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
