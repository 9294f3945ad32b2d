"""The double-entry ledger on the real MongoDB-wire server (FerretDB without transactions)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.platform.ledger import (
    IdempotencyConflict,
    InsufficientFunds,
    InvalidPosting,
    Ledger,
    Leg,
    PostingState,
    Side,
    StepHook,
    UnbalancedPosting,
    UnknownAccount,
)
from zerocontact.platform.money import Money

Db = AsyncDatabase[dict[str, Any]]


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


async def open_bank(ledger: Ledger, prefix: str = "") -> dict[str, str]:
    """Cash (an asset) and three customers' deposits (liabilities), none may go negative."""
    names = {"cash": f"{prefix}cash", "alice": f"{prefix}deposit:alice",
             "bob": f"{prefix}deposit:bob", "carol": f"{prefix}deposit:carol"}  # fmt: skip
    await ledger.open_account(names["cash"], currency="CNY", normal_balance=Side.DEBIT)
    for who in ("alice", "bob", "carol"):
        await ledger.open_account(names[who], currency="CNY", normal_balance=Side.CREDIT)
    return names


async def deposit(ledger: Ledger, names: dict[str, str], who: str, amount: str) -> None:
    await ledger.post(
        f"{names[who]}:deposit:{amount}",
        [Leg.debit(names["cash"], cny(amount)), Leg.credit(names[who], cny(amount))],
        memo="cash deposit",
    )


async def counts(db: Db) -> tuple[int, int, int]:
    return (
        await db["ledger_postings"].count_documents({}),
        await db["ledger_entries"].count_documents({}),
        await db["ledger_outcomes"].count_documents({}),
    )


@pytest.fixture
async def ledger(mongo_db: Db) -> Ledger:
    ledger = Ledger(mongo_db)
    await ledger.ensure_indexes()
    return ledger


async def test_balanced_posting_moves_money_and_keeps_invariants(ledger: Ledger) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "1000.00")
    done = await ledger.post(
        "transfer-1",
        [Leg.debit(n["alice"], cny("300.50")), Leg.credit(n["bob"], cny("300.50"))],
        memo="rent",
    )
    assert done.state is PostingState.DONE and done.memo == "rent"
    assert await ledger.balance(n["alice"]) == cny("699.50")
    assert await ledger.balance(n["bob"]) == cny("300.50")
    assert await ledger.balance(n["cash"]) == cny("1000.00")
    report = await ledger.check_invariants()
    assert report.ok, report.problems
    assert report.totals == {"CNY": (130050, 130050)}
    assert (report.accounts_checked, report.postings_checked, report.in_flight) == (4, 2, [])


async def test_invalid_postings_are_refused_and_write_nothing(ledger: Ledger, mongo_db: Db) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "10.00")
    await ledger.open_account("usd-float", currency="USD", normal_balance=Side.DEBIT)
    before = await counts(mongo_db)
    with pytest.raises(UnbalancedPosting):
        await ledger.post(
            "bad-1", [Leg.debit(n["alice"], cny("5")), Leg.credit(n["bob"], cny("4"))]
        )
    with pytest.raises(UnknownAccount):
        await ledger.post(
            "bad-2", [Leg.debit(n["alice"], cny("5")), Leg.credit("nobody", cny("5"))]
        )
    with pytest.raises(InvalidPosting):  # a CNY posting on a USD account
        await ledger.post(
            "bad-3", [Leg.debit("usd-float", cny("5")), Leg.credit(n["bob"], cny("5"))]
        )
    assert await counts(mongo_db) == before
    assert await ledger.balance(n["alice"]) == cny("10.00")
    assert await ledger.balance(n["bob"]) == cny("0")


