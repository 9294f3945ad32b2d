"""The ``PaymentRail`` port and its default adapter, :class:`PaymentRailSimulator`.

A real rail (CIPS, an interbank clearing network, a partner bank's API) moves the funders'
money into the borrower's settlement account; the loan service only needs it to be
idempotent by reference. The simulator is a documented stand-in: it waits a configurable
latency, fails transiently with a configurable probability (nothing recorded, as when a
request times out before the network accepted it) and refuses payouts to accounts listed as
closed (recorded, final). Its payments live in MongoDB (``rail_payments``, ``_id`` = the
reference), so a retry after a restart returns the first outcome instead of paying again.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from bson import Int64
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from zerocontact.loan.domain.loans import fingerprint
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.consumer import TransientError
from zerocontact.platform.money import Money

RAIL_PAYMENTS = "rail_payments"


class RailStatus(StrEnum):
    """The final outcome of a payout."""

    SETTLED = "SETTLED"
    REFUSED = "REFUSED"


class RailUnavailable(TransientError):
    """The rail did not take the request; retry with the same reference."""


class RailReferenceConflict(Exception):
    """A reference was reused for a different payout (a bug, never retried)."""


@dataclass(frozen=True, slots=True)
class RailReceipt:
    """The rail's answer for one reference."""

    reference: str
    status: RailStatus
    rail_reference: str
    reason: str = ""


class PaymentRail(Protocol):
    """Moves money between banks, exactly once per ``reference``."""

    async def transfer(
        self,
        *,
        reference: str,
        sources: Sequence[tuple[str, Money]],
        destination: str,
        amount: Money,
    ) -> RailReceipt:
        """Pay ``amount`` from ``sources`` into ``destination``; the same reference returns
        the first receipt. Raises :class:`RailUnavailable` when nothing happened."""
        ...


class PaymentRailSimulator:
    """A simulated rail (see the module docstring); never a real payment."""

    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        latency_s: float = 0.015,
        failure_rate: float = 0.0,
        closed_accounts: Sequence[str] = (),
        seed: int | None = None,
    ) -> None:
        self._payments = collection
        self._latency = latency_s
        self._failure_rate = failure_rate
        self._closed = frozenset(closed_accounts)
        self._random = random.Random(seed)

    async def transfer(
        self,
        *,
        reference: str,
        sources: Sequence[tuple[str, Money]],
        destination: str,
        amount: Money,
    ) -> RailReceipt:
        """See :class:`PaymentRail`."""
        request = fingerprint(destination, amount, *(f"{a}={m.minor_units}" for a, m in sources))
        stored = await self._payments.find_one({"_id": reference})
        if stored is not None:
            return _receipt(stored, request)
        if self._latency:
            await asyncio.sleep(self._latency)
        if self._failure_rate and self._random.random() < self._failure_rate:
            raise RailUnavailable(f"simulated rail timeout for {reference}")
        refused = destination in self._closed
        doc = {
            "_id": reference,
            "request": request,
            "status": str(RailStatus.REFUSED if refused else RailStatus.SETTLED),
            "rail_reference": f"SIM-{new_id()}",
            "reason": "destination account is closed" if refused else "",
            "destination": destination,
            "amount_minor": Int64(amount.minor_units),
            "currency": amount.currency,
            "sources": {a.replace(".", "_"): Int64(m.minor_units) for a, m in sources},
            "at": datetime.now(UTC),
        }
        try:
            await self._payments.insert_one(doc)
        except DuplicateKeyError:  # a concurrent call with the same reference won
            stored = await self._payments.find_one({"_id": reference})
            assert stored is not None
            return _receipt(stored, request)
        return _receipt(doc, request)

    async def payments_for(self, reference_prefix: str) -> int:
        """How many payouts exist under a reference prefix (for audits and tests)."""
        return await self._payments.count_documents(
            {"_id": {"$regex": f"^{re.escape(reference_prefix)}"}}
        )


def _receipt(doc: dict[str, Any], request: str) -> RailReceipt:
    if doc["request"] != request:
        raise RailReferenceConflict(f"rail reference {doc['_id']} was used for another payout")
    return RailReceipt(doc["_id"], RailStatus(doc["status"]), doc["rail_reference"], doc["reason"])
