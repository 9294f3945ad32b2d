"""The ledger's pure rules: which postings are valid, what they do to each account, in what order."""

from __future__ import annotations

import pytest

from zerocontact.platform.ledger import (
    Account,
    InvalidPosting,
    Leg,
    Side,
    UnbalancedPosting,
    account_deltas,
    application_plan,
    validate_legs,
)
from zerocontact.platform.money import Money


def cny(fen: int) -> Money:
    return Money("CNY", fen)


ACCOUNTS = {
    "cash": Account("cash", "CNY", Side.DEBIT, allow_negative=False),  # an asset
    "deposit:alice": Account("deposit:alice", "CNY", Side.CREDIT, allow_negative=False),
    "deposit:bob": Account("deposit:bob", "CNY", Side.CREDIT, allow_negative=False),
    "clearing": Account("clearing", "CNY", Side.DEBIT, allow_negative=True),
}


def test_a_balanced_posting_is_valid_and_reports_its_currency() -> None:
    legs = [Leg.debit("deposit:alice", cny(700)), Leg.debit("deposit:bob", cny(300)),
            Leg.credit("cash", cny(1000))]  # fmt: skip
    assert validate_legs(legs) == "CNY"


def test_unbalanced_posting_is_refused() -> None:
    with pytest.raises(UnbalancedPosting):
        validate_legs([Leg.debit("cash", cny(100)), Leg.credit("deposit:alice", cny(99))])


@pytest.mark.parametrize(
    "legs",
    [
        [],
        [Leg.debit("cash", cny(0)), Leg.credit("deposit:alice", cny(0))],
        [Leg.debit("cash", cny(-5)), Leg.credit("deposit:alice", cny(-5))],
        [Leg.debit("cash", cny(5)), Leg.debit("deposit:alice", cny(5))],
        [Leg.debit("cash", cny(5)), Leg.credit("deposit:alice", Money("USD", 5))],
        [Leg.debit("", cny(5)), Leg.credit("deposit:alice", cny(5))],
    ],
    ids=["no-legs", "zero", "negative", "no-credit", "mixed-currency", "empty-account"],
)
def test_malformed_postings_are_refused(legs: list[Leg]) -> None:
    with pytest.raises(InvalidPosting):
        validate_legs(legs)


def test_deltas_follow_each_accounts_normal_side() -> None:
    # a withdrawal: the bank owes Alice less (liability down) and holds less cash (asset down)
    legs = [Leg.debit("deposit:alice", cny(500)), Leg.credit("cash", cny(500))]
    assert account_deltas(legs, ACCOUNTS) == {"deposit:alice": -500, "cash": -500}
    # a deposit: both go up
    legs = [Leg.debit("cash", cny(500)), Leg.credit("deposit:alice", cny(500))]
    assert account_deltas(legs, ACCOUNTS) == {"deposit:alice": 500, "cash": 500}


def test_legs_on_one_account_are_netted_and_zero_nets_dropped() -> None:
    legs = [
        Leg.debit("clearing", cny(300)),
        Leg.credit("clearing", cny(300)),
        Leg.debit("deposit:alice", cny(100)),
        Leg.credit("deposit:bob", cny(100)),
    ]
    assert account_deltas(legs, ACCOUNTS) == {"deposit:alice": -100, "deposit:bob": 100}


def test_plan_applies_the_legs_that_can_fail_first() -> None:
    deltas = {"deposit:bob": 100, "clearing": -100, "deposit:alice": -40, "cash": -60}
    plan = application_plan(deltas, ACCOUNTS)
    assert [(s.account, s.guarded) for s in plan] == [
        ("cash", True),
        ("deposit:alice", True),
        ("clearing", False),  # may go negative: cannot fail
        ("deposit:bob", False),  # an increase: cannot fail
    ]
