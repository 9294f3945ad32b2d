"""Automatic credit decisions: hard rules, then the risk band, then the credit limit.

Every decision carries reason codes a person can read. A decision needs a risk assessment;
the hard rules are evaluated together with it (not before it), so a declined applicant
sees every rule that failed, not only the first one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from zerocontact.loan.domain.products import KycLevel, Product
from zerocontact.platform.money import Money


class RiskBand(StrEnum):
    """The signals' risk band (``zerocontact.signals.v1.RiskBand`` without the prefix)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    REJECT = "REJECT"


# The share of the product's exposure limit each band may borrow (HIGH and REJECT: none).
BAND_LIMIT_FRACTION = {RiskBand.LOW: Decimal(1), RiskBand.MEDIUM: Decimal("0.5")}


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable code and a sentence for the applicant or support."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class RiskRule:
    """One rule of the signals' scorecard as the assessment reported it."""

    name: str
    triggered: bool
    description: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """The part of a ``RiskAssessment`` a decision uses."""

    assessment_id: str
    event_id: str  # ce_id of the RiskAssessment record: recorded with the decision
    score: int
    band: RiskBand
    rules: tuple[RiskRule, ...] = ()
    scorecard_version: str = ""


@dataclass(frozen=True, slots=True)
class PartyFacts:
    """What loan knows about the applicant from identity's and the signals' events."""

    party_id: str
    kyc_level: KycLevel
    birth_year: int | None  # the customer's, or the enterprise's representative's
    open_alerts: tuple[str, ...] = ()  # readable descriptions of recent risk alerts


@dataclass(frozen=True, slots=True)
class Exposure:
    """The party's loans already on the books."""

    outstanding: Money  # principal outstanding plus offers approved and not yet expired
    overdue_loans: int


@dataclass(frozen=True, slots=True)
class Decision:
    """APPROVED with an offer and a credit limit, or DECLINED; reasons either way."""

    approved: bool
    risk_score: int
    risk_band: RiskBand
    reasons: tuple[Reason, ...]
    offered_amount: Money | None = None
    annual_rate: Decimal | None = None
    credit_limit: Money | None = None
    offer_expires_at: datetime | None = None
    hard_rule_failures: tuple[str, ...] = field(default_factory=tuple)


def age_on(birth_year: int, today: date) -> int:
    """Age in whole years as far as the birth year tells (identity publishes no full date)."""
    return today.year - birth_year


def hard_rules(
    product: Product, party: PartyFacts, exposure: Exposure, *, today: date
) -> list[Reason]:
    """The hard rules that fail; empty when all pass."""
    failed: list[Reason] = []
    if party.kyc_level.rank < product.min_kyc_level.rank:
        failed.append(
            Reason(
                "KYC_LEVEL_TOO_LOW",
                f"identity is verified to level {party.kyc_level}, the product needs "
                f"{product.min_kyc_level}",
            )
        )
    if party.birth_year is not None:
        age = age_on(party.birth_year, today)
        if age < product.min_age:
            failed.append(
                Reason("AGE_BELOW_MINIMUM", f"the applicant must be at least {product.min_age}")
            )
        elif age > product.max_age:
            failed.append(
                Reason("AGE_ABOVE_MAXIMUM", f"the applicant must be at most {product.max_age}")
            )
    if exposure.overdue_loans:
        failed.append(
            Reason(
                "EXISTING_OVERDUE_LOAN",
                f"{exposure.overdue_loans} existing loan(s) past due must be repaid first",
            )
        )
    for alert in party.open_alerts:
        failed.append(Reason("OPEN_RISK_ALERT", f"an open risk alert: {alert}"))
    return failed


def _band_reasons(assessment: Assessment) -> list[Reason]:
    triggered = [r for r in assessment.rules if r.triggered]
    return [Reason(f"RISK_RULE_{r.name.upper()}", r.description) for r in triggered]


def decide(
    product: Product,
    *,
    amount: Money,
    party: PartyFacts,
    exposure: Exposure,
    assessment: Assessment,
    now: datetime,
) -> Decision:
    """The decision on one application (pure; the same inputs give the same decision)."""
    failed = hard_rules(product, party, exposure, today=now.date())
    score, band = assessment.score, assessment.band
    if band in (RiskBand.HIGH, RiskBand.REJECT):
        failed.append(
            Reason(
                f"RISK_BAND_{band}",
                f"the risk assessment put the application in the {band.lower()} band "
                f"(score {score} of 1000)",
            )
        )
        failed.extend(_band_reasons(assessment))
    if failed:
        return Decision(
            False, score, band, tuple(failed), hard_rule_failures=tuple(r.code for r in failed)
        )
    limit = _credit_limit(product, band)
    headroom = limit - exposure.outstanding
    reasons = [
        Reason(
            f"RISK_BAND_{band}",
            f"risk score {score} of 1000 is in the {band.lower()} band",
        )
    ]
    if headroom < product.min_amount:
        return Decision(
            False,
            score,
            band,
            (
                Reason(
                    "CREDIT_LIMIT_EXHAUSTED",
                    f"the credit limit of {limit.to_decimal()} {limit.currency} leaves "
                    f"{max(headroom, Money.zero(limit.currency)).to_decimal()} "
                    f"{limit.currency}, below the product's minimum",
                ),
            ),
        )
    offered = min(amount, headroom)
    if offered < amount:
        reasons.append(
            Reason(
                "AMOUNT_REDUCED_TO_LIMIT",
                f"offered {offered.to_decimal()} {offered.currency} of "
                f"{amount.to_decimal()} requested: the credit limit is "
                f"{limit.to_decimal()} {limit.currency}",
            )
        )
    if product.discount is not None:
        reasons.append(
            Reason(
                "RATE_DISCOUNT_APPLIED",
                f"programme {product.discount.programme_id} takes "
                f"{(product.discount.fraction * 100).normalize():f} % off the rate, paid by the "
                f"{product.discount.payer.lower()}",
            )
        )
    return Decision(
        True,
        score,
        band,
        tuple(reasons),
        offered_amount=offered,
        annual_rate=product.rate,
        credit_limit=limit,
        offer_expires_at=now + timedelta(hours=product.offer_ttl_hours),
    )


def _credit_limit(product: Product, band: RiskBand) -> Money:
    fraction = BAND_LIMIT_FRACTION[band]
    base = product.exposure_limit
    # Whole hundreds: limits are quoted in round numbers.
    hundred = Money.of("100", base.currency).minor_units
    minor = int(base.minor_units * fraction) // hundred * hundred
    return Money(base.currency, minor)
