"""The ``PaymentRail`` port and ``PaymentRailSimulator``, its documented simulator.

The port is the bank side of payroll: outgoing credit transfers to any bank's card (bulk,
up to 1,000 per request like Nium's batch payouts, each with an ISO 20022 EndToEndId) and
confirmation of incoming transfers (top-ups). A rail MUST be idempotent by EndToEndId (and by
incoming reference): submitting the same id again returns the first result and never pays
twice. That is what makes re-driving an item after a crash safe.

``PaymentRailSimulator`` is a SIMULATOR, not a bank. It keeps its own state in MongoDB (its
own database, as if it were the bank's side), so its idempotency survives restarts of the
payroll process, and behaves like a rail: a configurable latency per request, and
deterministic failures for the test cards in :data:`TEST_CARDS`. Replace it by configuration
with an adapter for a real rail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bson import Int64
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from zerocontact.payroll.domain.cards import luhn_complete
from zerocontact.platform.ids import new_id
from zerocontact.platform.money import Money
from zerocontact.platform.pii import mask_card


class RailStatus(StrEnum):
    """What the rail answered for one transfer."""

    ACSC = "ACSC"  # settled at the creditor's bank
    RJCT = "RJCT"  # rejected; see the reason code
    TIMEOUT = "TIMEOUT"  # no answer in time: unknown, retry with the same EndToEndId


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    """One outgoing transfer (plaintext card: only inside the process, never stored here)."""

    end_to_end_id: str
    card_number: str
    payee_name: str
    amount: Money


@dataclass(frozen=True, slots=True)
class RailResult:
    """The rail's answer for one EndToEndId."""

    end_to_end_id: str
    status: RailStatus
    reference: str = ""
    reason_code: str = ""
    reason: str = ""

    @property
    def retryable(self) -> bool:
        """True when sending the same EndToEndId again may succeed."""
        return self.status is RailStatus.TIMEOUT


class IncomingMismatch(Exception):
    """An incoming reference was confirmed before with a different amount or beneficiary."""


class PaymentRail(Protocol):
    """The bank side of payroll; every method is idempotent by its id."""

    async def credit_transfers(self, transfers: Sequence[CreditTransfer]) -> list[RailResult]:
        """Send transfers (≤ 1,000); one result per transfer, in order."""
        ...

    async def confirm_incoming(self, reference: str, *, beneficiary: str, amount: Money) -> str:
        """Confirm an incoming transfer to ``beneficiary``; returns the rail's reference."""
        ...


@dataclass(frozen=True, slots=True)
class TestCard:
    """A simulator card with a scripted behaviour."""

    number: str
    behaviour: str  # "reject" or "timeout"
    reason_code: str = ""
    reason: str = ""
    timeouts: int = 0  # for "timeout": how many attempts time out before one settles


# Deterministic behaviours, by card number (all Luhn-valid, ICBC prefix). Any other card settles.
CLOSED_ACCOUNT_CARD = luhn_complete("622202000000000401")
BLOCKED_ACCOUNT_CARD = luhn_complete("622202000000000601")
FLAKY_CARD = luhn_complete("622202000000000901")  # times out twice, then settles
UNREACHABLE_CARD = luhn_complete("622202000000000902")  # always times out
TEST_CARDS: dict[str, TestCard] = {
    CLOSED_ACCOUNT_CARD: TestCard(CLOSED_ACCOUNT_CARD, "reject", "AC04", "closed account number"),
    BLOCKED_ACCOUNT_CARD: TestCard(
        BLOCKED_ACCOUNT_CARD, "reject", "AC06", "account blocked for credit transfers"
    ),
    FLAKY_CARD: TestCard(FLAKY_CARD, "timeout", timeouts=2),
    UNREACHABLE_CARD: TestCard(UNREACHABLE_CARD, "timeout", timeouts=1_000_000),
}


