"""Servicing a disbursed loan: penalty accrual, repayment allocation, payoff, delinquency.

Installments are paid oldest first; inside one installment a payment goes to penalty,
then interest, then principal (the usual 罚息 → 利息 → 本金 order of Chinese loan contracts).
Penalty interest accrues daily (ACT/365) on an installment's unpaid principal and interest
from its due date, at the product's penalty rate; accrual is stored per installment with
the date it runs to, so a partial payment lowers the base from that day on.

Early payoff (提前还款) settles the loan for: every amount already due, the penalty, the
interest of the current period accrued ACT/365 up to the payoff date (capped at that
period's scheduled interest), and the outstanding principal. Future interest is waived.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from zerocontact.loan.domain.schedule import (
    Bucket,
    Installment,
    accrued_interest,
    bucket_for,
    penalty_interest,
    round_money,
)
from zerocontact.platform.errors import DomainError, Invalid
from zerocontact.platform.money import Money


class RepaymentExceedsPayoff(Invalid):
    """More was offered than the loan can take today."""

    code = "repayment_exceeds_payoff"


class LoanNotRepayable(DomainError):
    """The loan is not in a state that takes repayments (not disbursed yet, or settled)."""

    code = "loan_not_repayable"


@dataclass(frozen=True, slots=True)
class InstallmentState:
    """A scheduled installment and what has been paid (and waived) on it."""

    number: int
    due_date: date
    principal: Money
    interest: Money
    paid_principal: Money
    paid_interest: Money
    penalty_accrued: Money
    paid_penalty: Money
    penalty_through: date | None = None  # penalty accrued up to (exclusive) this date
    interest_waived: Money | None = None  # future interest dropped by an early payoff

    @classmethod
    def scheduled(cls, installment: Installment) -> InstallmentState:
        """A fresh, unpaid installment."""
        zero = Money.zero(installment.principal.currency)
        return cls(
            installment.number,
            installment.due_date,
            installment.principal,
            installment.interest,
            zero,
            zero,
            zero,
            zero,
        )

    @property
    def unpaid_principal(self) -> Money:
        """Principal still owed on this installment."""
        return self.principal - self.paid_principal

    @property
    def unpaid_interest(self) -> Money:
        """Interest still owed (after any waiver)."""
        waived = self.interest_waived or Money.zero(self.interest.currency)
        return self.interest - waived - self.paid_interest

    @property
    def unpaid_penalty(self) -> Money:
        """Penalty accrued and not yet paid."""
        return self.penalty_accrued - self.paid_penalty

    @property
    def settled(self) -> bool:
        """Nothing left to pay on it."""
        return (
            self.unpaid_principal.is_zero()
            and self.unpaid_interest.is_zero()
            and self.unpaid_penalty.is_zero()
        )


@dataclass(frozen=True, slots=True)
class Allocation:
    """How one repayment was applied."""

    principal: Money
    interest: Money
    penalty: Money
    first_installment: int
    days_late: int
    installments: tuple[InstallmentState, ...]
    settled: bool
    early_payoff: bool


def accrue_penalties(
    installments: Sequence[InstallmentState], *, as_of: date, penalty_rate: Decimal
) -> tuple[InstallmentState, ...]:
    """Bring every overdue installment's penalty up to ``as_of`` (idempotent for one date)."""
    result = []
    for inst in installments:
        start = inst.penalty_through or inst.due_date
        base = inst.unpaid_principal + inst.unpaid_interest
        if inst.due_date < as_of and start < as_of and base.minor_units > 0:
            extra = penalty_interest(base, penalty_rate, (as_of - start).days)
            inst = replace(
                inst, penalty_accrued=inst.penalty_accrued + extra, penalty_through=as_of
            )
        result.append(inst)
    return tuple(result)


def days_past_due(installments: Sequence[InstallmentState], *, as_of: date) -> tuple[int, int]:
    """(oldest unpaid installment's number, days past its due date); (0, 0) when current."""
    for inst in installments:
        if not inst.settled and inst.due_date < as_of:
            return inst.number, (as_of - inst.due_date).days
    return 0, 0


def delinquency(installments: Sequence[InstallmentState], *, as_of: date) -> Bucket:
    """The loan's delinquency bucket on ``as_of``."""
    return bucket_for(days_past_due(installments, as_of=as_of)[1])


def overdue_amount(installments: Sequence[InstallmentState], *, as_of: date) -> Money:
    """Principal, interest and penalty of every installment past due on ``as_of``."""
    currency = installments[0].principal.currency
    total = Money.zero(currency)
    for inst in installments:
        if inst.due_date < as_of:
            total = total + inst.unpaid_principal + inst.unpaid_interest + inst.unpaid_penalty
    return total


