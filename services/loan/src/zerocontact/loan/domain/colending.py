"""Co-lending: a loan's principal and every repayment split between funders by share.

The repayment waterfall (docs/loan.md):

1. The borrower's payment is allocated, oldest installment first, to penalty, then
   interest, then principal (:mod:`zerocontact.loan.domain.servicing`).
2. Each of the three components is then split between the funders pro rata to their
   shares in basis points with :meth:`Money.split` (largest remainder), so every split sums
   exactly to its component and the funders' parts sum exactly to the payment. A funder is
   never paid interest before another funder is paid penalty: the components are split
   side by side, not in sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zerocontact.loan.domain.products import Funder
from zerocontact.platform.money import Money


@dataclass(frozen=True, slots=True)
class FunderPart:
    """One funder's part of an amount."""

    funder_id: str
    share_bps: int
    amount: Money


@dataclass(frozen=True, slots=True)
class FunderAllocation:
    """One funder's part of a repayment, by component."""

    funder_id: str
    principal: Money
    interest: Money
    penalty: Money
    subsidy: Money  # the rate-discount programme's payment to this funder

    @property
    def total(self) -> Money:
        """Everything this funder receives from the borrower (subsidy excluded)."""
        return self.principal + self.interest + self.penalty


def split_by_share(amount: Money, funders: Sequence[Funder]) -> list[FunderPart]:
    """``amount`` split by the funders' shares; the parts sum exactly to ``amount``."""
    parts = amount.split([f.share_bps for f in funders])
    return [FunderPart(f.funder_id, f.share_bps, p) for f, p in zip(funders, parts, strict=True)]


def allocate_to_funders(
    funders: Sequence[Funder],
    *,
    principal: Money,
    interest: Money,
    penalty: Money,
    subsidy: Money,
) -> list[FunderAllocation]:
    """Split each component of a repayment between the funders (see the module docstring)."""
    p = split_by_share(principal, funders)
    i = split_by_share(interest, funders)
    x = split_by_share(penalty, funders)
    s = split_by_share(subsidy, funders)
    return [
        FunderAllocation(f.funder_id, pp.amount, ii.amount, xx.amount, ss.amount)
        for f, pp, ii, xx, ss in zip(funders, p, i, x, s, strict=True)
    ]
