"""Every posting the loan service makes balances, and quotas spread exactly over the shards."""

from __future__ import annotations

from decimal import Decimal

from zerocontact.loan import bookkeeping
from zerocontact.loan.domain.colending import allocate_to_funders, split_by_share
from zerocontact.loan.domain.products import default_catalog
from zerocontact.platform.ledger import Leg, Side, validate_legs
from zerocontact.platform.money import Money

PRODUCT = default_catalog()["merchant-310"]


def net(legs: list[Leg]) -> int:
    return sum(leg.amount.minor_units * (1 if leg.side is Side.DEBIT else -1) for leg in legs)


def test_disbursement_postings_balance_and_use_the_loans_shard() -> None:
    principal = Money.of("100000.01", "CNY")
    parts = split_by_share(principal, PRODUCT.funders)
    reserve = bookkeeping.reserve_legs("loan-1", parts, principal)
    settle = bookkeeping.settle_legs("loan-1", "party-1", principal)
    reverse = bookkeeping.reverse_legs("loan-1", parts, principal)
    for legs in (reserve, settle, reverse):
        assert validate_legs(legs) == "CNY" and net(legs) == 0
    shard = bookkeeping.shard_of("loan-1")
    assert {leg.account for leg in reserve if leg.side is Side.DEBIT} == {
        f"funding:partner-bank-a:{shard:02d}",
        f"funding:partner-bank-b:{shard:02d}",
    }
    assert settle[-1].account == "settlement:party-1" and settle[-1].amount == principal


def test_repayment_posting_balances_with_the_subsidy() -> None:
    allocations = allocate_to_funders(
        PRODUCT.funders,
        principal=Money.of("7884.88", "CNY"),
        interest=Money.of("800.00", "CNY"),
        penalty=Money.of("43.82", "CNY"),
        subsidy=Money.of("200.00", "CNY"),
    )
    legs = bookkeeping.repayment_legs(
        loan_id="loan-1",
        party_id="party-1",
        amount=Money.of("8728.70", "CNY"),
        allocations=allocations,
        subsidy=Money.of("200.00", "CNY"),
        subsidy_account="subsidy:platform:mybank",
    )
    assert validate_legs(legs) == "CNY" and net(legs) == 0
    income = [leg for leg in legs if leg.account.startswith("interest-income:")]
    assert sum(leg.amount.minor_units for leg in income) == 1_000_00  # 800 paid + 200 subsidy


def test_quotas_spread_exactly_over_the_shards() -> None:
    for posting_id, legs in bookkeeping.quota_posting(PRODUCT):
        assert posting_id.startswith("quota:") and net(legs) == 0
        credits = [leg for leg in legs if leg.side is Side.CREDIT]
        assert len(credits) == bookkeeping.FUNDING_SHARDS
        assert sum(c.amount.minor_units for c in credits) == legs[0].amount.minor_units
    assert {bookkeeping.shard_of(f"loan-{n}") for n in range(200)} == set(
        range(bookkeeping.FUNDING_SHARDS)
    )
    assert PRODUCT.rate == Decimal("0.096")
