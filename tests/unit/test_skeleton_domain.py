"""The walking skeleton's account rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zerocontact.platform.money import Money
from zerocontact.skeleton import domain

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def _account() -> domain.Account:
    account, opened = domain.open_account(
        account_id="a1",
        holder_name="Li Wei",
        holder_phone_masked="+86*******5678",
        currency="CNY",
        now=NOW,
    )
    assert opened.account_id == "a1"
    return account


def test_deposit_credits_and_bumps_the_version() -> None:
    account = _account()
    recorded = domain.record_deposit(
        account, deposit_id="d1", amount=Money.of("12.34", "CNY"), now=NOW
    )
    assert recorded is not None
    assert recorded.balance_after == Money("CNY", 1234)
    assert account.version == 2


def test_same_deposit_twice_is_a_no_op() -> None:
    account = _account()
    domain.record_deposit(account, deposit_id="d1", amount=Money.of("1", "CNY"), now=NOW)
    assert (
        domain.record_deposit(account, deposit_id="d1", amount=Money.of("1", "CNY"), now=NOW)
        is None
    )
    assert account.balance == Money("CNY", 100)
    assert account.version == 2


def test_same_deposit_id_other_amount_conflicts() -> None:
    account = _account()
    domain.record_deposit(account, deposit_id="d1", amount=Money.of("1", "CNY"), now=NOW)
    with pytest.raises(domain.IdempotencyConflict):
        domain.record_deposit(account, deposit_id="d1", amount=Money.of("2", "CNY"), now=NOW)


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (Money("CNY", 0), domain.InvalidDeposit),
        (Money("CNY", -1), domain.InvalidDeposit),
        (Money("USD", 100), domain.CurrencyNotAccepted),
        (Money("CNY", domain.MAX_DEPOSIT_MINOR + 1), domain.DepositTooLarge),
    ],
)
def test_refused_deposits_change_nothing(amount: Money, error: type[Exception]) -> None:
    account = _account()
    with pytest.raises(error):
        domain.record_deposit(account, deposit_id="d1", amount=amount, now=NOW)
    assert account.balance == Money("CNY", 0)
    assert account.version == 1
    assert account.deposits == {}
