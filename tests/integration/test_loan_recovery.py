"""The loan service's recovery sweep on real Kafka and FerretDB: a payout the rail took while
the service never heard back is settled and announced once, and one loan that cannot be
finished holds no other back (the full kill -9 run left 4 loans paid at the rail and never
marked disbursed: docs/reliability.md, kill9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.harness import Engines, eventually
from tests.integration.test_loan_support import (
    EventBus,
    LoanTopicReader,
    Tokens,
    Topics,
    apply_for_loan,
    create_loan_topics,
    loan_settings,
    running_loan,
    wait_state,
)
from zerocontact.loan import bookkeeping, handlers
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.handlers.recovery import recover
from zerocontact.loan.rail import RAIL_PAYMENTS, PaymentRailSimulator, RailStatus
from zerocontact.loan.repository import LoanRepository
from zerocontact.loan.repository.store import REPAYMENT_PENDING
from zerocontact.loan.settings import LoanSettings
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.money import Money


class Finds(monitoring.CommandListener):
    """The filters of the ``find`` commands sent on one collection."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == self.collection:
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def _recovery_failures(app: Any, step: str) -> float:
    text = (await app.client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "zc_loan_recovery_failures_total"
                and sample.labels.get("step") == step
            ):
                return float(sample.value)
    return 0.0


async def _approved(
    app: Any, bus: EventBus, reader: LoanTopicReader, tokens: Tokens
) -> tuple[str, str]:
    """A new customer's application of 6,000.00, approved: (party, application id)."""
    party = new_id()
    await bus.register_customer(party)

    async def apply_known() -> dict[str, Any] | None:
        r = await apply_for_loan(app, tokens, party, amount="6000.00")
        return r.json() if r.status_code == 202 else None

    application_id: str = (await eventually(apply_known))["application_id"]
    sub = await reader.wait_for("loan_application_submitted", application_id=application_id)
    await bus.assess(sub[0].message, sub[0].event_id)
    await wait_state(app, tokens, application_id, party, "APPROVED")
    return party, application_id


async def _accepted(
    app: Any, bus: EventBus, reader: LoanTopicReader, tokens: Tokens, state: str
) -> tuple[str, dict[str, Any]]:
    """A new customer's approved application, accepted: (party, the acceptance's answer), the
    loan in ``state``."""
    party, application_id = await _approved(app, bus, reader, tokens)
    r = await app.client.post(
        f"/v1/applications/{application_id}/acceptance",
        headers=tokens.headers(party, key=f"accept-{new_id()[-12:]}"),
    )
    assert r.status_code == 200 and r.json()["state"] == state, r.text
    return party, r.json()


async def _booked_loan(app: Any, bus: EventBus, reader: LoanTopicReader, tokens: Tokens) -> str:
    """A loan accepted while the rail takes nothing: BOOKED, its funds reserved."""
    _, loan = await _accepted(app, bus, reader, tokens, "BOOKED")
    loan_id: str = loan["loan_id"]
    return loan_id


async def _all_confirmed(client: AsyncMongoClient[dict[str, Any]], database: str) -> bool:
    """The sweep has seen the loan of every accepted application."""
    left = await client[database]["applications"].count_documents({"loan_unconfirmed": True})
    return left == 0


async def _no_application_left_to_confirm(engines: Engines, database: str) -> None:
    """Every accepted application's loan has been confirmed: a sweep now reads no loan."""
    loans, applications = Finds("loans"), Finds("applications")
    watched: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        engines.mongodb_uri, event_listeners=[loans, applications]
    )
    try:
        later = datetime.now(UTC) + timedelta(minutes=1)
        waiting = await LoanRepository(watched[database]).accepted_without_loan(later)
        left = await watched[database]["applications"].count_documents({"loan_unconfirmed": True})
    finally:
        await watched.close()
    assert waiting == []
    assert left == 0
    assert loans.filters == []
    assert [sorted(f) for f in applications.filters] == [["accepted_at", "loan_unconfirmed"]]