async def test_replaying_a_posting_id_does_not_post_twice(ledger: Ledger, mongo_db: Db) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "100.00")
    legs = [Leg.debit(n["alice"], cny("40")), Leg.credit(n["bob"], cny("40"))]
    first = await ledger.post("pay-1", legs)
    after_first = await counts(mongo_db)
    again = await ledger.post("pay-1", list(reversed(legs)))  # same legs, other order
    assert again == first
    assert await counts(mongo_db) == after_first
    assert await ledger.balance(n["alice"]) == cny("60.00")
    assert await ledger.balance(n["bob"]) == cny("40.00")


async def test_same_id_with_different_legs_conflicts(ledger: Ledger, mongo_db: Db) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "100.00")
    await ledger.post("pay-2", [Leg.debit(n["alice"], cny("40")), Leg.credit(n["bob"], cny("40"))])
    before = await counts(mongo_db)
    with pytest.raises(IdempotencyConflict):
        await ledger.post(
            "pay-2", [Leg.debit(n["alice"], cny("41")), Leg.credit(n["bob"], cny("41"))]
        )
    assert await counts(mongo_db) == before
    assert await ledger.balance(n["bob"]) == cny("40.00")


async def test_insufficient_funds_is_rejected_and_leaves_balances(ledger: Ledger) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "100.00")
    await deposit(ledger, n, "carol", "10.00")
    # alice could pay her part, carol cannot: alice's applied leg must be rolled back
    legs = [Leg.debit(n["alice"], cny("50")), Leg.debit(n["carol"], cny("20")),
            Leg.credit(n["bob"], cny("70"))]  # fmt: skip
    with pytest.raises(InsufficientFunds) as refused:
        await ledger.post("split-bill", legs)
    assert refused.value.account == n["carol"]
    rejected = await ledger.posting("split-bill")
    assert rejected.state is PostingState.REJECTED
    assert (rejected.reason, rejected.reason_account) == ("INSUFFICIENT_FUNDS", n["carol"])
    with pytest.raises(InsufficientFunds):  # the replay gets the same answer
        await ledger.post("split-bill", legs)
    assert await ledger.balance(n["alice"]) == cny("100.00")
    assert await ledger.balance(n["carol"]) == cny("10.00")
    assert await ledger.balance(n["bob"]) == cny("0")
    report = await ledger.check_invariants()
    assert report.ok, report.problems
    assert report.totals == {"CNY": (11000, 11000)}  # the rejected posting is not counted


class SimulatedCrash(Exception):
    """Raised by the step hook: the process "dies" right after a durable step."""


def crash_after(step_number: int, seen: list[str]) -> StepHook:
    async def hook(posting_id: str, step: str) -> None:
        seen.append(step)
        if len(seen) == step_number:
            raise SimulatedCrash(step)

    return hook


async def steps_of(mongo_db: Db, prefix: str, legs_for: Any, funds: dict[str, str]) -> list[str]:
    seen: list[str] = []
    ledger = Ledger(mongo_db, on_step=crash_after(0, seen))
    names = await open_bank(ledger, prefix)
    for who, amount in funds.items():
        await deposit(Ledger(mongo_db), names, who, amount)
    seen.clear()
    with contextlib.suppress(InsufficientFunds):  # the reject flow ends this way
        await ledger.post(f"{prefix}p", legs_for(names))
    return list(seen)


def commit_legs(n: dict[str, str]) -> list[Leg]:
    return [Leg.debit(n["alice"], cny("30")), Leg.debit(n["carol"], cny("20")),
            Leg.credit(n["bob"], cny("50"))]  # fmt: skip


def reject_legs(n: dict[str, str]) -> list[Leg]:
    return [Leg.debit(n["alice"], cny("30")), Leg.debit(n["carol"], cny("999")),
            Leg.credit(n["bob"], cny("1029"))]  # fmt: skip


