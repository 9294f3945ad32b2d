"""The risk scorecard: deterministic rules over feature values, with readable reasons.

Pure: the same feature values always give the same score, band and rule results, and every
rule reports its threshold, what it observed and a sentence a person can read (the
explanation a loan decision carries). Points add to a base score, clamped to [0, 1000];
higher is riskier. A *hard* rule that fires puts the application in the REJECT band
whatever the score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import Final

__all__ = [
    "BASE_SCORE",
    "RULES",
    "SCORECARD_VERSION",
    "Band",
    "Rule",
    "RuleOutcome",
    "Scored",
    "band_for",
    "score",
]

SCORECARD_VERSION: Final = "risk-scorecard-2026.1"
BASE_SCORE: Final = 100
MAX_SCORE: Final = 1000


class Band(IntEnum):
    """Risk band; the values are those of ``zerocontact.signals.v1.RiskBand``."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    REJECT = 4


# Upper score bounds (exclusive) of the bands below REJECT.
BAND_LIMITS: Final = ((300, Band.LOW), (500, Band.MEDIUM), (700, Band.HIGH))


@dataclass(frozen=True)
class Rule:
    """One scorecard rule: fires when ``compare(observed, threshold)`` holds."""

    name: str
    feature: str
    threshold: Decimal
    points: int
    describe: Callable[[Decimal, Decimal], str]  # (observed, threshold) -> sentence
    at_least: bool = True  # fires at observed >= threshold; otherwise at observed <= threshold
    hard: bool = False  # firing means REJECT whatever the score
    requires: tuple[str, Decimal] | None = None  # another feature that must reach a minimum

    def fires(self, features: Mapping[str, Decimal]) -> tuple[Decimal, bool]:
        """What the rule observed and whether it fired."""
        observed = features.get(self.feature, Decimal(0))
        if self.requires is not None:
            other, minimum = self.requires
            if features.get(other, Decimal(0)) < minimum:
                return observed, False
        fired = observed >= self.threshold if self.at_least else observed <= self.threshold
        return observed, fired


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule saw and did (``zerocontact.signals.v1.RuleResult``)."""

    name: str
    threshold: Decimal
    observed: Decimal
    triggered: bool
    points: int
    description: str
    hard: bool


@dataclass(frozen=True)
class Scored:
    """The score, band and every rule's outcome."""

    score: int
    band: Band
    rules: tuple[RuleOutcome, ...]

    @property
    def triggered(self) -> tuple[RuleOutcome, ...]:
        """The rules that fired, in scorecard order."""
        return tuple(rule for rule in self.rules if rule.triggered)


def _d(value: int) -> Decimal:
    return Decimal(value)


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        name="device_shared_by_many_parties",
        feature="parties_per_device_24h",
        threshold=_d(3),
        points=400,
        hard=True,
        describe=lambda o, t: f"device used by {o} parties in 24 h (limit {t - 1})",
    ),
    Rule(
        name="severe_delinquency",
        feature="max_days_late",
        threshold=_d(60),
        points=400,
        hard=True,
        describe=lambda o, t: f"a repayment or installment was {o} days late (limit {t - 1})",
    ),
    Rule(
        name="failed_login_burst",
        feature="failed_authentications_1h",
        threshold=_d(5),
        points=200,
        describe=lambda o, t: f"{o} failed authentications in 1 h (limit {t - 1})",
    ),
    Rule(
        name="party_application_velocity_1h",
        feature="applications_per_party_1h",
        threshold=_d(3),
        points=100,
        describe=lambda o, t: f"{o} applications by the party in 1 h (limit {t - 1})",
    ),
    Rule(
        name="party_application_velocity_24h",
        feature="applications_per_party_24h",
        threshold=_d(6),
        points=100,
        describe=lambda o, t: f"{o} applications by the party in 24 h (limit {t - 1})",
    ),
    Rule(
        name="device_application_velocity_24h",
        feature="applications_per_device_24h",
        threshold=_d(6),
        points=120,
        describe=lambda o, t: f"{o} applications from the device in 24 h (limit {t - 1})",
    ),
    Rule(
        name="source_address_application_velocity_1h",
        feature="applications_per_source_address_1h",
        threshold=_d(10),
        points=100,
        describe=lambda o, t: f"{o} applications from the source address in 1 h (limit {t - 1})",
    ),
    Rule(
        name="late_repayments",
        feature="repayments_late",
        threshold=_d(2),
        points=150,
        describe=lambda o, t: f"{o} late repayments (limit {t - 1})",
    ),
    Rule(
        name="merchant_revenue_decline",
        feature="merchant_revenue_change_pct",
        threshold=_d(-30),
        points=100,
        at_least=False,
        requires=("merchant_revenue_reports", _d(2)),
        describe=lambda o, t: f"latest sales {o} % against earlier periods (limit {t} %)",
    ),
)


def band_for(points: int, *, hard_rule_fired: bool) -> Band:
    """The band of a score; REJECT when a hard rule fired."""
    if hard_rule_fired:
        return Band.REJECT
    for limit, band in BAND_LIMITS:
        if points < limit:
            return band
    return Band.REJECT


def score(features: Mapping[str, Decimal], rules: tuple[Rule, ...] = RULES) -> Scored:
    """Evaluate every rule over ``features`` (a missing feature counts as 0)."""
    outcomes = []
    total = BASE_SCORE
    hard = False
    for rule in rules:
        observed, fired = rule.fires(features)
        points = rule.points if fired else 0
        total += points
        hard = hard or (fired and rule.hard)
        outcomes.append(
            RuleOutcome(
                name=rule.name,
                threshold=rule.threshold,
                observed=observed,
                triggered=fired,
                points=points,
                description=rule.describe(observed, rule.threshold),
                hard=rule.hard,
            )
        )
    clamped = max(0, min(MAX_SCORE, total))
    return Scored(
        score=clamped, band=band_for(clamped, hard_rule_fired=hard), rules=tuple(outcomes)
    )
