"""Automatic decisions: hard rules, risk bands, credit limits and readable reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from zerocontact.loan.domain.decisions import (
    Assessment,
    Exposure,
    PartyFacts,
    RiskBand,
    RiskRule,
    decide,
)
from zerocontact.loan.domain.errors import InvalidApplication, OfferNotAvailable, PartyNotVerified
from zerocontact.loan.domain.loans import (
    Application,
    ApplicationState,
    accept_offer,
    record_decision,
    validate_application,
)
from zerocontact.loan.domain.products import KycLevel, default_catalog
from zerocontact.platform.money import Money

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PRODUCT = default_catalog()["merchant-310"]
VERIFIED = PartyFacts("p1", KycLevel.VERIFIED, 1985)
CLEAN = Exposure(Money.zero("CNY"), 0)


def cny(amount: str) -> Money:
    return Money.of(amount, "CNY")


def assessed(band: RiskBand, score: int = 100, *rules: RiskRule) -> Assessment:
    return Assessment("as-1", "ce-1", score, band, tuple(rules))


def test_low_band_approves_the_full_amount_at_the_discounted_rate() -> None:
    d = decide(
        PRODUCT,
        amount=cny("50000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    assert d.approved and d.offered_amount == cny("50000")
    assert d.annual_rate == Decimal("0.096")
    assert d.credit_limit == cny("300000")
    assert [r.code for r in d.reasons] == ["RISK_BAND_LOW", "RATE_DISCOUNT_APPLIED"]
    assert "20 % off" in d.reasons[1].description
    assert d.offer_expires_at is not None and d.offer_expires_at > NOW


def test_medium_band_halves_the_limit_and_reduces_the_offer() -> None:
    d = decide(
        PRODUCT,
        amount=cny("200000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.MEDIUM, 450),
        now=NOW,
    )
    assert d.approved and d.credit_limit == cny("150000")
    assert d.offered_amount == cny("150000")
    assert "AMOUNT_REDUCED_TO_LIMIT" in [r.code for r in d.reasons]


def test_existing_exposure_counts_against_the_limit() -> None:
    d = decide(
        PRODUCT,
        amount=cny("50000"),
        party=VERIFIED,
        exposure=Exposure(cny("299500"), 0),
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    assert not d.approved
    assert [r.code for r in d.reasons] == ["CREDIT_LIMIT_EXHAUSTED"]


def test_high_band_declines_with_the_rules_that_fired() -> None:
    rule = RiskRule(
        "device_shared_by_many_parties", True, "device used by 7 parties in 24 h (limit 3)"
    )
    quiet = RiskRule("night_application", False, "applied at night")
    d = decide(
        PRODUCT,
        amount=cny("50000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.HIGH, 820, rule, quiet),
        now=NOW,
    )
    assert not d.approved
    codes = [r.code for r in d.reasons]
    assert codes == ["RISK_BAND_HIGH", "RISK_RULE_DEVICE_SHARED_BY_MANY_PARTIES"]
    assert "7 parties" in d.reasons[1].description
    assert "score 820" in d.reasons[0].description


def test_every_failing_hard_rule_is_reported() -> None:
    party = PartyFacts("p1", KycLevel.BASIC, 2010, open_alerts=("device shared by 9 parties",))
    d = decide(
        PRODUCT,
        amount=cny("50000"),
        party=party,
        exposure=Exposure(cny("0"), 1),
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    assert not d.approved
    assert [r.code for r in d.reasons] == [
        "KYC_LEVEL_TOO_LOW",
        "AGE_BELOW_MINIMUM",
        "EXISTING_OVERDUE_LOAN",
        "OPEN_RISK_ALERT",
    ]


def test_age_above_the_maximum_and_unknown_age() -> None:
    old = PartyFacts("p1", KycLevel.VERIFIED, 1950)
    d = decide(
        PRODUCT,
        amount=cny("5000"),
        party=old,
        exposure=CLEAN,
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    assert [r.code for r in d.reasons] == ["AGE_ABOVE_MAXIMUM"]
    unknown = PartyFacts("p1", KycLevel.VERIFIED, None)
    assert decide(
        PRODUCT,
        amount=cny("5000"),
        party=unknown,
        exposure=CLEAN,
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    ).approved


@pytest.mark.parametrize(
    ("amount", "term", "field"),
    [
        ("999.99", 12, "body.amount"),
        ("300000.01", 12, "body.amount"),
        ("5000", 2, "body.term_months"),
        ("5000", 25, "body.term_months"),
    ],
)
def test_applications_outside_the_product_are_refused(amount: str, term: int, field: str) -> None:
    with pytest.raises(InvalidApplication) as caught:
        validate_application(PRODUCT, VERIFIED, amount=cny(amount), term_months=term)
    assert caught.value.context["field"] == field


def test_unverified_or_unknown_parties_are_refused() -> None:
    with pytest.raises(PartyNotVerified):
        validate_application(PRODUCT, None, amount=cny("5000"), term_months=12)
    with pytest.raises(PartyNotVerified):
        validate_application(
            PRODUCT, PartyFacts("p1", KycLevel.BASIC, 1990), amount=cny("5000"), term_months=12
        )
    with pytest.raises(InvalidApplication):
        validate_application(PRODUCT, VERIFIED, amount=Money.of("5000", "USD"), term_months=12)


def _application() -> Application:
    return Application("a1", "p1", "merchant-310", cny("5000"), 12, "stock", "d1", "10.0.0.1", NOW)


def test_an_application_is_decided_once_and_accepted_once() -> None:
    app = _application()
    approve = decide(
        PRODUCT,
        amount=cny("5000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    decline = decide(
        PRODUCT,
        amount=cny("5000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.REJECT),
        now=NOW,
    )
    assert record_decision(app, approve, assessment_id="a", assessment_event_id="e1", now=NOW)
    assert not record_decision(app, decline, assessment_id="b", assessment_event_id="e2", now=NOW)
    assert app.state is ApplicationState.APPROVED and app.assessment_event_id == "e1"
    assert accept_offer(app, loan_id="l1", now=NOW)
    assert not accept_offer(app, loan_id="l2", now=NOW)
    assert app.loan_id == "l1" and app.version == 3


def test_declined_or_expired_offers_cannot_be_accepted() -> None:
    app = _application()
    with pytest.raises(OfferNotAvailable):
        accept_offer(app, loan_id="l1", now=NOW)  # still awaiting risk
    approve = decide(
        PRODUCT,
        amount=cny("5000"),
        party=VERIFIED,
        exposure=CLEAN,
        assessment=assessed(RiskBand.LOW),
        now=NOW,
    )
    record_decision(app, approve, assessment_id="a", assessment_event_id="e1", now=NOW)
    assert approve.offer_expires_at is not None
    with pytest.raises(OfferNotAvailable):
        accept_offer(app, loan_id="l1", now=approve.offer_expires_at.replace(year=2027))
