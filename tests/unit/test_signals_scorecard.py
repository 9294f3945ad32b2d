"""The scorecard and the feature arithmetic: pure, deterministic, explainable."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from zerocontact.signals import features
from zerocontact.signals.features import FEATURES, FeatureDefinition, FeatureKey, feature
from zerocontact.signals.scorecard import BASE_SCORE, RULES, Band, band_for, score
from zerocontact.signals.v1 import risk_pb2


def _d(**values: int) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in values.items()}


def test_a_clean_party_scores_the_base_and_is_low_risk() -> None:
    scored = score({})
    assert scored.score == BASE_SCORE
    assert scored.band is Band.LOW
    assert not scored.triggered
    assert [r.name for r in scored.rules] == [r.name for r in RULES]  # every rule reported


def test_points_add_up_with_readable_reasons() -> None:
    scored = score(_d(failed_authentications_1h=6, repayments_late=3))
    assert scored.score == 450
    assert scored.band is Band.MEDIUM
    fired = {r.name: r for r in scored.triggered}
    assert set(fired) == {"failed_login_burst", "late_repayments"}
    assert fired["failed_login_burst"].description == "6 failed authentications in 1 h (limit 4)"
    assert (fired["late_repayments"].threshold, fired["late_repayments"].observed) == (
        Decimal(2),
        Decimal(3),
    )


def test_a_hard_rule_rejects_whatever_the_score() -> None:
    scored = score(_d(parties_per_device_24h=3))
    assert scored.score == 500
    assert scored.band is Band.REJECT
    assert scored.triggered[0].description == "device used by 3 parties in 24 h (limit 2)"
    below = score(_d(parties_per_device_24h=2))
    assert below.band is Band.LOW and not below.triggered


def test_the_score_is_clamped_and_deterministic() -> None:
    everything = _d(
        parties_per_device_24h=9,
        max_days_late=90,
        failed_authentications_1h=20,
        applications_per_party_1h=9,
        applications_per_party_24h=9,
        applications_per_device_24h=9,
        applications_per_source_address_1h=20,
        repayments_late=5,
        merchant_revenue_reports=3,
        merchant_revenue_change_pct=-50,
    )
    assert score(everything).score == 1000
    assert score(everything) == score(dict(everything))


def test_revenue_decline_needs_two_reports() -> None:
    one = score(_d(merchant_revenue_reports=1, merchant_revenue_change_pct=-80))
    assert not one.triggered
    two = score(_d(merchant_revenue_reports=2, merchant_revenue_change_pct=-30))
    assert [r.name for r in two.triggered] == ["merchant_revenue_decline"]


@pytest.mark.parametrize(
    ("points", "band"),
    [(0, Band.LOW), (299, Band.LOW), (300, Band.MEDIUM), (500, Band.HIGH), (700, Band.REJECT)],
)
def test_bands(points: int, band: Band) -> None:
    assert band_for(points, hard_rule_fired=False) is band


def test_bands_mirror_the_contract() -> None:
    for band in Band:
        assert risk_pb2.RiskBand.Value(f"RISK_BAND_{band.name}") == band.value


def test_every_feature_is_defined_once_with_its_window() -> None:
    names = [d.name for d in FEATURES]
    assert len(names) == len(set(names))
    velocity = feature("applications_per_device_24h")
    assert velocity.key is FeatureKey.DEVICE
    assert velocity.window_label == "24h"
    assert velocity.expires is not None and velocity.bucket is not None
    assert velocity.expires >= velocity.window + velocity.bucket
    assert feature("repayment_history").window_label == ""


def test_a_definition_whose_buckets_do_not_outlive_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="outlive"):
        FeatureDefinition(
            name="x",
            description="x",
            sources=(),
            key=FeatureKey.PARTY,
            aggregation=features.Aggregation.COUNT,
            window=timedelta(hours=1),
            bucket=timedelta(minutes=15),
            expires=timedelta(hours=1),
        )


def test_bucket_starts_cover_the_window() -> None:
    definition = feature("applications_per_party_1h")
    starts = features.bucket_starts(definition, 10_000.0)
    assert starts == [10_000.0, 9_100.0, 8_200.0, 7_300.0]


def test_distinct_union_counts_members_once_up_to_the_cap() -> None:
    assert features.distinct_union([["a", "b"], None, ["b", "c"]], cap=64) == 3
    assert features.distinct_union([["a", "b", "c"]], cap=2) == 2


def test_repayments_count_once_per_repayment_id() -> None:
    history = features.record_repayment(None, repayment_id="r1", days_late=0)
    assert history is not None
    history = features.record_repayment(history, repayment_id="r2", days_late=12)
    assert history == {"on_time": 1, "late": 1, "max_days_late": 12, "recent_ids": ["r1", "r2"]}
    assert features.record_repayment(history, repayment_id="r2", days_late=12) is None
    assert features.record_overdue(history, days_past_due=5) is None
    worse = features.record_overdue(history, days_past_due=70)
    assert worse is not None and worse["max_days_late"] == 70


def test_revenue_trend_compares_the_latest_period_with_the_earlier_mean() -> None:
    history = None
    for period, amount in ((1, 100_000), (2, 300_000), (3, 100_000)):
        history = features.record_revenue(
            history, report_id=f"r{period}", period_start=period, currency="CNY", minor_units=amount
        )
    assert features.revenue_change_pct(history) == (3, Decimal(-50))
    assert (
        features.record_revenue(
            history, report_id="r3", period_start=3, currency="CNY", minor_units=1
        )
        is None
    )
    other = features.record_revenue(
        history, report_id="u1", period_start=4, currency="USD", minor_units=5
    )
    assert features.revenue_change_pct(other) == (1, Decimal(0))  # another currency restarts
