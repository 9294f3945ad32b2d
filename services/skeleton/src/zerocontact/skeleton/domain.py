"""Accounts that take deposits: pure rules, no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from zerocontact.platform.errors import DomainError, Invalid
from zerocontact.platform.money import Money

MAX_DEPOSIT_MINOR = 100_000_000_00  # 100 million in a two-decimal currency


class CurrencyNotAccepted(Invalid):
    """The deposit's currency is not the account's."""

    code = "currency_not_accepted"


class InvalidDeposit(Invalid):
    """A deposit must credit a positive amount."""

    code = "invalid_deposit"


class DepositTooLarge(Invalid):
    """Over the single-deposit limit."""

    code = "deposit_too_large"


class IdempotencyConflict(DomainError):
    """The idempotency key was used before for a different request."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class AccountOpened:
    account_id: str
    holder_name: str
    holder_phone_masked: str
    opened_at: datetime


@dataclass(frozen=True)
class DepositRecorded:
    account_id: str
    deposit_id: str
    amount: Money
    balance_after: Money
    recorded_at: datetime


@dataclass
class Account:
    """An account's state; ``deposits`` maps each deposit id to its request fingerprint."""

    id: str
    holder_name: str
    holder_phone_masked: str
    currency: str
    balance: Money
    opened_at: datetime
    version: int = 1
    deposits: dict[str, str] = field(default_factory=dict)


def fingerprint(*parts: object) -> str:
    """A stable digest of a request, to tell a retry from a different request under one key."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def open_account(
    *, account_id: str, holder_name: str, holder_phone_masked: str, currency: str, now: datetime
) -> tuple[Account, AccountOpened]:
    """A new, empty account and the event that says so."""
    account = Account(
        id=account_id,
        holder_name=holder_name,
        holder_phone_masked=holder_phone_masked,
        currency=currency,
        balance=Money(currency, 0),
        opened_at=now,
    )
    return account, AccountOpened(account_id, holder_name, holder_phone_masked, now)


def record_deposit(
    account: Account, *, deposit_id: str, amount: Money, now: datetime
) -> DepositRecorded | None:
    """Credit ``amount``; None when this deposit id was recorded before with the same amount."""
    request = fingerprint(amount.currency, amount.minor_units)
    if deposit_id in account.deposits:
        if account.deposits[deposit_id] != request:
            raise IdempotencyConflict(
                f"deposit {deposit_id} was recorded before with a different amount"
            )
        return None
    if amount.minor_units <= 0:
        raise InvalidDeposit("a deposit must be a positive amount")
    if amount.currency != account.currency:
        raise CurrencyNotAccepted(f"account {account.id} takes {account.currency} only")
    if amount.minor_units > MAX_DEPOSIT_MINOR:
        raise DepositTooLarge(f"a single deposit is at most {MAX_DEPOSIT_MINOR} minor units")
    account.balance = account.balance + amount
    account.deposits[deposit_id] = request
    account.version += 1
    return DepositRecorded(account.id, deposit_id, amount, account.balance, now)
