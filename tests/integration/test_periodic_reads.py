"""The reads the services' periodic jobs make at rest are index lookups on the embedded FerretDB.

A poll that FerretDB answers by reading and decoding a whole collection costs more at rest the
more the collection holds (docs/performance.md, Idle). Each poll below runs through the
service's own repository on a client that records its commands; every filter it sent is then
explained, and SQLite's plan must use an index and scan no table (decisions 27 and 30).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from tests.integration.harness import Engines
from zerocontact.gateway.webhooks.store import INDEXES as WEBHOOK_INDEXES
from zerocontact.gateway.webhooks.store import WebhookStore
from zerocontact.identity.repository.idempotency import IdempotencyStore
from zerocontact.identity.repository.sessions import ChallengeRepository, SessionRepository
from zerocontact.loan.domain.loans import LoanState
from zerocontact.loan.repository import LoanRepository
from zerocontact.marketing.repository import Repository as MarketingRepository
from zerocontact.payroll.domain.batches import BatchState
from zerocontact.payroll.repository import PayrollRepository
from zerocontact.platform.mongo import ensure_indexes
from zerocontact.platform.pii import FieldCipher


class Reads(monitoring.CommandListener):
    """The (database, collection, filter) of every find, count and delete sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name in ("find", "count"):
            name = command[event.command_name]
            self.sent.append((event.database_name, name, dict(command.get("filter") or {})))
        elif event.command_name == "delete":
            for delete in command.get("deletes", []):
                self.sent.append((event.database_name, command["delete"], dict(delete["q"])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_every_periodic_read_at_rest_is_an_index_lookup(
    engines: Engines,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    unique_name: Callable[[str], str],
) -> None:
    if "ferretdbVersion" not in await mongo_client.admin.command("buildInfo"):
        pytest.skip("the query plans checked here are the embedded FerretDB's SQLite plans")
    reads = Reads()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        engines.mongodb_uri, event_listeners=[reads], tz_aware=True
    )
    names = {s: unique_name(s).replace("-", "_")[:60] for s in ("idn", "loan", "pay", "mkt", "gw")}
    try:
        dbs = {service: client[name] for service, name in names.items()}
        loan = LoanRepository(dbs["loan"])
        marketing = MarketingRepository(dbs["mkt"])
        payroll = PayrollRepository(dbs["pay"])
        challenges = ChallengeRepository(dbs["idn"])
        idempotency = IdempotencyStore(dbs["idn"])
        webhooks = WebhookStore(dbs["gw"], FieldCipher(b"k" * 32, index_key=b"i" * 32))
        for prepare in (
            loan.create_indexes,
            marketing.create_indexes,
            payroll.create_indexes,
            SessionRepository(dbs["idn"]).create_indexes,
            idempotency.create_indexes,
            lambda: ensure_indexes(dbs["gw"], WEBHOOK_INDEXES),
        ):
            await prepare()

        now = datetime.now(UTC)

        async def drain(rows: Any) -> None:
            _ = [row async for row in rows]

        polls: dict[str, Callable[[], Awaitable[object]]] = {
            "loan recovery: BOOKED loans": lambda: loan.loans_in_state(
                LoanState.BOOKED, older_than=now
            ),
            "loan recovery: accepted without a loan": lambda: loan.accepted_without_loan(now),
            "loan recovery: pending repayments": loan.loans_with_pending_repayment,
            "marketing: due reminders": lambda: marketing.due_reminders(now),
            "marketing: campaign book": lambda: drain(marketing.triggered_campaigns()),
            "marketing: due campaigns": lambda: drain(marketing.due_campaigns(now)),
            "payroll scheduler: SUBMITTED": lambda: payroll.batches_in_state(BatchState.SUBMITTED),
            "payroll scheduler: EXECUTING": lambda: payroll.batch_ids_in_state(
                BatchState.EXECUTING
            ),
            "identity purge: challenges, deliveries": lambda: challenges.purge_expired(now=now),
            "identity purge: idempotency keys": lambda: idempotency.purge_expired(now=now),
            "gateway webhooks: due deliveries": lambda: webhooks.due(now, 10),
        }
        for poll in polls.values():
            await poll()
        assert len(reads.sent) >= len(polls)

        for database, collection, query in reads.sent:
            explained = await client[database].command(
                "explain", {"find": collection, "filter": query}
            )
            plan = [str(step) for step in explained["queryPlanner"]["Plan"]]
            assert any("USING INDEX" in step for step in plan), (collection, query, plan)
            assert not any("detail=SCAN" in step for step in plan), (collection, query, plan)
    finally:
        await client.close()
        for name in names.values():
            await mongo_client.drop_database(name)