class PaymentRailSimulator:
    """A SIMULATED payment rail on MongoDB (collections ``rail_sim_*`` of its own database).

    ``latency_s`` is waited once per request (a bulk request costs one round trip, as on a
    real rail's batch API).
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, latency_s: float = 0.0) -> None:
        self._payments = db["rail_sim_payments"]
        self._attempts = db["rail_sim_attempts"]
        self._incoming = db["rail_sim_incoming"]
        self._latency = latency_s

    async def credit_transfers(self, transfers: Sequence[CreditTransfer]) -> list[RailResult]:
        """Settle or reject each transfer once; a repeated EndToEndId returns the first result."""
        if len(transfers) > 1000:
            raise ValueError("a rail request carries at most 1,000 transfers")
        if self._latency:
            await asyncio.sleep(self._latency)
        now = datetime.now(UTC)
        results: dict[str, RailResult] = {}
        final_docs: list[dict[str, Any]] = []
        for transfer in transfers:
            scripted = TEST_CARDS.get(transfer.card_number)
            if scripted is not None and scripted.behaviour == "timeout":
                attempts = await self._count_attempt(transfer.end_to_end_id)
                if attempts <= scripted.timeouts:
                    results[transfer.end_to_end_id] = RailResult(
                        transfer.end_to_end_id,
                        RailStatus.TIMEOUT,
                        reason_code="AB05",
                        reason="timeout at the creditor agent",
                    )
                    continue
            if scripted is not None and scripted.behaviour == "reject":
                status, code, reason = RailStatus.RJCT, scripted.reason_code, scripted.reason
            else:
                status, code, reason = RailStatus.ACSC, "", ""
            final_docs.append(
                {
                    "_id": transfer.end_to_end_id,
                    "status": str(status),
                    "reference": f"SIM{new_id().replace('-', '')}",
                    "reason_code": code,
                    "reason": reason,
                    "card_masked": mask_card(transfer.card_number),
                    "currency": transfer.amount.currency,
                    "amount_minor": Int64(transfer.amount.minor_units),
                    "settled_at": now,
                }
            )
        if final_docs:
            duplicates: list[str] = []
            try:
                await self._payments.insert_many(final_docs, ordered=False)
            except BulkWriteError as exc:
                for error in exc.details.get("writeErrors", []):
                    if error.get("code") != 11000:
                        raise
                    duplicates.append(final_docs[error["index"]]["_id"])
            stored = {d["_id"]: d for d in final_docs}
            if duplicates:  # sent before: the first result stands, nothing is paid again
                async for doc in self._payments.find({"_id": {"$in": duplicates}}):
                    stored[doc["_id"]] = doc
            for e2e, doc in stored.items():
                results[e2e] = RailResult(
                    e2e,
                    RailStatus(doc["status"]),
                    doc["reference"],
                    doc["reason_code"],
                    doc["reason"],
                )
        return [results[t.end_to_end_id] for t in transfers]

    async def _count_attempt(self, end_to_end_id: str) -> int:
        # a transfer that settled earlier answers with its result, not another timeout
        if await self._payments.find_one({"_id": end_to_end_id}, {"_id": 1}):
            return 1_000_000_000
        doc = await self._attempts.find_one_and_update(
            {"_id": end_to_end_id},
            {"$inc": {"attempts": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["attempts"]) if doc else 1

    async def confirm_incoming(self, reference: str, *, beneficiary: str, amount: Money) -> str:
        """Record an incoming transfer once; the same reference with other terms is refused."""
        doc = {
            "_id": reference,
            "beneficiary": beneficiary,
            "currency": amount.currency,
            "amount_minor": Int64(amount.minor_units),
            "received_at": datetime.now(UTC),
        }
        try:
            await self._incoming.insert_one(doc)
        except DuplicateKeyError:
            first = await self._incoming.find_one({"_id": reference})
            if first is None or (
                first["beneficiary"],
                first["currency"],
                int(first["amount_minor"]),
            ) != (beneficiary, amount.currency, amount.minor_units):
                raise IncomingMismatch(reference) from None
        return reference