@dataclass
class World:
    """A loan service's topics, database and consumer group, with identity's and risk's side
    (the bus), a reader of the loan topic and tokens."""

    engines: Engines
    topics: Topics
    database: str
    group: str
    tokens: Tokens
    bus: EventBus
    reader: LoanTopicReader

    def settings(self, **overrides: Any) -> LoanSettings:
        """The loan service's settings on this world's engines, topics and database."""
        return loan_settings(self.engines, self.topics, self.database, self.group, **overrides)


@pytest.fixture
async def world(
    engines: Engines,
    kafka_admin: Any,
    unique_name: Callable[[str], str],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[World]:
    topics: Topics = await create_loan_topics(kafka_admin, unique_name)
    world = World(
        engines,
        topics,
        unique_name("loan").replace("-", "_")[:60],
        unique_name("group"),
        Tokens(),
        EventBus(engines.kafka_bootstrap, topics),
        LoanTopicReader(engines.kafka_bootstrap, topics.loan),
    )
    await world.bus.start()
    await world.reader.start()
    try:
        yield world
    finally:
        await world.reader.stop()
        await world.bus.stop()
        await mongo_client.drop_database(world.database)


async def test_the_sweep_settles_a_payout_the_rail_took_and_a_bad_loan_holds_no_other_back(
    engines: Engines, world: World, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    database, tokens, bus, reader = world.database, world.tokens, world.bus, world.reader
    db = mongo_client[database]
    down = world.settings(rail_failure_rate=1.0, recovery_interval_s=600)
    async with running_loan(down, tokens) as app:
        # Booked first, so the sweep meets it first: before the fix its failure ended
        # every run, and the loan behind it was never finished.
        bad = await _booked_loan(app, bus, reader, tokens)
        paid = await _booked_loan(app, bus, reader, tokens)
    repo = LoanRepository(db)
    loan = await repo.loan(paid)
    assert loan is not None
    # The rail took the payout, and the service never heard back (the connection died,
    # the process was killed): only the rail knows.
    taken = await PaymentRailSimulator(db[RAIL_PAYMENTS], latency_s=0).transfer(
        reference=f"disburse:{paid}",
        sources=[
            (bookkeeping.funding(f.funder_id, bookkeeping.shard_of(paid)), f.amount)
            for f in loan.funders
        ],
        destination=bookkeeping.settlement(loan.party_id),
        amount=loan.principal,
    )
    assert taken.status is RailStatus.SETTLED
    # The other loan's reference was used for another payout: a bug the sweep cannot
    # finish, refused by the rail on every attempt.
    await db[RAIL_PAYMENTS].insert_one(
        {
            "_id": f"disburse:{bad}",
            "request": "another payout",
            "status": "SETTLED",
            "rail_reference": f"SIM-{new_id()}",
            "reason": "",
        }
    )

    up = world.settings()
    async with running_loan(up, tokens) as app:
        disbursed = await reader.wait_for("loan_disbursed", loan_id=paid, within_s=60)
        # The loan it cannot finish is counted on every run, for ZcLoanRecoveryFailing.
        failed = await eventually(lambda: _recovery_failures(app, "disburse"))
        assert failed >= 1
        await eventually(lambda: _all_confirmed(mongo_client, database), within_s=30)
    assert disbursed[0].message.rail_reference == taken.rail_reference
    assert len(reader.of("loan_disbursed", loan_id=paid)) == 1
    assert await db[RAIL_PAYMENTS].count_documents({"_id": f"disburse:{paid}"}) == 1
    assert await Ledger(db).balance(bookkeeping.settlement(loan.party_id)) == Money.of(
        "6000.00", "CNY"
    )
    stuck = await repo.loan(bad)
    assert stuck is not None and stuck.state.value == "BOOKED"
    assert reader.of("loan_disbursed", loan_id=bad) == []
    report = await Ledger(db).check_invariants()
    assert report.ok, report.problems

    # The sweep reads only the applications whose loan it has not confirmed yet, and
    # looks loans up by `_id`: FerretDB 1.24 answers both from an index. It used to read
    # every accepted application on every run, and look each one's loan up by application
    # id, which decoded every loan: a sweep that grew with the book.
    await _no_application_left_to_confirm(engines, database)


async def test_the_sweep_books_and_pays_an_acceptance_whose_loan_a_crash_never_wrote(
    engines: Engines, world: World, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    database, tokens, bus, reader = world.database, world.tokens, world.bus, world.reader
    settings = world.settings(recovery_interval_s=600)
    async with running_loan(settings, tokens) as app:
        _, application_id = await _approved(app, bus, reader, tokens)
    # The acceptance was stored and the process died before the loan document was.
    repo = LoanRepository(mongo_client[database])
    accepted = await repo.application(application_id)
    assert accepted is not None
    assert domain.accept_offer(accepted, loan_id=new_id(), now=datetime.now(UTC))
    await repo.save_application(accepted, events=[])
    assert accepted.loan_id is not None and await repo.loan(accepted.loan_id) is None

    async with running_loan(world.settings(), tokens):
        disbursed = await reader.wait_for("loan_disbursed", loan_id=accepted.loan_id, within_s=60)
        await eventually(lambda: _all_confirmed(mongo_client, database), within_s=30)
    assert len(disbursed) == 1
    loan = await repo.loan(accepted.loan_id)
    assert loan is not None and loan.state.value == "DISBURSED"
    report = await Ledger(mongo_client[database]).check_invariants()
    assert report.ok, report.problems
    await _no_application_left_to_confirm(engines, database)


async def test_the_sweep_finds_half_applied_repayments_by_an_indexed_flag(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    """`repayment_pending` follows the intent, loans stored before the flag are flagged at
    start, and the sweep's read is an index lookup (on FerretDB, `$ne: null` on the intent
    decoded every loan on every run)."""
    repo = LoanRepository(mongo_db)
    await repo.create_indexes()
    intent = {"id": "repay-1", "request": "CNY:100"}
    await mongo_db["loans"].insert_many(
        [
            # stored before the flag existed: an intent a crash left, and a loan without one
            {"_id": "loan-old-intent", "version": 3, "pending_repayment": intent},
            {"_id": "loan-old-clear", "version": 3, "pending_repayment": None},
            {"_id": "loan-no-field", "version": 1},
            {
                "_id": "loan-flagged",
                "version": 5,
                "pending_repayment": intent,
                REPAYMENT_PENDING: True,
            },
            {
                "_id": "loan-cleared",
                "version": 6,
                "pending_repayment": None,
                REPAYMENT_PENDING: False,
            },
        ]
    )
    await repo.create_indexes()  # the next start of the service
    assert sorted(await repo.loans_with_pending_repayment()) == ["loan-flagged", "loan-old-intent"]
    untouched = await mongo_db["loans"].find_one({"_id": "loan-old-clear"})
    assert untouched is not None and REPAYMENT_PENDING not in untouched

    explained = await mongo_db.command(
        "explain", {"find": "loans", "filter": {REPAYMENT_PENDING: True}}
    )
    if "Plan" in explained.get("queryPlanner", {}):  # FerretDB's SQLite plan (MongoDB's differs)
        plan = [str(step) for step in explained["queryPlanner"]["Plan"]]
        assert any("USING INDEX" in s and "repayment_pending" in s for s in plan), plan


async def _disbursed_loan(app: Any, world: World) -> tuple[str, str, Money, date]:
    """A disbursed 6,000.00 loan: (its id, its party, the first installment, its due date)."""
    party, loan = await _accepted(app, world.bus, world.reader, world.tokens, "DISBURSED")
    first = loan["schedule"][0]
    amount = Money.of(first["principal"], "CNY") + Money.of(first["interest"], "CNY")
    return loan["loan_id"], party, amount, date.fromisoformat(first["due_date"])


async def _repay(
    deps: Any,
    db: AsyncDatabase[dict[str, Any]],
    loan_id: str,
    repayment_id: str,
    amount: Money,
    due: date,
    *,
    on_step: Callable[[str, str], Awaitable[None]],
) -> Any:
    """The service's own repayment handler, with a ledger that calls ``on_step`` mid-posting."""
    return await handlers.repay(
        loan_id=loan_id,
        repayment_id=repayment_id,
        amount=amount,
        subject=None,
        deps=replace(deps, ledger=Ledger(db, on_step=on_step)),
        as_of=due,
    )


async def test_the_sweep_leaves_a_young_repayment_intent_to_its_request(
    world: World, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """An intent younger than the sweep's minimum age is the live request's to finish: the
    sweep used to race it, and the request then failed on the sweep's write (ConcurrentUpdate
    in `test_a_repayment_interrupted_by_a_crash_is_finished_once`, now and then)."""
    db = mongo_client[world.database]
    async with running_loan(world.settings(recovery_interval_s=600), world.tokens) as app:
        deps = app.app.state.deps.loan
        loan_id, party, amount, due = await _disbursed_loan(app, world)

        async def crash(posting_id: str, step: str) -> None:
            if posting_id.startswith("repay:") and step == "inserted":
                raise RuntimeError("the process died after the posting was stored")

        with pytest.raises(RuntimeError):
            await _repay(deps, db, loan_id, "repay-young-1", amount, due, on_step=crash)
        assert await recover(deps=deps, min_age=timedelta(minutes=5)) == 0
        left = await db["loans"].find_one({"_id": loan_id})
        assert left is not None and left["pending_repayment"]["id"] == "repay-young-1"
        assert left["repayments"] == {}

        assert await recover(deps=deps, min_age=timedelta(0)) == 1  # old enough now
        done = await db["loans"].find_one({"_id": loan_id})
        assert done is not None and done["pending_repayment"] is None
        assert list(done["repayments"]) == ["repay-young-1"]
        received = await world.reader.wait_for("repayment_received", loan_id=loan_id)
    assert len(received) == 1
    assert await Ledger(db).balance(f"settlement:{party}") == Money.of("6000.00", "CNY") - amount


async def test_a_repayment_finished_by_the_sweep_mid_request_answers_the_request_once(
    world: World, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """The sweep finishes an intent while its request is between the posting and the loan's
    write (a request slower than the sweep's minimum age): the request reads the result back
    instead of failing on the sweep's write, and the money moves once."""
    db = mongo_client[world.database]
    async with running_loan(world.settings(recovery_interval_s=600), world.tokens) as app:
        deps = app.app.state.deps.loan
        loan_id, party, amount, due = await _disbursed_loan(app, world)
        swept: list[int] = []

        async def sweep_meanwhile(posting_id: str, step: str) -> None:
            if posting_id.startswith("repay:") and step == "inserted" and not swept:
                swept.append(await recover(deps=deps, min_age=timedelta(0)))

        result = await _repay(
            deps, db, loan_id, "repay-raced-1", amount, due, on_step=sweep_meanwhile
        )
        assert swept == [1]  # the sweep finished it inside the request
        assert result.repayment_id == "repay-raced-1"
        done = await db["loans"].find_one({"_id": loan_id})
        assert done is not None and done["pending_repayment"] is None
        assert list(done["repayments"]) == ["repay-raced-1"]
        received = await world.reader.wait_for("repayment_received", loan_id=loan_id)
        await asyncio.sleep(1)  # a second RepaymentReceived would arrive here
    assert len(world.reader.of("repayment_received", loan_id=loan_id)) == len(received) == 1
    assert await Ledger(db).balance(f"settlement:{party}") == Money.of("6000.00", "CNY") - amount
    report = await Ledger(db).check_invariants()
    assert report.ok, report.problems
