"""Schedule math against independently computed figures, and its properties for any input."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocontact.loan.domain.schedule import (
    Bucket,
    RepaymentMethod,
    accrued_interest,
    add_months,
    bucket_for,
    build_schedule,
    equal_installment_payment,
    penalty_interest,
)
from zerocontact.platform.money import Money

START = date(2026, 1, 15)


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def test_equal_installments_of_100k_at_12_percent_over_12_months_are_8884_88() -> None:
    # Independently: 100000 * 0.01 * 1.01^12 / (1.01^12 - 1) = 8884.8788... -> 8884.88
    assert equal_installment_payment(cny("100000"), Decimal("0.12"), 12) == cny("8884.88")
    schedule = build_schedule(
        principal=cny("100000"),
        annual_rate=Decimal("0.12"),
        months=12,
        method=RepaymentMethod.EQUAL_INSTALLMENTS,
        start=START,
    )
    assert [i.payment for i in schedule[:-1]] == [cny("8884.88")] * 11
    assert schedule[0].interest == cny("1000.00")
    assert schedule[0].principal == cny("7884.88")
    assert schedule[1].interest == cny("921.15")  # 92115.12 * 1 % = 921.1512
    # The last installment takes the rounding remainder: 8796.88 principal + 87.97 interest.
    assert schedule[-1].principal == cny("8796.88")
    assert schedule[-1].payment == cny("8884.85")
    assert sum(i.principal.minor_units for i in schedule) == 100_000_00


def test_equal_installments_of_10k_at_6_percent_are_860_66() -> None:
    # The textbook figure: 10000 * 0.005 * 1.005^12 / (1.005^12 - 1) = 860.664
    assert equal_installment_payment(cny("10000"), Decimal("0.06"), 12) == cny("860.66")


def test_equal_principal_of_120k_at_12_percent() -> None:
    schedule = build_schedule(
        principal=cny("120000"),
        annual_rate=Decimal("0.12"),
        months=12,
        method=RepaymentMethod.EQUAL_PRINCIPAL,
        start=START,
    )
    assert all(i.principal == cny("10000") for i in schedule)
    assert [i.interest for i in schedule[:3]] == [cny("1200"), cny("1100"), cny("1000")]
    # sum of (1200 - 100k) for k = 0..11 = 14400 - 6600
    assert sum(i.interest.minor_units for i in schedule) == 7_800_00


def test_equal_principal_rounds_each_part_and_the_last_absorbs_the_rest() -> None:
    schedule = build_schedule(
        principal=cny("100000"),
        annual_rate=Decimal("0.12"),
        months=12,
        method=RepaymentMethod.EQUAL_PRINCIPAL,
        start=START,
    )
    assert schedule[0].principal == cny("8333.33")
    assert schedule[-1].principal == cny("8333.37")  # 100000 - 11 * 8333.33


def test_interest_first_pays_principal_at_maturity() -> None:
    schedule = build_schedule(
        principal=cny("50000"),
        annual_rate=Decimal("0.108"),
        months=6,
        method=RepaymentMethod.INTEREST_FIRST,
        start=START,
    )
    assert [i.payment for i in schedule[:-1]] == [cny("450.00")] * 5  # 50000 * 0.9 %
    assert schedule[-1].payment == cny("50450.00")


def test_due_dates_are_monthly_and_clamped_to_the_month_end() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    schedule = build_schedule(
        principal=cny("1000"),
        annual_rate=Decimal("0.12"),
        months=3,
        method=RepaymentMethod.EQUAL_INSTALLMENTS,
        start=date(2026, 1, 31),
    )
    assert [i.due_date for i in schedule] == [
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]


def test_zero_rate_splits_the_principal() -> None:
    schedule = build_schedule(
        principal=cny("100"),
        annual_rate=Decimal(0),
        months=3,
        method=RepaymentMethod.EQUAL_INSTALLMENTS,
        start=START,
    )
    assert [i.payment for i in schedule] == [cny("33.33"), cny("33.33"), cny("33.34")]


def test_daily_accrual_is_act_365_half_up() -> None:
    # 100000 * 0.12 * 30 / 365 = 986.3013...
    assert accrued_interest(cny("100000"), Decimal("0.12"), 30) == cny("986.30")
    # 8884.88 * 0.18 * 10 / 365 = 43.8158...
    assert penalty_interest(cny("8884.88"), Decimal("0.18"), 10) == cny("43.82")
    # 1000 * 0.0365 * 1 / 365 = 0.10 exactly; 0.005 rounds up: 50 * 0.0365 / 365 = 0.005
    assert accrued_interest(cny("1000"), Decimal("0.0365"), 1) == cny("0.10")
    assert accrued_interest(cny("50"), Decimal("0.0365"), 1) == cny("0.01")
    assert accrued_interest(cny("1000"), Decimal("0.12"), 0) == cny("0")


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (0, Bucket.CURRENT),
        (1, Bucket.DPD_1_30),
        (30, Bucket.DPD_1_30),
        (31, Bucket.DPD_31_60),
        (60, Bucket.DPD_31_60),
        (61, Bucket.DPD_61_90),
        (90, Bucket.DPD_61_90),
        (91, Bucket.DPD_90_PLUS),
    ],
)
def test_delinquency_buckets(days: int, bucket: Bucket) -> None:
    assert bucket_for(days) is bucket


def test_bad_schedule_input_is_refused() -> None:
    with pytest.raises(ValueError):
        build_schedule(
            principal=cny("0"),
            annual_rate=Decimal("0.1"),
            months=12,
            method=RepaymentMethod.EQUAL_PRINCIPAL,
            start=START,
        )
    with pytest.raises(ValueError):
        build_schedule(
            principal=cny("100"),
            annual_rate=Decimal("0.1"),
            months=0,
            method=RepaymentMethod.EQUAL_PRINCIPAL,
            start=START,
        )


@settings(max_examples=300, deadline=None)
@given(
    minor=st.integers(min_value=1, max_value=10_000_000_00),
    rate_bps=st.integers(min_value=0, max_value=3600),
    months=st.integers(min_value=1, max_value=60),
    method=st.sampled_from(list(RepaymentMethod)),
)
def test_principal_parts_sum_exactly_to_the_principal(
    minor: int, rate_bps: int, months: int, method: RepaymentMethod
) -> None:
    principal = Money("CNY", minor)
    schedule = build_schedule(
        principal=principal,
        annual_rate=Decimal(rate_bps) / 10_000,
        months=months,
        method=method,
        start=START,
    )
    assert len(schedule) == months
    assert sum(i.principal.minor_units for i in schedule) == minor
    assert all(i.principal.minor_units >= 0 and i.interest.minor_units >= 0 for i in schedule)
    assert [i.number for i in schedule] == list(range(1, months + 1))
    assert all(a.due_date < b.due_date for a, b in itertools.pairwise(schedule))
