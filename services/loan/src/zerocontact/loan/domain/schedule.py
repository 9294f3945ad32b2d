"""Repayment schedules, interest accrual and penalty interest, in ``Decimal`` to the fen.

Conventions (docs/loan.md has the worked figures):

* The schedule's periodic rate is the annual rate / 12, as Chinese banks quote 月利率 for
  等额本息 and 等额本金; every installment is one calendar month.
* Every amount is rounded ROUND_HALF_UP to the currency's minor unit as soon as it is an
  amount; the last installment takes whatever principal is left, so the principal parts sum
  exactly to the principal and totals are exact sums of the rounded parts.
* Broken periods (early payoff, penalty) accrue daily on ACT/365: ``amount * rate * days / 365``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from zerocontact.platform.money import Money, currency_exponent

DAYS_IN_YEAR = Decimal(365)
MONTHS_IN_YEAR = Decimal(12)


class RepaymentMethod(StrEnum):
    """How principal and interest are spread over the installments."""

    EQUAL_INSTALLMENTS = "EQUAL_INSTALLMENTS"  # 等额本息: one constant payment
    EQUAL_PRINCIPAL = "EQUAL_PRINCIPAL"  # 等额本金: constant principal, falling interest
    INTEREST_FIRST = "INTEREST_FIRST"  # 先息后本: interest monthly, principal at maturity


@dataclass(frozen=True, slots=True)
class Installment:
    """One scheduled payment: its number (from 1), due date, principal and interest parts."""

    number: int
    due_date: date
    principal: Money
    interest: Money

    @property
    def payment(self) -> Money:
        """Principal plus interest due on ``due_date``."""
        return self.principal + self.interest


def to_minor(amount: Decimal, currency: str) -> int:
    """``amount`` (major units) rounded half up to the currency's minor unit, as an integer."""
    exponent = currency_exponent(currency)
    return int(amount.scaleb(exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def round_money(amount: Decimal, currency: str) -> Money:
    """``amount`` in major units rounded half up to the minor unit."""
    return Money(currency, to_minor(amount, currency))


def add_months(start: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def monthly_rate(annual_rate: Decimal) -> Decimal:
    """The periodic rate of a monthly schedule."""
    return annual_rate / MONTHS_IN_YEAR


def equal_installment_payment(principal: Money, annual_rate: Decimal, months: int) -> Money:
    """The constant payment of 等额本息: ``P·r(1+r)^n / ((1+r)^n - 1)``, rounded half up."""
    r = monthly_rate(annual_rate)
    p = principal.to_decimal()
    if r == 0:
        return round_money(p / months, principal.currency)
    growth = (1 + r) ** months
    return round_money(p * r * growth / (growth - 1), principal.currency)


def build_schedule(
    *,
    principal: Money,
    annual_rate: Decimal,
    months: int,
    method: RepaymentMethod,
    start: date,
) -> list[Installment]:
    """The installments of a loan disbursed on ``start``; principal parts sum to ``principal``."""
    if months < 1:
        raise ValueError("a schedule needs at least one installment")
    if principal.minor_units <= 0:
        raise ValueError("the principal must be positive")
    if annual_rate < 0:
        raise ValueError("the rate must not be negative")
    currency = principal.currency
    r = monthly_rate(annual_rate)
    balance = principal
    payment = equal_installment_payment(principal, annual_rate, months)
    equal_part = round_money(principal.to_decimal() / months, currency)
    installments: list[Installment] = []
    for number in range(1, months + 1):
        interest = round_money(balance.to_decimal() * r, currency)
        last = number == months
        if last:
            part = balance  # the remainder of every rounding lands here
        elif method is RepaymentMethod.EQUAL_INSTALLMENTS:
            part = payment - interest
        elif method is RepaymentMethod.EQUAL_PRINCIPAL:
            part = equal_part
        else:
            part = Money.zero(currency)
        # Rounding may leave less than a full part near the end of a short, cheap loan.
        part = min(part, balance) if part.minor_units >= 0 else Money.zero(currency)
        installments.append(Installment(number, add_months(start, number), part, interest))
        balance = balance - part
    return installments


def accrued_interest(principal: Money, annual_rate: Decimal, days: int) -> Money:
    """Simple interest on ``principal`` for ``days`` days, ACT/365, rounded half up."""
    if days <= 0:
        return Money.zero(principal.currency)
    amount = principal.to_decimal() * annual_rate * days / DAYS_IN_YEAR
    return round_money(amount, principal.currency)


def penalty_interest(overdue: Money, penalty_annual_rate: Decimal, days_late: int) -> Money:
    """Penalty interest (罚息) on an overdue amount: the same ACT/365 accrual at the penalty rate."""
    return accrued_interest(overdue, penalty_annual_rate, days_late)


class Bucket(StrEnum):
    """Delinquency buckets by days past due."""

    CURRENT = "CURRENT"
    DPD_1_30 = "DPD_1_30"
    DPD_31_60 = "DPD_31_60"
    DPD_61_90 = "DPD_61_90"
    DPD_90_PLUS = "DPD_90_PLUS"

    @property
    def rank(self) -> int:
        """Position in the order CURRENT < 1-30 < 31-60 < 61-90 < 90+."""
        return list(Bucket).index(self)


def bucket_for(days_past_due: int) -> Bucket:
    """The bucket of a loan ``days_past_due`` days behind (0 or less is current)."""
    if days_past_due <= 0:
        return Bucket.CURRENT
    if days_past_due <= 30:
        return Bucket.DPD_1_30
    if days_past_due <= 60:
        return Bucket.DPD_31_60
    if days_past_due <= 90:
        return Bucket.DPD_61_90
    return Bucket.DPD_90_PLUS