def outstanding_principal(installments: Sequence[InstallmentState]) -> Money:
    """Principal not yet repaid."""
    total = Money.zero(installments[0].principal.currency)
    for inst in installments:
        total = total + inst.unpaid_principal
    return total


def payoff_plan(
    installments: Sequence[InstallmentState],
    *,
    as_of: date,
    disbursed_on: date,
    annual_rate: Decimal,
) -> tuple[Money, dict[int, Money]]:
    """The amount that settles the loan on ``as_of`` and each installment's interest cap.

    ``caps`` maps an installment number to the interest it carries in a payoff: its
    scheduled interest if due, the accrued part for the running period, zero afterwards.
    """
    currency = installments[0].principal.currency
    principal_left = outstanding_principal(installments)
    caps: dict[int, Money] = {}
    total = Money.zero(currency)
    previous_due = disbursed_on
    running_seen = False
    for inst in installments:
        if inst.due_date <= as_of:
            cap = inst.interest - (inst.interest_waived or Money.zero(currency))
        elif not running_seen:
            running_seen = True
            days = (as_of - previous_due).days
            accrued = accrued_interest(principal_left, annual_rate, days)
            cap = min(accrued, inst.interest - (inst.interest_waived or Money.zero(currency)))
            cap = max(cap, inst.paid_interest)  # interest paid in advance is not refunded
        else:
            cap = inst.paid_interest
        caps[inst.number] = cap
        total = total + inst.unpaid_principal + inst.unpaid_penalty + (cap - inst.paid_interest)
        previous_due = inst.due_date
    return total, caps


def allocate_repayment(
    installments: Sequence[InstallmentState],
    amount: Money,
    *,
    as_of: date,
    disbursed_on: date,
    annual_rate: Decimal,
    penalty_rate: Decimal,
) -> Allocation:
    """Apply ``amount`` received on ``as_of``: the waterfall, or an early payoff when it
    equals the payoff amount. Raises :class:`RepaymentExceedsPayoff` above it."""
    if amount.minor_units <= 0:
        raise ValueError("a repayment must be positive")
    current = accrue_penalties(installments, as_of=as_of, penalty_rate=penalty_rate)
    payoff, caps = payoff_plan(
        current, as_of=as_of, disbursed_on=disbursed_on, annual_rate=annual_rate
    )
    if amount > payoff:
        raise RepaymentExceedsPayoff(
            f"the loan is paid off today with {payoff.to_decimal()} {payoff.currency}",
            payoff_minor_units=payoff.minor_units,
        )
    is_payoff = amount == payoff
    first, days_late = 0, 0
    left = amount
    zero = Money.zero(amount.currency)
    paid_p, paid_i, paid_x = zero, zero, zero
    result: list[InstallmentState] = []
    for inst in current:
        if is_payoff and inst.interest - caps[inst.number] != (inst.interest_waived or zero):
            inst = replace(inst, interest_waived=inst.interest - caps[inst.number])
        if inst.settled or left.is_zero():
            result.append(inst)
            continue
        if first == 0:
            first = inst.number
            days_late = max(0, (as_of - inst.due_date).days)
        x = min(left, inst.unpaid_penalty)
        left = left - x
        i = min(left, inst.unpaid_interest)
        left = left - i
        p = min(left, inst.unpaid_principal)
        left = left - p
        paid_p, paid_i, paid_x = paid_p + p, paid_i + i, paid_x + x
        result.append(
            replace(
                inst,
                paid_penalty=inst.paid_penalty + x,
                paid_interest=inst.paid_interest + i,
                paid_principal=inst.paid_principal + p,
            )
        )
    if not left.is_zero():  # cannot happen below the payoff amount; guard the invariant
        raise AssertionError("a repayment below the payoff amount was not fully allocated")
    settled = all(inst.settled for inst in result)
    early = settled and any(inst.due_date > as_of for inst in current)
    return Allocation(paid_p, paid_i, paid_x, first, days_late, tuple(result), settled, early)


def subsidy_for(interest: Money, *, full_rate: Decimal, borrower_rate: Decimal) -> Money:
    """What a rate-discount programme pays on top of ``interest`` paid at ``borrower_rate``,
    so the funders earn ``full_rate``: ``interest * (full - borrower) / borrower``, half up."""
    if borrower_rate <= 0 or full_rate <= borrower_rate:
        return Money.zero(interest.currency)
    return round_money(
        interest.to_decimal() * (full_rate - borrower_rate) / borrower_rate, interest.currency
    )
