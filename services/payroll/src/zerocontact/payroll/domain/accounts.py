"""Ledger accounts and the postings of payroll, with deterministic idempotency ids.

Every movement is one balanced posting whose id is derived from what it is for, so a restart
or a redelivery that tries the same movement again finds the first one and never moves twice.

| account | side | holds |
| --- | --- | --- |
| ``payroll:employer:<id>:wallet`` | CREDIT | the employer's money (a liability to it) |
| ``payroll:employer:<id>:mmf`` | CREDIT | its money-market holding (a liability to it) |
| ``payroll:employer:<id>:gig-hold`` | CREDIT | gross gig payouts in flight |
| ``payroll:batch:<id>:reserve`` | CREDIT | a batch's reserved funds until paid or released |
| ``payroll:rail:settlement`` | DEBIT | our settlement position at the payment rail (asset) |
| ``payroll:tax:iit-withheld`` | CREDIT | income tax withheld, owed to the tax bureau |
| ``payroll:mmf:yield-expense`` | DEBIT | yield paid to holders (the product's cost) |
"""

from __future__ import annotations

from zerocontact.platform.ledger import Leg, Side
from zerocontact.platform.money import Money

RAIL_SETTLEMENT = "payroll:rail:settlement"
TAX_WITHHELD = "payroll:tax:iit-withheld"
YIELD_EXPENSE = "payroll:mmf:yield-expense"

# (account, normal side, may go negative)
HOUSE_ACCOUNTS: tuple[tuple[str, Side, bool], ...] = (
    # the rail's side is funded outside this ledger (the bank's nostro), so it may go negative
    (RAIL_SETTLEMENT, Side.DEBIT, True),
    (TAX_WITHHELD, Side.CREDIT, False),
    (YIELD_EXPENSE, Side.DEBIT, True),
)


def wallet(employer_id: str) -> str:
    """The employer's wallet account."""
    return f"payroll:employer:{employer_id}:wallet"


def money_market(employer_id: str) -> str:
    """The employer's money-market holding."""
    return f"payroll:employer:{employer_id}:mmf"


def gig_hold(employer_id: str) -> str:
    """Gross gig payouts of the employer in flight."""
    return f"payroll:employer:{employer_id}:gig-hold"


def batch_reserve(batch_id: str) -> str:
    """A batch's reserve."""
    return f"payroll:batch:{batch_id}:reserve"


def top_up(employer_id: str, amount: Money) -> list[Leg]:
    """Money arrived at the rail for the employer: the wallet grows."""
    return [Leg.debit(RAIL_SETTLEMENT, amount), Leg.credit(wallet(employer_id), amount)]


def reserve(employer_id: str, batch_id: str, amount: Money) -> list[Leg]:
    """The whole batch reserved from the wallet (one posting, not one per item)."""
    return [Leg.debit(wallet(employer_id), amount), Leg.credit(batch_reserve(batch_id), amount)]


def settle(batch_id: str, amount: Money) -> list[Leg]:
    """Paid salaries leave the reserve through the rail."""
    return [Leg.debit(batch_reserve(batch_id), amount), Leg.credit(RAIL_SETTLEMENT, amount)]


def release(employer_id: str, batch_id: str, amount: Money) -> list[Leg]:
    """What was not paid goes back to the wallet."""
    return [Leg.debit(batch_reserve(batch_id), amount), Leg.credit(wallet(employer_id), amount)]


def gig_hold_legs(employer_id: str, gross: Money) -> list[Leg]:
    """A gig payout's gross amount held from the wallet."""
    return [Leg.debit(wallet(employer_id), gross), Leg.credit(gig_hold(employer_id), gross)]


def gig_settle(employer_id: str, gross: Money, tax: Money) -> list[Leg]:
    """The net leaves through the rail, the tax is owed to the bureau."""
    legs = [Leg.debit(gig_hold(employer_id), gross), Leg.credit(RAIL_SETTLEMENT, gross - tax)]
    if tax.minor_units:
        legs.append(Leg.credit(TAX_WITHHELD, tax))
    return legs


def gig_release(employer_id: str, gross: Money) -> list[Leg]:
    """A failed gig payout goes back to the wallet."""
    return [Leg.debit(gig_hold(employer_id), gross), Leg.credit(wallet(employer_id), gross)]


def sweep(employer_id: str, amount: Money) -> list[Leg]:
    """Idle wallet money into the money-market product."""
    return [Leg.debit(wallet(employer_id), amount), Leg.credit(money_market(employer_id), amount)]


def redeem(employer_id: str, amount: Money) -> list[Leg]:
    """Money-market holding back into the wallet."""
    return [Leg.debit(money_market(employer_id), amount), Leg.credit(wallet(employer_id), amount)]


def accrue_yield(employer_id: str, amount: Money) -> list[Leg]:
    """A day's yield credited to the holding."""
    return [Leg.debit(YIELD_EXPENSE, amount), Leg.credit(money_market(employer_id), amount)]
