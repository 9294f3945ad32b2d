"""The ledger on a MongoDB-wire store: append-only entry chains arbitrated by unique indexes."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64
from cachetools import LRUCache
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.ledger.rules import (
    Account,
    AccountConflict,
    EntryKind,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidPosting,
    InvariantReport,
    LedgerContention,
    LedgerError,
    Leg,
    Outcome,
    Posting,
    PostingState,
    Side,
    Step,
    StepHook,
    UnknownAccount,
    account_deltas,
    application_plan,
    canonical_legs,
    validate_legs,
)
from zerocontact.platform.money import Money, currency_exponent

_MAX_APPEND_ATTEMPTS = 500
# How often an account's head_seq/balance_minor hint is rewritten (every n-th entry).
HINT_EVERY = 16


def entry_id(account: str, seq: int) -> str:
    """The `_id` of ``account``'s entry number ``seq``: the chain is addressable by `_id`."""
    return f"{account}#{seq:012d}"


# Every loan opens two accounts and uses them in its first second; only the funders' and the
# products' accounts stay hot. Caching every account ever seen grew a process by ~2 KiB per
# loan for as long as it ran (the 30-minute soak: the loan service's memory +51 %).
CACHED_ACCOUNTS = 4096


class Ledger:
    """Accounts, postings and balances in one database (collections ``ledger_*``).

    Safe to use from many tasks and processes at once: every write is either an insert that
    a unique index arbitrates or a best-effort hint. Call ``ensure_indexes`` once at start-up.
    """

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        on_step: StepHook | None = None,
        cached_accounts: int = CACHED_ACCOUNTS,
    ) -> None:
        """``on_step`` is for crash tests: awaited after every durable step.
        ``cached_accounts``: how many accounts' attributes and chain heads this instance keeps
        in memory, the most recently used (a forgotten one is read again when next used)."""
        self._accounts: AsyncCollection[dict[str, Any]] = db["ledger_accounts"]
        self._postings: AsyncCollection[dict[str, Any]] = db["ledger_postings"]
        self._entries: AsyncCollection[dict[str, Any]] = db["ledger_entries"]
        self._outcomes: AsyncCollection[dict[str, Any]] = db["ledger_outcomes"]
        self._on_step = on_step
        self._indexed = False
        self._indexing = asyncio.Lock()
        # An account's attributes never change once opened (a different re-open raises), so
        # they are cached per instance; only the chain head is read every time.
        self._known: LRUCache[str, Account] = LRUCache(maxsize=cached_accounts)
        # The newest (seq, balance) this instance has seen per account: a lower bound of the
        # chain head (entries are never removed), so probing forward from it is exact.
        self._heads: LRUCache[str, tuple[int, int]] = LRUCache(maxsize=cached_accounts)

    async def ensure_indexes(self) -> None:
        """Create the unique indexes the protocol relies on (idempotent).

        Every writing method calls it first, once per ``Ledger`` instance, because without
        the unique indexes a replayed step would apply twice; calling it at start-up only
        moves that cost out of the first request.
        """
        if self._indexed:
            return
        async with self._indexing:
            if not self._indexed:
                await self._create_indexes()
                self._indexed = True

    async def _create_indexes(self) -> None:
        await self._entries.create_index(
            [("account", ASCENDING), ("seq", ASCENDING)], unique=True, name="account_seq"
        )
        await self._entries.create_index(
            [("posting_id", ASCENDING), ("account", ASCENDING), ("slot", ASCENDING)],
            unique=True,
            name="posting_account_slot",
        )
        await self._postings.create_index(
            [("state", ASCENDING), ("created_at", ASCENDING)], name="state_created"
        )

    # accounts

    async def open_account(
        self,
        account_id: str,
        *,
        currency: str,
        normal_balance: Side,
        allow_negative: bool = False,
    ) -> Account:
        """Open an account with a zero balance; opening it again with the same attributes
        returns it, with different ones raises ``AccountConflict``."""
        await self.ensure_indexes()
        currency_exponent(currency)
        wanted = Account(account_id, currency, Side(normal_balance), allow_negative)
        try:
            await self._accounts.insert_one(
                {
                    "_id": account_id,
                    "currency": currency,
                    "normal_balance": str(wanted.normal_balance),
                    "allow_negative": allow_negative,
                    "head_seq": Int64(0),
                    "balance_minor": Int64(0),
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            existing = await self.account(account_id)
            if existing != wanted:
                raise AccountConflict(f"account {account_id} exists as {existing}") from None
        else:
            # Just created: its attributes, and an empty chain as the head to start from (a
            # lower bound whatever happens next, which is all the head cache needs to be).
            self._known[account_id] = wanted
            self._heads.setdefault(account_id, (0, 0))
        return wanted

    async def account(self, account_id: str) -> Account:
        """The account, or ``UnknownAccount``."""
        found = await self._load_accounts([account_id])
        return found[account_id]

    async def balance(self, account_id: str) -> Money:
        """The account's current balance in its normal direction (authoritative: chain head)."""
        account = await self.account(account_id)
        _, balance = await self._head(account_id)
        return Money(account.currency, balance)

    async def _load_accounts(self, ids: Iterable[str]) -> dict[str, Account]:
        # One `_id` equality per uncached account: FerretDB 1.24 pushes nothing else down to
        # SQL, and `{_id: {$in: [...]}}` decoded the whole accounts collection per posting.
        wanted = sorted(set(ids))
        found: dict[str, Account] = {}
        missing = []
        for name in wanted:
            cached = self._known.get(name)
            if cached is not None:
                found[name] = cached
                continue
            doc = await self._accounts.find_one({"_id": name})
            if doc is None:
                missing.append(name)
                continue
            found[name] = self._known[name] = Account(
                doc["_id"], doc["currency"], Side(doc["normal_balance"]), doc["allow_negative"]
            )
        if missing:
            raise UnknownAccount(f"unknown accounts: {missing}")
        return found

    # postings

    async def post(self, posting_id: str, legs: Sequence[Leg], *, memo: str = "") -> Posting:
        """Apply a balanced posting exactly once and return it (state ``DONE``).

        Replaying ``posting_id`` with the same legs returns the first result (or raises the
        same ``InsufficientFunds``); with different legs raises ``IdempotencyConflict``.
        Invalid postings raise before anything is written.
        """
        await self.ensure_indexes()
        currency = validate_legs(legs)
        if not posting_id:
            raise InvalidPosting("posting id must not be empty")
        accounts = await self._load_accounts(leg.account for leg in legs)
        for leg in legs:
            if accounts[leg.account].currency != currency:
                raise InvalidPosting(
                    f"account {leg.account} is in {accounts[leg.account].currency}, "
                    f"posting is in {currency}"
                )
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as BSON stores it
        fresh: Posting | None = None
        try:
            await self._postings.insert_one(
                {
                    "_id": posting_id,
                    "legs": [
                        {
                            "account": leg.account,
                            "side": str(leg.side),
                            "minor_units": Int64(leg.amount.minor_units),
                        }
                        for leg in legs
                    ],
                    "currency": currency,
                    "state": str(PostingState.PENDING),
                    "memo": memo,
                    "created_at": now,
                }
            )
        except DuplicateKeyError:
            existing = await self.posting(posting_id)
            if canonical_legs(existing.legs) != canonical_legs(legs):
                raise IdempotencyConflict(
                    f"posting {posting_id} was used for different legs"
                ) from None
        else:
            fresh = Posting(posting_id, tuple(legs), currency, PostingState.PENDING, memo, now)
            await self._step(posting_id, "inserted")
        result = await self._complete(posting_id, fresh)
        if result.state is PostingState.REJECTED:
            raise InsufficientFunds(posting_id, result.reason_account or "?")
        return result

    async def posting(self, posting_id: str) -> Posting:
        """The stored posting (``KeyError`` if unknown)."""
        doc = await self._postings.find_one({"_id": posting_id})
        if doc is None:
            raise KeyError(posting_id)
        return _posting_from_doc(doc)

    async def recover(self, *, min_age: timedelta = timedelta(seconds=30)) -> list[str]:
        """Complete postings left ``PENDING`` (a crash mid-way) that are older than ``min_age``.

        Safe while other posts run, even on the same posting: every step is arbitrated by a
        unique index. Returns the ids it brought to a final state. Meant for a periodic sweep.
        """
        await self.ensure_indexes()
        cutoff = datetime.now(UTC) - min_age
        stuck = [
            doc["_id"]
            async for doc in self._postings.find(
                {"state": str(PostingState.PENDING), "created_at": {"$lte": cutoff}},
                projection={"_id": 1},
            ).sort("created_at", ASCENDING)
        ]
        completed = []
        for posting_id in stuck:
            result = await self._complete(posting_id)
            if result.state is not PostingState.PENDING:
                completed.append(posting_id)
        return completed

    async def _complete(self, posting_id: str, fresh: Posting | None = None) -> Posting:
        """Drive a stored posting to its final state; every step is idempotent.

        ``fresh``: the posting this caller has just inserted. It saves the reads that only a
        resumed posting needs (the posting, its decision, the final state): nobody else can
        have decided it yet, except a recovery sweep racing us, and every step below is
        arbitrated by a unique index, so racing it is safe either way.
        """
        posting = fresh or await self.posting(posting_id)
        if posting.state is not PostingState.PENDING:
            return posting
        accounts = await self._load_accounts(leg.account for leg in posting.legs)
        plan = application_plan(account_deltas(posting.legs, accounts), accounts)
        decision = None if fresh else await self._outcomes.find_one({"_id": posting_id})
        if decision is None:
            decision = await self._apply_guarded(posting_id, plan)
        if decision["outcome"] == Outcome.COMMITTED:
            for step in plan:
                if not step.guarded:
                    await self._append(
                        posting_id, step.account, "leg", EntryKind.APPLY, step.delta, guarded=False
                    )
                    await self._step(posting_id, f"applied:{step.account}")
            final: dict[str, Any] = {"state": str(PostingState.DONE)}
        else:
            for step in plan:
                if step.guarded:
                    await self._roll_back(posting_id, step)
            final = {
                "state": str(PostingState.REJECTED),
                "reason": decision.get("reason"),
                "reason_account": decision.get("reason_account"),
            }
        # the decision is immutable, so every actor writes the same final values
        await self._postings.update_one({"_id": posting_id}, {"$set": final})
        await self._step(posting_id, "finalized")
        if fresh is not None:
            return replace(
                fresh,
                state=PostingState(final["state"]),
                reason=final.get("reason"),
                reason_account=final.get("reason_account"),
            )
        return await self.posting(posting_id)

    async def _apply_guarded(self, posting_id: str, plan: Sequence[Step]) -> dict[str, Any]:
        """Apply the legs that can fail, then record the decision (the commit point)."""
        for step in plan:
            if not step.guarded:
                continue
            kind = await self._append(
                posting_id, step.account, "leg", EntryKind.APPLY, step.delta, guarded=True
            )
            if kind is not EntryKind.APPLY:
                # None: not enough funds; VOID: another actor already rejected this posting
                return await self._decide(posting_id, Outcome.REJECTED, step.account)
            await self._step(posting_id, f"applied:{step.account}")
        return await self._decide(posting_id, Outcome.COMMITTED, None)

    async def _decide(
        self, posting_id: str, outcome: Outcome, account: str | None
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": posting_id,
            "outcome": str(outcome),
            "decided_at": datetime.now(UTC),
        }
        if outcome is Outcome.REJECTED:
            doc |= {"reason": "INSUFFICIENT_FUNDS", "reason_account": account}
        try:
            await self._outcomes.insert_one(doc)
        except DuplicateKeyError:
            existing = await self._outcomes.find_one({"_id": posting_id})
            if existing is None:  # outcomes are never deleted
                raise LedgerError(f"outcome of {posting_id} vanished") from None
            return existing
        await self._step(posting_id, f"decided:{outcome}")
        return doc

    async def _roll_back(self, posting_id: str, step: Step) -> None:
        # Taking the leg's slot with a VOID makes any late APPLY of it impossible; if the slot
        # is already an APPLY, reverse it. The reversal raises the balance: it cannot fail.
        kind = await self._append(posting_id, step.account, "leg", EntryKind.VOID, 0, guarded=False)
        if kind is EntryKind.APPLY:
            await self._append(
                posting_id, step.account, "undo", EntryKind.UNDO, -step.delta, guarded=False
            )
        await self._step(posting_id, f"rolled-back:{step.account}")

    async def _append(
        self,
        posting_id: str,
        account: str,
        slot: str,
        kind: EntryKind,
        delta: int,
        *,
        guarded: bool,
    ) -> EntryKind | None:
        """Append an entry to ``account``'s chain unless the posting's slot is taken.

        Returns the kind of the entry holding the slot afterwards (ours or an earlier one),
        or ``None`` when ``guarded`` and the balance would go below zero.
        """
        for attempt in range(_MAX_APPEND_ATTEMPTS):
            seen = self._heads.get(account) if attempt == 0 else None
            if seen is not None and not (guarded and seen[1] + delta < 0):
                # Optimistic: the head this process last saw is usually still the head, and
                # the insert at seq+1 proves it (`_id` is unique and the chain is dense: seq+2
                # is only appended by a writer that saw seq+1), so no read first. A stale head
                # fails the insert and the next attempt looks. A refusal is never decided on a
                # cached balance: a deposit elsewhere may have raised it.
                seq, balance = seen
            else:
                seq, balance = await self._head(account)
            new_balance = balance + delta
            if guarded and new_balance < 0:
                return await self._slot_kind(posting_id, account, slot)
            try:
                await self._entries.insert_one(
                    {
                        "_id": entry_id(account, seq + 1),
                        "account": account,
                        "seq": Int64(seq + 1),
                        "posting_id": posting_id,
                        "slot": slot,
                        "kind": str(kind),
                        "delta": Int64(delta),
                        "balance_after": Int64(new_balance),
                        "created_at": datetime.now(UTC),
                    }
                )
            except DuplicateKeyError:
                # Either another posting appended seq+1 first, or the slot is taken (done
                # before, by us or another actor); the error does not say which index fired.
                # The entry at seq+1, read by `_id`, tells the common cases apart cheaply.
                holder = await self._entries.find_one(
                    {"_id": entry_id(account, seq + 1)},
                    projection={"posting_id": 1, "slot": 1, "kind": 1},
                )
                if holder is None:
                    # seq+1 is free, so the slot index fired: the slot's entry is further back
                    # (a replay); only this rare case pays for the slower slot query
                    taken = await self._slot_kind(posting_id, account, slot)
                    if taken is not None:
                        return taken
                    continue
                if (holder["posting_id"], holder["slot"]) == (posting_id, slot):
                    return EntryKind(holder["kind"])  # another actor just did this very step
                # jitter so that writers racing for one account do not stay in lock-step
                await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
                continue
            self._heads[account] = (seq + 1, new_balance)
            if (seq + 1) % HINT_EVERY == 0:
                # A hint only: the write is not atomic on FerretDB and may be overtaken by an
                # older pair, which _head tolerates because it always looks for newer entries.
                # Every HINT_EVERY-th entry: a process without the head in its cache probes at
                # most that many entries forward, and a posting saves a write per account.
                await self._accounts.update_one(
                    {"_id": account, "head_seq": {"$lt": Int64(seq + 1)}},
                    {"$set": {"head_seq": Int64(seq + 1), "balance_minor": Int64(new_balance)}},
                )
            return kind
        raise LedgerContention(f"account {account}: gave up after {_MAX_APPEND_ATTEMPTS} tries")

    async def _slot_kind(self, posting_id: str, account: str, slot: str) -> EntryKind | None:
        doc = await self._entries.find_one(
            {"posting_id": posting_id, "account": account, "slot": slot}, projection={"kind": 1}
        )
        return None if doc is None else EntryKind(doc["kind"])

    async def _head(self, account: str) -> tuple[int, int]:
        """``(seq, balance)`` of the newest entry of the account (``(0, 0)`` when none).

        From the newest head this instance saw (else the account's hint), then forward entry by
        entry by `_id` (``entry_id``) until a sequence number is free: the hint is usually current or a step behind, and an `_id`
        lookup is the only one FerretDB 1.24 does not answer by decoding the collection.
        """
        seen = self._heads.get(account)
        if seen is None:
            hint = await self._accounts.find_one(
                {"_id": account}, projection={"head_seq": 1, "balance_minor": 1}
            )
            if hint is None:
                raise UnknownAccount(f"unknown accounts: [{account!r}]")
            seen = int(hint.get("head_seq", 0)), int(hint.get("balance_minor", 0))
        seq, balance = seen
        while True:
            newer = await self._entries.find_one(
                {"_id": entry_id(account, seq + 1)}, projection={"balance_after": 1}
            )
            if newer is None:
                self._heads[account] = (seq, balance)
                return seq, balance
            seq, balance = seq + 1, int(newer["balance_after"])

    async def _step(self, posting_id: str, step: str) -> None:
        if self._on_step is not None:
            await self._on_step(posting_id, step)

    # audit

    async def check_invariants(self) -> InvariantReport:
        """Prove the ledger is consistent, reading everything (an audit, not a hot path).

        Checks: debits equal credits per currency over all non-rejected postings; every
        account chain runs seq 1..n with each running balance equal to the previous plus the
        delta; no account that may not go negative ever did; every DONE posting moved each of
        its accounts by exactly its legs and every REJECTED one by zero; no entry belongs to an
        unknown posting; each account's ``balance_minor`` hint matches its chain at
        ``head_seq``. Postings still PENDING are listed in ``in_flight``, not as problems.
        """
        problems: list[str] = []
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        accounts = {
            doc["_id"]: (
                Account(
                    doc["_id"], doc["currency"], Side(doc["normal_balance"]), doc["allow_negative"]
                ),
                int(doc.get("head_seq", 0)),
                int(doc.get("balance_minor", 0)),
            )
            async for doc in self._accounts.find({})
        }
        postings = {doc["_id"]: _posting_from_doc(doc) async for doc in self._postings.find({})}
        # Summed here, not with $unwind/$group: FerretDB 1.24's $unwind drops every field but
        # _id and the unwound array, so the posting's currency would be lost.
        for posting in postings.values():
            if posting.state is not PostingState.REJECTED:
                for leg in posting.legs:
                    totals[posting.currency][0 if leg.side is Side.DEBIT else 1] += (
                        leg.amount.minor_units
                    )
        for currency, (debits, credits) in sorted(totals.items()):
            if debits != credits:
                problems.append(f"{currency}: debits {debits} != credits {credits}")

        moved: dict[tuple[str, str], int] = defaultdict(int)  # (posting, account) -> net delta
        chains: dict[str, list[tuple[int, int]]] = defaultdict(list)  # account -> (seq, balance)
        last: tuple[str, int, int] | None = None  # account, seq, balance of the previous entry
        async for entry in self._entries.find({}).sort([("account", 1), ("seq", 1)]):
            name, seq = entry["account"], int(entry["seq"])
            delta, after = int(entry["delta"]), int(entry["balance_after"])
            previous_seq, previous_balance = (
                (last[1], last[2]) if last is not None and last[0] == name else (0, 0)
            )
            if seq != previous_seq + 1:
                problems.append(f"{name}: seq {seq} follows {previous_seq}")
            if after != previous_balance + delta:
                problems.append(f"{name}: seq {seq} balance {after} != {previous_balance}+{delta}")
            known = accounts.get(name)
            if known is None:
                problems.append(f"entry {name}#{seq} for an unknown account")
            elif after < 0 and not known[0].allow_negative:
                problems.append(f"{name}: seq {seq} balance {after} below zero")
            if entry["posting_id"] not in postings:
                problems.append(f"{name}#{seq} belongs to unknown posting {entry['posting_id']}")
            moved[(entry["posting_id"], name)] += delta
            chains[name].append((seq, after))
            last = (name, seq, after)

        in_flight: list[str] = []
        for posting in postings.values():
            if posting.state is PostingState.PENDING:
                in_flight.append(posting.id)
                continue
            try:
                expected = (
                    account_deltas(posting.legs, {k: v[0] for k, v in accounts.items()})
                    if posting.state is PostingState.DONE
                    else {}
                )
            except KeyError as missing:
                problems.append(f"posting {posting.id} names unknown account {missing}")
                continue
            for name in {leg.account for leg in posting.legs}:
                actual = moved.get((posting.id, name), 0)
                if actual != expected.get(name, 0):
                    problems.append(
                        f"posting {posting.id} ({posting.state}) moved {name} by {actual}, "
                        f"expected {expected.get(name, 0)}"
                    )

        for name, (_, head_seq, hint_balance) in accounts.items():
            chain = dict(chains.get(name, []))
            at_hint = chain.get(head_seq, 0) if head_seq else 0
            if head_seq and head_seq not in chain:
                problems.append(f"{name}: hint head_seq {head_seq} has no entry")
            elif at_hint != hint_balance:
                problems.append(f"{name}: hint balance {hint_balance} != chain {at_hint}")

        return InvariantReport(
            problems=problems,
            totals={c: (d, k) for c, (d, k) in totals.items()},
            accounts_checked=len(accounts),
            postings_checked=len(postings),
            in_flight=sorted(in_flight),
        )


def _posting_from_doc(doc: Mapping[str, Any]) -> Posting:
    currency = doc["currency"]
    return Posting(
        id=doc["_id"],
        legs=tuple(
            Leg(leg["account"], Side(leg["side"]), Money(currency, int(leg["minor_units"])))
            for leg in doc["legs"]
        ),
        currency=currency,
        state=PostingState(doc["state"]),
        memo=doc.get("memo", ""),
        created_at=doc["created_at"],
        reason=doc.get("reason"),
        reason_account=doc.get("reason_account"),
    )
