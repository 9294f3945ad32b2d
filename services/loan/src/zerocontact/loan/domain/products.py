"""Loan products: ranges, rate, repayment method, KYC level, funding structure, discounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from zerocontact.loan.domain.schedule import RepaymentMethod
from zerocontact.platform.money import Money

OWN_BOOK = "own-book"
FULL_SHARE_BPS = 10_000


class KycLevel(StrEnum):
    """Identity's KYC/KYB levels, in increasing order of assurance (loan's local view)."""

    NONE = "NONE"
    BASIC = "BASIC"
    VERIFIED = "VERIFIED"
    ENHANCED = "ENHANCED"

    @property
    def rank(self) -> int:
        """Position in the order NONE < BASIC < VERIFIED < ENHANCED."""
        return list(KycLevel).index(self)


class SubsidyPayer(StrEnum):
    """Who pays the interest a rate-discount programme takes off the borrower's rate."""

    BANK = "BANK"
    PARTNER = "PARTNER"
    PLATFORM = "PLATFORM"


@dataclass(frozen=True, slots=True)
class Funder:
    """One funder of a product: own book or a partner bank, its share and its quota."""

    funder_id: str
    share_bps: int
    quota: Money  # the most this funder lends through the product in total


@dataclass(frozen=True, slots=True)
class RateDiscount:
    """A programme cutting the rate by ``fraction`` (0.20 = 20 % off), paid by ``payer_id``."""

    programme_id: str
    fraction: Decimal
    payer: SubsidyPayer
    payer_id: str  # the bank, partner or platform whose subsidy account pays

    @property
    def subsidy_account(self) -> str:
        """The ledger account the difference is booked against."""
        return f"subsidy:{self.payer.lower()}:{self.payer_id}"


@dataclass(frozen=True, slots=True)
class Product:
    """A loan product; amounts in the product's currency."""

    product_id: str
    name: str
    currency: str
    min_amount: Money
    max_amount: Money
    min_term_months: int
    max_term_months: int
    annual_rate: Decimal  # before any discount, e.g. Decimal("0.12")
    method: RepaymentMethod
    min_kyc_level: KycLevel
    funders: tuple[Funder, ...]
    discount: RateDiscount | None = None
    # 罚息: penalty rate as a multiple of the contract rate (1.5 is the common PBoC practice).
    penalty_rate_multiplier: Decimal = Decimal("1.5")
    min_age: int = 18
    max_age: int = 65
    offer_ttl_hours: int = 72
    # The most a party may owe on this product at once (the LOW band's credit limit).
    max_exposure: Money | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if sum(f.share_bps for f in self.funders) != FULL_SHARE_BPS:
            raise ValueError(f"funder shares of {self.product_id} must sum to 10000 bps")
        if any(f.share_bps <= 0 for f in self.funders):
            raise ValueError("every funder's share must be positive")
        if not (0 < self.min_term_months <= self.max_term_months):
            raise ValueError("term range is empty")
        if not (Money.zero(self.currency) < self.min_amount <= self.max_amount):
            raise ValueError("amount range is empty")
        if self.discount is not None and not (0 < self.discount.fraction < 1):
            raise ValueError("a discount is a fraction between 0 and 1")

    @property
    def rate(self) -> Decimal:
        """The borrower's annual rate after any discount (exact: no rounding of rates)."""
        if self.discount is None:
            return self.annual_rate
        return self.annual_rate * (1 - self.discount.fraction)

    @property
    def penalty_rate(self) -> Decimal:
        """The annual penalty rate on overdue amounts."""
        return self.rate * self.penalty_rate_multiplier

    @property
    def exposure_limit(self) -> Money:
        """The LOW band's credit limit on this product."""
        return self.max_exposure or self.max_amount


def _cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def default_catalog() -> dict[str, Product]:
    """The products a fresh deployment offers (the 310 programme and two own-book loans)."""
    products = [
        Product(
            product_id="merchant-310",
            name="310 small-merchant loan, co-lent with partner banks, 20 % rate cut",
            currency="CNY",
            min_amount=_cny("1000"),
            max_amount=_cny("300000"),
            min_term_months=3,
            max_term_months=24,
            annual_rate=Decimal("0.12"),
            method=RepaymentMethod.EQUAL_INSTALLMENTS,
            min_kyc_level=KycLevel.VERIFIED,
            funders=(
                Funder("partner-bank-a", 7_000, _cny("500000000")),
                Funder("partner-bank-b", 3_000, _cny("200000000")),
            ),
            discount=RateDiscount(
                "smb-relief-2020", Decimal("0.20"), SubsidyPayer.PLATFORM, "mybank"
            ),
            max_exposure=_cny("300000"),
            tags=("co-lending", "310"),
        ),
        Product(
            product_id="own-equal-principal",
            name="Own-book working-capital loan, equal principal",
            currency="CNY",
            min_amount=_cny("1000"),
            max_amount=_cny("100000"),
            min_term_months=6,
            max_term_months=36,
            annual_rate=Decimal("0.0985"),
            method=RepaymentMethod.EQUAL_PRINCIPAL,
            min_kyc_level=KycLevel.VERIFIED,
            funders=(Funder(OWN_BOOK, FULL_SHARE_BPS, _cny("1000000000")),),
        ),
        Product(
            product_id="own-interest-first",
            name="Own-book bullet loan, interest first, principal at maturity",
            currency="CNY",
            min_amount=_cny("500"),
            max_amount=_cny("50000"),
            min_term_months=1,
            max_term_months=12,
            annual_rate=Decimal("0.108"),
            method=RepaymentMethod.INTEREST_FIRST,
            min_kyc_level=KycLevel.BASIC,
            funders=(Funder(OWN_BOOK, FULL_SHARE_BPS, _cny("1000000000")),),
        ),
    ]
    return {p.product_id: p for p in products}
