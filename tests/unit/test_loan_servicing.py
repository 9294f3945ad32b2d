"""Repayment allocation, penalty accrual, early payoff, co-lending splits and subsidies."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocontact.loan.domain.colending import allocate_to_funders, split_by_share
from zerocontact.loan.domain.products import Funder
from zerocontact.loan.domain.schedule import Bucket, RepaymentMethod, build_schedule
from zerocontact.loan.domain.servicing import (
    InstallmentState,
    RepaymentExceedsPayoff,
    accrue_penalties,
    allocate_repayment,
    days_past_due,
    delinquency,
    overdue_amount,
    payoff_plan,
    subsidy_for,
)
from zerocontact.platform.money import Money

DISBURSED = date(2026, 1, 15)
RATE = Decimal("0.12")
PENALTY = Decimal("0.18")
FUNDERS = (
    Funder("bank-a", 7_000, Money.of("1000000", "CNY")),
    Funder("bank-b", 3_000, Money.of("1000000", "CNY")),
)


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def loan_100k() -> tuple[InstallmentState, ...]:
    schedule = build_schedule(
        principal=cny("100000"),
        annual_rate=RATE,
        months=12,
        method=RepaymentMethod.EQUAL_INSTALLMENTS,
        start=DISBURSED,
    )
    return tuple(InstallmentState.scheduled(i) for i in schedule)


def repay(installments: tuple[InstallmentState, ...], amount: str, on: date):  # type: ignore[no-untyped-def]
    return allocate_repayment(
        installments,
        cny(amount),
        as_of=on,
        disbursed_on=DISBURSED,
        annual_rate=RATE,
        penalty_rate=PENALTY,
    )


def test_a_scheduled_payment_on_the_due_date_pays_interest_then_principal() -> None:
    a = repay(loan_100k(), "8884.88", date(2026, 2, 15))
    assert (a.interest, a.principal, a.penalty) == (cny("1000.00"), cny("7884.88"), cny("0"))
    assert a.first_installment == 1 and a.days_late == 0
    assert a.installments[0].settled and not a.settled


def test_penalty_accrues_daily_on_the_overdue_installment() -> None:
    late = date(2026, 2, 25)  # 10 days after the first due date
    accrued = accrue_penalties(loan_100k(), as_of=late, penalty_rate=PENALTY)
    # 8884.88 * 0.18 * 10 / 365 = 43.8158 -> 43.82
    assert accrued[0].penalty_accrued == cny("43.82")
    assert accrued[1].penalty_accrued == cny("0")
    assert days_past_due(accrued, as_of=late) == (1, 10)
    assert delinquency(accrued, as_of=late) is Bucket.DPD_1_30
    assert overdue_amount(accrued, as_of=late) == cny("8928.70")
    # Accruing again to the same day adds nothing.
    assert accrue_penalties(accrued, as_of=late, penalty_rate=PENALTY) == accrued


def test_a_late_partial_payment_goes_to_penalty_then_interest_then_principal() -> None:
    a = repay(loan_100k(), "1043.82", date(2026, 2, 25))
    assert (a.penalty, a.interest, a.principal) == (cny("43.82"), cny("1000.00"), cny("0"))
    assert a.days_late == 10
    b = repay(loan_100k(), "500", date(2026, 2, 25))
    assert (b.penalty, b.interest, b.principal) == (cny("43.82"), cny("456.18"), cny("0"))


def test_penalty_after_a_partial_payment_accrues_on_the_lower_base() -> None:
    first = repay(loan_100k(), "1043.82", date(2026, 2, 25))  # principal 7884.88 left overdue
    later = accrue_penalties(first.installments, as_of=date(2026, 3, 7), penalty_rate=PENALTY)
    # 7884.88 * 0.18 * 10 / 365 = 38.8843 -> 38.88 more
    assert later[0].penalty_accrued == cny("82.70")


def test_early_payoff_charges_interest_to_the_day_and_waives_the_rest() -> None:
    on = DISBURSED + timedelta(days=10)
    total, _ = payoff_plan(loan_100k(), as_of=on, disbursed_on=DISBURSED, annual_rate=RATE)
    # 100000 * 0.12 * 10 / 365 = 328.767 -> 328.77
    assert total == cny("100328.77")
    a = repay(loan_100k(), "100328.77", on)
    assert a.settled and a.early_payoff
    assert (a.principal, a.interest) == (cny("100000"), cny("328.77"))


def test_early_payoff_after_two_installments() -> None:
    state = loan_100k()
    state = repay(state, "8884.88", date(2026, 2, 15)).installments
    state = repay(state, "8884.88", date(2026, 3, 15)).installments
    on = date(2026, 3, 30)  # 15 days into the third period
    outstanding = 100_000_00 - 7_884_88 - 7_963_73
    total, _ = payoff_plan(state, as_of=on, disbursed_on=DISBURSED, annual_rate=RATE)
    interest = Money("CNY", outstanding).to_decimal() * RATE * 15 / 365
    assert total.minor_units == outstanding + int(
        (interest * 100).quantize(Decimal(1), "ROUND_HALF_UP")
    )
    a = allocate_repayment(
        state, total, as_of=on, disbursed_on=DISBURSED, annual_rate=RATE, penalty_rate=PENALTY
    )
    assert a.settled and a.early_payoff


def test_paying_more_than_the_payoff_is_refused() -> None:
    with pytest.raises(RepaymentExceedsPayoff):
        repay(loan_100k(), "100328.78", DISBURSED + timedelta(days=10))


def test_paying_every_installment_on_time_settles_without_early_payoff() -> None:
    state = loan_100k()
    for inst in list(state):
        a = allocate_repayment(
            state,
            inst.principal + inst.interest,
            as_of=inst.due_date,
            disbursed_on=DISBURSED,
            annual_rate=RATE,
            penalty_rate=PENALTY,
        )
        state = a.installments
    assert a.settled and not a.early_payoff
    assert sum(i.paid_interest.minor_units for i in state) == sum(
        i.interest.minor_units for i in state
    )


def test_co_lending_split_of_principal_is_exact() -> None:
    parts = split_by_share(cny("100000.01"), FUNDERS)
    assert [p.amount for p in parts] == [cny("70000.01"), cny("30000.00")]
    assert split_by_share(cny("0.05"), FUNDERS)[0].amount == cny("0.04")


def test_repayment_waterfall_splits_each_component_by_share() -> None:
    allocations = allocate_to_funders(
        FUNDERS,
        principal=cny("7884.88"),
        interest=cny("800.00"),
        penalty=cny("43.82"),
        subsidy=cny("200.00"),
    )
    a, b = allocations
    assert (a.principal, b.principal) == (cny("5519.42"), cny("2365.46"))
    assert (a.interest, b.interest) == (cny("560.00"), cny("240.00"))
    assert (a.penalty, b.penalty) == (cny("30.67"), cny("13.15"))  # 30.674 / 13.146
    assert (a.subsidy, b.subsidy) == (cny("140.00"), cny("60.00"))
    assert (a.total + b.total) == cny("8728.70")


@settings(max_examples=300, deadline=None)
@given(
    minor=st.integers(min_value=0, max_value=10**12),
    shares=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=25),
)
def test_splits_always_sum_to_the_total(minor: int, shares: list[int]) -> None:
    funders = [Funder(f"f{i}", s, cny("1")) for i, s in enumerate(shares)]
    parts = split_by_share(Money("CNY", minor), funders)
    assert sum(p.amount.minor_units for p in parts) == minor
    assert all(p.amount.minor_units >= 0 for p in parts)


def test_rate_discount_subsidy_tops_interest_up_to_the_full_rate() -> None:
    # 20 % off 12 %: the borrower pays 9.6 %; the programme pays a quarter on top.
    assert subsidy_for(cny("921.15"), full_rate=RATE, borrower_rate=Decimal("0.096")) == cny(
        "230.29"
    )
    assert subsidy_for(cny("100"), full_rate=RATE, borrower_rate=RATE) == cny("0")
