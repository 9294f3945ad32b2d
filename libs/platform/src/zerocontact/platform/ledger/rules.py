"""The ledger's pure rules: sides, legs, postings, validation and the order of application.

No I/O here; :mod:`zerocontact.platform.ledger.store` applies these rules on MongoDB.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from zerocontact.platform.money import Money


class Side(StrEnum):
    """Side of a leg, and the normal balance side of an account."""

    DEBIT = "DEBIT"
    CREDIT = "CREDIT"


class PostingState(StrEnum):
    """Where a posting is: in flight, fully applied, or refused with nothing left applied."""

    PENDING = "PENDING"
    DONE = "DONE"
    REJECTED = "REJECTED"


class Outcome(StrEnum):
    COMMITTED = "COMMITTED"
    REJECTED = "REJECTED"


class EntryKind(StrEnum):
    APPLY = "APPLY"  # a leg's effect on the account
    VOID = "VOID"  # takes the leg's slot of a rejected posting so nobody can apply it later
    UNDO = "UNDO"  # reverses an APPLY of a rejected posting


class LedgerError(Exception):
    """Base of the ledger's domain errors."""


class InvalidPosting(LedgerError, ValueError):
    """The posting is malformed (no legs, non-positive amount, mixed currencies, ...)."""


class UnbalancedPosting(InvalidPosting):
    """Debits and credits of the posting differ."""


class UnknownAccount(InvalidPosting):
    """A leg names an account that was never opened."""


class AccountConflict(LedgerError):
    """An account with this id exists with different attributes."""


class IdempotencyConflict(LedgerError):
    """The posting id was used before for different legs."""


class LedgerContention(LedgerError):
    """An account's chain kept moving under us; the caller may retry the same posting id."""


class InsufficientFunds(LedgerError):
    """The posting would take an account that may not go negative below zero."""

    def __init__(self, posting_id: str, account: str) -> None:
        super().__init__(f"posting {posting_id}: insufficient funds in account {account}")
        self.posting_id = posting_id
        self.account = account


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a posting: ``amount`` (positive) debited or credited to ``account``."""

    account: str
    side: Side
    amount: Money

    @classmethod
    def debit(cls, account: str, amount: Money) -> Leg:
        """A debit leg."""
        return cls(account, Side.DEBIT, amount)

    @classmethod
    def credit(cls, account: str, amount: Money) -> Leg:
        """A credit leg."""
        return cls(account, Side.CREDIT, amount)


@dataclass(frozen=True, slots=True)
class Account:
    """A ledger account. ``allow_negative=False`` refuses postings that would overdraw it."""

    id: str
    currency: str
    normal_balance: Side
    allow_negative: bool


@dataclass(frozen=True, slots=True)
class Posting:
    """A posting as stored: its legs, state and, when rejected, why."""

    id: str
    legs: tuple[Leg, ...]
    currency: str
    state: PostingState
    memo: str
    created_at: datetime
    reason: str | None = None
    reason_account: str | None = None


@dataclass(frozen=True, slots=True)
class InvariantReport:
    """Result of ``Ledger.check_invariants``; ``ok`` is true when ``problems`` is empty."""

    problems: list[str]
    totals: dict[str, tuple[int, int]]  # currency -> (debits, credits) in minor units
    accounts_checked: int
    postings_checked: int
    in_flight: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no invariant is broken (postings in flight are not a violation)."""
        return not self.problems


StepHook = Callable[[str, str], Awaitable[None]]
"""Awaited after each durable step with ``(posting_id, step)``; tests raise in it to crash."""

# --- pure rules -----------------------------------------------------------------------------


def validate_legs(legs: Sequence[Leg]) -> str:
    """Check a posting's legs and return their currency.

    Raises ``InvalidPosting`` (no legs, empty account id, non-positive amount, mixed
    currencies, no debit or no credit) or ``UnbalancedPosting`` (debits != credits).
    """
    if not legs:
        raise InvalidPosting("a posting needs legs")
    currencies = {leg.amount.currency for leg in legs}
    if len(currencies) != 1:
        raise InvalidPosting(f"legs mix currencies: {sorted(currencies)}")
    debits = credits = 0
    for leg in legs:
        if not leg.account:
            raise InvalidPosting("a leg has an empty account id")
        if leg.amount.minor_units <= 0:
            raise InvalidPosting(f"leg on {leg.account} must be positive, got {leg.amount}")
        if leg.side is Side.DEBIT:
            debits += leg.amount.minor_units
        elif leg.side is Side.CREDIT:
            credits += leg.amount.minor_units
        else:
            raise InvalidPosting(f"unknown side {leg.side!r}")
    if debits == 0 or credits == 0:
        raise InvalidPosting("a posting needs at least one debit and one credit")
    if debits != credits:
        raise UnbalancedPosting(f"debits {debits} != credits {credits} (minor units)")
    return currencies.pop()


def account_deltas(legs: Iterable[Leg], accounts: Mapping[str, Account]) -> dict[str, int]:
    """Net change of each account's balance (in its normal direction), zero changes omitted.

    A debit raises a debit-normal account (an asset) and lowers a credit-normal one (a
    liability such as a customer's deposit); a credit does the opposite.
    """
    net: dict[str, int] = defaultdict(int)
    for leg in legs:
        account = accounts[leg.account]
        sign = 1 if leg.side is account.normal_balance else -1
        net[leg.account] += sign * leg.amount.minor_units
    return {account: delta for account, delta in net.items() if delta != 0}


@dataclass(frozen=True, slots=True)
class Step:
    account: str
    delta: int
    guarded: bool  # may fail: lowers an account that must not go negative


def application_plan(deltas: Mapping[str, int], accounts: Mapping[str, Account]) -> list[Step]:
    """Order in which a posting touches its accounts: the legs that can fail first.

    Only a decrease of an account with ``allow_negative=False`` can fail; once all of those
    are applied the posting commits, and the rest (which cannot fail) follow.
    """
    steps = [
        Step(name, delta, delta < 0 and not accounts[name].allow_negative)
        for name, delta in sorted(deltas.items())
    ]
    return [s for s in steps if s.guarded] + [s for s in steps if not s.guarded]


def canonical_legs(legs: Iterable[Leg]) -> list[tuple[str, str, str, int]]:
    return sorted(
        (leg.account, str(leg.side), leg.amount.currency, leg.amount.minor_units) for leg in legs
    )
