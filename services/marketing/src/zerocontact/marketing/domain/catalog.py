"""Products marketing may offer, their risk levels, and the suitability rule."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zerocontact.platform.compliance import Disclosure


class ProductKind(StrEnum):
    """What kind of product; decides which disclosures its content must carry."""

    LOAN = "loan"
    WEALTH = "wealth"
    PAYROLL = "payroll"


@dataclass(frozen=True)
class Product:
    """A catalog entry. ``risk_level`` 1 (R1, lowest) .. 5 (R5)."""

    id: str
    kind: ProductKind
    name: str
    risk_level: int
    annual_rate: str = ""  # loans: the annualized rate the content must disclose, e.g. "7.2%"

    @property
    def disclosures(self) -> frozenset[Disclosure]:
        """What content offering this product must disclose (the red-line checker's input)."""
        return _DISCLOSURES[self.kind]


_DISCLOSURES = {
    ProductKind.LOAN: frozenset({Disclosure.ANNUALIZED_RATE}),
    ProductKind.WEALTH: frozenset({Disclosure.RISK}),
    ProductKind.PAYROLL: frozenset[Disclosure](),
}


def suitable(product: Product, risk_grade: int | None) -> bool:
    """A product is offered only when the party's risk-tolerance grade covers its level.

    Grade C<n> covers R1..R<n>. A party never assessed (None) is suitable for nothing with
    investment risk: loans and payroll products (level 1) only.
    """
    if risk_grade is None:
        return product.kind is not ProductKind.WEALTH and product.risk_level <= 1
    return risk_grade >= product.risk_level