@pytest.mark.parametrize(
    ("legs_for", "final", "expected"),
    [
        (commit_legs, PostingState.DONE, {"alice": "70.00", "carol": "80.00", "bob": "50.00"}),
        (reject_legs, PostingState.REJECTED, {"alice": "100.00", "carol": "100.00", "bob": "0"}),
    ],
    ids=["commit", "reject"],
)
@pytest.mark.parametrize("resume", ["recover", "replay"])
async def test_crash_after_every_step_then_recovery_is_correct(
    mongo_db: Db, legs_for: Any, final: PostingState, expected: dict[str, str], resume: str
) -> None:
    funds = {"alice": "100.00", "carol": "100.00"}
    steps = await steps_of(mongo_db, "dry:", legs_for, funds)
    assert steps[0] == "inserted" and steps[-1] == "finalized" and len(steps) >= 5
    for number, step in enumerate(steps, start=1):
        prefix = f"crash{number}:"
        seen: list[str] = []
        crashing = Ledger(mongo_db, on_step=crash_after(number, seen))
        names = await open_bank(crashing, prefix)
        for who, amount in funds.items():
            await deposit(Ledger(mongo_db), names, who, amount)
        with pytest.raises(SimulatedCrash):
            await crashing.post(f"{prefix}p", legs_for(names))
        assert seen[-1] == step.replace("dry:", prefix)
        survivor = Ledger(mongo_db)
        if resume == "recover":
            completed = await survivor.recover(min_age=timedelta(0))
            assert completed == ([] if step == "finalized" else [f"{prefix}p"])
        else:  # the client retries with the same idempotency id
            try:
                await survivor.post(f"{prefix}p", legs_for(names))
            except InsufficientFunds:
                assert final is PostingState.REJECTED
        assert (await survivor.posting(f"{prefix}p")).state is final, step
        for who, amount in expected.items():
            assert await survivor.balance(names[who]) == cny(amount), (step, who)
    report = await Ledger(mongo_db).check_invariants()
    assert report.ok, report.problems
    assert report.in_flight == []


async def test_recover_leaves_young_postings_to_their_owner(mongo_db: Db) -> None:
    seen: list[str] = []
    crashing = Ledger(mongo_db, on_step=crash_after(2, seen))
    await crashing.ensure_indexes()
    n = await open_bank(crashing)
    await deposit(Ledger(mongo_db), n, "alice", "10.00")
    seen.clear()
    with pytest.raises(SimulatedCrash):
        await crashing.post(
            "young", [Leg.debit(n["alice"], cny("1")), Leg.credit(n["bob"], cny("1"))]
        )
    ledger = Ledger(mongo_db)
    report = await ledger.check_invariants()
    assert report.ok and report.in_flight == ["young"]
    assert await ledger.recover(min_age=timedelta(minutes=5)) == []
    assert await ledger.recover(min_age=timedelta(0)) == ["young"]
    assert await ledger.balance(n["bob"]) == cny("1.00")


async def test_concurrent_debits_never_overdraw(ledger: Ledger, mongo_db: Db) -> None:
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "10.00")

    async def spend(i: int) -> bool:
        try:
            await ledger.post(f"spend-{i}", [Leg.debit(n["alice"], cny("0.30")),
                                              Leg.credit(n["bob"], cny("0.30"))])  # fmt: skip
        except InsufficientFunds:
            return False
        return True

    results = await asyncio.gather(*(spend(i) for i in range(50)))
    assert sum(results) == 33  # 1000 fen / 30 fen: exactly the affordable ones succeed
    assert await ledger.balance(n["alice"]) == cny("0.10")
    assert await ledger.balance(n["bob"]) == cny("9.90")
    low = await mongo_db["ledger_entries"].find_one({"balance_after": {"$lt": 0}})
    assert low is None
    report = await ledger.check_invariants()
    assert report.ok, report.problems


