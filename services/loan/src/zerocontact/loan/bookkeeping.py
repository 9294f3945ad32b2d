"""Loan's chart of accounts and the postings it makes (legs are built here, purely).

| account | normal side | role |
| --- | --- | --- |
| ``commitment:<funder>`` | DEBIT, may go negative | what a funder committed to the programme (its quota) |
| ``funding:<funder>:<shard>`` | CREDIT, never negative | the funder's money available to lend (quota left) |
| ``clearing:disburse:<loan>`` | CREDIT, never negative | a payout in flight on the rail |
| ``settlement:<party>`` | CREDIT, never negative | the borrower's settlement account |
| ``interest-income:<funder>`` | CREDIT | interest earned by a funder |
| ``penalty-income:<funder>`` | CREDIT | penalty interest earned by a funder |
| ``subsidy:<payer kind>:<payer>`` | DEBIT | what a rate-discount programme paid |

Disbursement is three postings with ids derived from the loan id, each applied exactly
once by the ledger: ``disburse:<loan>:reserve`` (funding → clearing, per share: fails when
a funder's quota shard is exhausted), the rail payout with reference ``disburse:<loan>``, then
``disburse:<loan>:settle`` (clearing → settlement) or, if the rail refused for good,
``disburse:<loan>:reverse`` (clearing → funding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from zerocontact.loan.domain.colending import FunderAllocation, FunderPart
from zerocontact.loan.domain.products import Product
from zerocontact.platform.ledger import Leg, Side
from zerocontact.platform.money import Money

# A funder's quota is spread over shards: every disbursement of a funder appends to its
# funding account, and one account's chain takes one append at a time. A loan always uses the
# shard its id hashes to (for the payout, a reversal and every principal repaid).
FUNDING_SHARDS = 8


def shard_of(loan_id: str) -> int:
    """The funding shard of a loan (stable: derived from its id)."""
    return int.from_bytes(hashlib.sha256(loan_id.encode()).digest()[:4], "big") % FUNDING_SHARDS


def funding(funder_id: str, shard: int) -> str:
    """One shard of the funder's lendable funds."""
    return f"funding:{funder_id}:{shard:02d}"


def funding_shards(funder_id: str) -> list[str]:
    """Every shard of a funder's lendable funds (their balances sum to the quota left)."""
    return [funding(funder_id, n) for n in range(FUNDING_SHARDS)]


def commitment(funder_id: str) -> str:
    """The funder's committed quota (contra account of its funding)."""
    return f"commitment:{funder_id}"


def clearing(loan_id: str) -> str:
    """One loan's payout in flight (per loan, so payouts never contend on one account)."""
    return f"clearing:disburse:{loan_id}"


def settlement(party_id: str) -> str:
    """The borrower's settlement account."""
    return f"settlement:{party_id}"


def interest_income(funder_id: str) -> str:
    """Interest earned by a funder."""
    return f"interest-income:{funder_id}"


def penalty_income(funder_id: str) -> str:
    """Penalty interest earned by a funder."""
    return f"penalty-income:{funder_id}"


# (account, normal side, may go negative)
AccountSpec = tuple[str, Side, bool]


def product_accounts(product: Product) -> list[AccountSpec]:
    """Every long-lived account a product's postings touch."""
    specs: list[AccountSpec] = []
    for f in product.funders:
        specs += [
            (commitment(f.funder_id), Side.DEBIT, True),
            *((account, Side.CREDIT, False) for account in funding_shards(f.funder_id)),
            (interest_income(f.funder_id), Side.CREDIT, False),
            (penalty_income(f.funder_id), Side.CREDIT, False),
        ]
    if product.discount is not None:
        specs.append((product.discount.subsidy_account, Side.DEBIT, False))
    return specs


def quota_posting(product: Product) -> list[tuple[str, list[Leg]]]:
    """The postings that give each funder its quota for ``product``, spread evenly over the
    funding shards (ids are stable)."""
    postings = []
    for f in product.funders:
        parts = f.quota.split([1] * FUNDING_SHARDS)
        legs = [Leg.debit(commitment(f.funder_id), f.quota)] + [
            Leg.credit(account, part)
            for account, part in zip(funding_shards(f.funder_id), parts, strict=True)
        ]
        postings.append((f"quota:{f.funder_id}:{product.product_id}:initial", legs))
    return postings


def reserve_legs(loan_id: str, funders: Sequence[FunderPart], principal: Money) -> list[Leg]:
    """Funders' parts (from the loan's shard) into the loan's clearing account."""
    shard = shard_of(loan_id)
    legs = [
        Leg.debit(funding(f.funder_id, shard), f.amount) for f in funders if f.amount.minor_units
    ]
    return [*legs, Leg.credit(clearing(loan_id), principal)]


def settle_legs(loan_id: str, party_id: str, principal: Money) -> list[Leg]:
    """Clearing to the borrower's settlement account (the rail paid)."""
    return [Leg.debit(clearing(loan_id), principal), Leg.credit(settlement(party_id), principal)]


def reverse_legs(loan_id: str, funders: Sequence[FunderPart], principal: Money) -> list[Leg]:
    """Clearing back to the funders (the rail refused for good)."""
    shard = shard_of(loan_id)
    legs = [
        Leg.credit(funding(f.funder_id, shard), f.amount) for f in funders if f.amount.minor_units
    ]
    return [Leg.debit(clearing(loan_id), principal), *legs]


def repayment_legs(
    *,
    loan_id: str,
    party_id: str,
    amount: Money,
    allocations: Sequence[FunderAllocation],
    subsidy: Money,
    subsidy_account: str | None,
) -> list[Leg]:
    """The borrower pays ``amount``; each funder receives principal (back into its funding),
    interest and penalty; a discount programme tops up the interest by ``subsidy``."""
    legs = [Leg.debit(settlement(party_id), amount)]
    if subsidy.minor_units:
        assert subsidy_account is not None
        legs.append(Leg.debit(subsidy_account, subsidy))
    for a in allocations:
        if a.principal.minor_units:
            legs.append(Leg.credit(funding(a.funder_id, shard_of(loan_id)), a.principal))
        if (a.interest + a.subsidy).minor_units:
            legs.append(Leg.credit(interest_income(a.funder_id), a.interest + a.subsidy))
        if a.penalty.minor_units:
            legs.append(Leg.credit(penalty_income(a.funder_id), a.penalty))
    return legs
