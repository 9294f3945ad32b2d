"""Individual income tax withheld on gig (labour remuneration, 劳务报酬) payouts.

SIMPLIFIED: the per-payment withholding table for labour remuneration of the PRC individual
income tax (State Taxation Administration announcement 2018 No. 61, 预扣率表二), applied to
each payout on its own:

* income ≤ 4,000: taxable = income - 800 (not below 0); otherwise taxable = income * 80 %
* taxable ≤ 20,000: 20 %; ≤ 50,000: 30 % - 2,000; above: 40 % - 7,000

Not modelled: aggregation of payouts to one worker within a month, the cumulative method
some platforms may use for their workers, VAT and surcharges, and annual reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from zerocontact.platform.money import Money

_BRACKETS: tuple[tuple[Decimal | None, Decimal, Decimal], ...] = (
    (Decimal("20000"), Decimal("0.20"), Decimal("0")),
    (Decimal("50000"), Decimal("0.30"), Decimal("2000")),
    (None, Decimal("0.40"), Decimal("7000")),
)


@dataclass(frozen=True, slots=True)
class Withholding:
    """Gross, the tax withheld and the net paid to the worker."""

    gross: Money
    tax: Money
    net: Money


def withhold_labour_remuneration(gross: Money) -> Withholding:
    """The tax to withhold on one labour-remuneration payout, rounded to the fen."""
    if gross.minor_units <= 0:
        raise ValueError("gross must be positive")
    income = gross.to_decimal()
    taxable = max(income - Decimal(800), Decimal(0)) if income <= 4000 else income * Decimal("0.8")
    for ceiling, rate, deduction in _BRACKETS:
        if ceiling is None or taxable <= ceiling:
            tax = taxable * rate - deduction
            break
    tax = max(tax, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    tax_money = Money.of(tax, gross.currency)
    return Withholding(gross, tax_money, gross - tax_money)