async def test_two_instances_with_stale_heads_stay_exact(mongo_db: Db) -> None:
    """Two processes (replicas) post to the same accounts: each one's cached heads go stale,
    and neither pays on a stale balance nor refuses on one."""
    a, b = Ledger(mongo_db), Ledger(mongo_db)
    await a.ensure_indexes()
    n = await open_bank(a)
    await deposit(a, n, "alice", "1.00")  # a caches alice at 1.00
    await deposit(b, n, "alice", "5.00")  # 6.00: a's cache is behind

    def spend(amount: str) -> list[Leg]:
        return [Leg.debit(n["alice"], cny(amount)), Leg.credit(n["bob"], cny(amount))]

    await a.post("spend-a", spend("3.00"))  # a's cache says 1.00: it must look, not refuse
    await b.post("spend-b", spend("2.00"))  # b's cache says 6.00: its insert fails, it looks
    with pytest.raises(InsufficientFunds):
        await a.post("spend-a2", spend("1.50"))  # a's cache says 3.00; the truth is 1.00
    for ledger in (a, b, Ledger(mongo_db)):
        assert await ledger.balance(n["alice"]) == cny("1.00")
        assert await ledger.balance(n["bob"]) == cny("5.00")
    report = await Ledger(mongo_db).check_invariants()
    assert report.ok, report.problems


async def test_a_ledger_keeps_a_bounded_number_of_accounts_in_memory_and_stays_exact(
    mongo_db: Db,
) -> None:
    """A process keeps the most recently used accounts only (every loan opens two, for good):
    one it forgot is read again, past the hint written every HINT_EVERY entries, and its
    balance, its guard against overdrafts and its chain stay exact."""
    ledger = Ledger(mongo_db, cached_accounts=2)
    await ledger.ensure_indexes()
    n = await open_bank(ledger)
    for step in range(1, 8):  # every account leaves the cache between two of its postings
        await deposit(ledger, n, "alice", f"{step}.00")
        await deposit(ledger, n, "bob", f"{step}.00")
        await deposit(ledger, n, "carol", f"{step}.00")
        assert len(ledger._known) <= 2 and len(ledger._heads) <= 2
    with pytest.raises(InsufficientFunds):
        await ledger.post(
            "too-much", [Leg.debit(n["alice"], cny("28.01")), Leg.credit(n["bob"], cny("28.01"))]
        )
    await ledger.post(
        "all-of-it", [Leg.debit(n["alice"], cny("28.00")), Leg.credit(n["bob"], cny("28.00"))]
    )
    for reader in (ledger, Ledger(mongo_db)):
        assert await reader.balance(n["alice"]) == cny("0.00")
        assert await reader.balance(n["bob"]) == cny("56.00")
        assert await reader.balance(n["cash"]) == cny("84.00")
    report = await Ledger(mongo_db).check_invariants()
    assert report.ok, report.problems


async def test_recovery_racing_the_original_post_applies_once(mongo_db: Db) -> None:
    inserted = asyncio.Event()

    async def slow(posting_id: str, step: str) -> None:
        if step == "inserted":
            inserted.set()
        await asyncio.sleep(0.005)  # widen every window between steps

    async def sweep() -> list[str]:
        await inserted.wait()  # the posting exists and its owner is still working on it
        return await Ledger(mongo_db, on_step=slow).recover(min_age=timedelta(0))

    ledger = Ledger(mongo_db, on_step=slow)
    n = await open_bank(ledger)
    await deposit(ledger, n, "alice", "100.00")
    legs = [Leg.debit(n["alice"], cny("60")), Leg.credit(n["bob"], cny("60"))]
    actors: list[Awaitable[object]] = [ledger.post("raced", legs) for _ in range(3)]
    actors += [sweep() for _ in range(3)]
    results = await asyncio.gather(*actors)
    assert any(r == ["raced"] for r in results[3:])  # at least one sweeper really raced
    assert await ledger.balance(n["alice"]) == cny("40.00")
    assert await ledger.balance(n["bob"]) == cny("60.00")
    entries = await mongo_db["ledger_entries"].count_documents({"posting_id": "raced"})
    assert entries == 2
    report = await ledger.check_invariants()
    assert report.ok, report.problems
