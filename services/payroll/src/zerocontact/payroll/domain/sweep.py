"""Idle-balance sweep into a money-market product, daily yield, redemption for payroll."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from zerocontact.platform.money import Money


def sweep_amount(wallet: Money, *, threshold: Money, committed: Money) -> Money:
    """What to sweep: the wallet above ``threshold`` plus what approved payrolls still need."""
    excess = wallet.minor_units - threshold.minor_units - committed.minor_units
    return Money(wallet.currency, max(0, excess))


def daily_yield(holding: Money, *, annual_rate: Decimal, days_in_year: int = 365) -> Money:
    """One day's yield on ``holding`` (simple daily accrual), rounded DOWN to the fen.

    Rounding down means the product never pays out more than it earns; the fractions are
    not carried over (simplified: real money-market funds accrue on units with more places).
    """
    if holding.minor_units <= 0:
        return Money(holding.currency, 0)
    minor = (Decimal(holding.minor_units) * annual_rate / days_in_year).to_integral_value(
        rounding=ROUND_DOWN
    )
    return Money(holding.currency, int(minor))


def redemption_needed(need: Money, *, wallet: Money, holding: Money) -> Money:
    """How much to redeem so the wallet covers ``need``: the shortfall, capped by the holding."""
    shortfall = max(0, need.minor_units - wallet.minor_units)
    return Money(need.currency, min(shortfall, max(0, holding.minor_units)))
