"""Pure rules of marketing: compliance checker, contact decision, segment rules, z-test,
studio statistics, triggers, suitability."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from zerocontact.marketing import profiles
from zerocontact.marketing.domain import contact, segments, triggers
from zerocontact.marketing.domain.catalog import Product, ProductKind, suitable
from zerocontact.marketing.domain.evaluation import (
    NotEnoughData,
    cost_per_conversion,
    in_holdout,
    two_proportion_z_test,
)
from zerocontact.marketing.domain.studios import SessionStats
from zerocontact.platform import compliance

WEALTH = Product("w1", ProductKind.WEALTH, "稳健理财", risk_level=2)
LOAN = Product("l1", ProductKind.LOAN, "薪享贷", risk_level=1, annual_rate="7.2%")
DISCLOSED = "理财非存款，产品有风险，投资须谨慎。"


def v(body: str, title: str = "好消息") -> compliance.Variant:
    return compliance.Variant("a", "app_push", title, body)


def check(variants: list[compliance.Variant], product: Product) -> list[compliance.Finding]:
    """The red-line checker as a campaign runs it: with the disclosures its product requires."""
    return compliance.check(
        variants, disclosures=product.disclosures, annual_rate=product.annual_rate
    )


class TestCompliance:
    def test_forbidden_claim_names_rule_and_span(self) -> None:
        variant = v("本产品保本保收益，" + DISCLOSED)
        findings = check([variant], WEALTH)
        assert [(f.rule, f.text) for f in findings] == [
            ("forbidden_claim", "保本"),
            ("forbidden_claim", "保收益"),
        ]
        for f in findings:
            assert variant.text[f.start : f.end] == f.text

    def test_longest_claim_reported_once(self) -> None:
        findings = check([v("稳赚不赔！" + DISCLOSED)], WEALTH)  # noqa: RUF001 (Chinese punctuation)
        assert [f.text for f in findings] == ["稳赚不赔"]

    def test_superlatives(self) -> None:
        findings = check([v("全国第一，收益最高，国家级品质。" + DISCLOSED)], WEALTH)
        assert {f.text for f in findings} == {"第一", "最高", "国家级"}
        assert {f.rule for f in findings} == {"absolute_superlative"}

    def test_wealth_needs_risk_disclosure(self) -> None:
        findings = check([v("稳健理财，欢迎了解")], WEALTH)
        assert [(f.rule, f.start) for f in findings] == [("missing_risk_disclosure", -1)]
        assert check([v("稳健理财。" + DISCLOSED)], WEALTH) == []

    def test_loan_needs_annualized_rate(self) -> None:
        assert [f.rule for f in check([v("薪享贷，随借随还")], LOAN)] == ["missing_annualized_rate"]
        assert check([v("薪享贷，年化利率7.2%起")], LOAN) == []
        assert check([v("薪享贷，年化利率（单利）7.2%")], LOAN) == []  # noqa: RUF001 (Chinese punctuation)
        assert [f.message for f in check([v("薪享贷")], LOAN)] == [
            "a loan offer must state its annualized rate (年化利率 7.2%)"
        ]

    def test_english_red_lines(self) -> None:
        text = "Risk-free and the BEST rate, guaranteed returns. Asbestos-free offices."
        findings = compliance.check_text(text)
        assert [(f.rule, text[f.start : f.end]) for f in findings] == [
            ("forbidden_claim", "Risk-free"),
            ("absolute_superlative", "BEST"),
            ("forbidden_claim", "guaranteed returns"),
        ]

    def test_english_disclosures(self) -> None:
        loan = {compliance.Disclosure.ANNUALIZED_RATE}
        wealth = {compliance.Disclosure.RISK}
        assert compliance.check_text("Salary loan, APR 7.2%-18%.", disclosures=loan) == []
        assert compliance.check_text("Annualized rate (simple) 7.2%", disclosures=loan) == []
        assert [f.rule for f in compliance.check_text("Salary loan.", disclosures=loan)] == [
            "missing_annualized_rate"
        ]
        assert compliance.check_text("Investments carry risk.", disclosures=wealth) == []
        assert compliance.check_text("A fund.", disclosures=wealth)[0].rule == (
            "missing_risk_disclosure"
        )


NOON = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
LATE = datetime(2026, 11, 30, 14, 30, tzinfo=UTC)  # 22:30 in Shanghai
PREFS = contact.Preferences(consented=frozenset({"app_push", "sms"}))
CAPS = contact.Caps(per_day={"app_push": 2, "sms": 1}, per_week={"app_push": 3, "sms": 3})


class TestContact:
    def test_allowed(self) -> None:
        assert contact.decide(PREFS, "app_push", sent_by_day={}, caps=CAPS, now=NOON) is None

    def test_order_of_rules(self) -> None:
        dnc = contact.Preferences(consented=PREFS.consented, do_not_contact=True)
        assert (
            contact.decide(dnc, "app_push", sent_by_day={}, caps=CAPS, now=NOON) == "do_not_contact"
        )
        assert contact.decide(PREFS, "in_app", sent_by_day={}, caps=CAPS, now=NOON) == "no_consent"
        assert (
            contact.decide(PREFS, "app_push", sent_by_day={}, caps=CAPS, now=LATE) == "quiet_hours"
        )

    def test_an_open_complaint_pauses_outreach_until_its_pause_ends(self) -> None:
        paused = contact.Preferences(
            consented=PREFS.consented, paused_until=NOON + timedelta(days=1)
        )
        reason = contact.decide(paused, "app_push", sent_by_day={}, caps=CAPS, now=NOON)
        assert reason == "open_complaint"
        later = NOON + timedelta(days=1, seconds=1)
        assert contact.decide(paused, "app_push", sent_by_day={}, caps=CAPS, now=later) is None
        # after do-not-contact, before everything else
        both = contact.Preferences(paused_until=NOON + timedelta(days=1), do_not_contact=True)
        assert contact.decide(both, "sms", sent_by_day={}, caps=CAPS, now=NOON) == "do_not_contact"

    def test_the_pause_is_the_latest_of_the_open_complaints(self) -> None:
        first, second = NOON + timedelta(days=3), NOON + timedelta(days=9)
        profile = {"complaints": {"c1": first.replace(tzinfo=None), "c2": second}}
        assert profiles.paused_until(profile) == second
        assert profiles.paused_until({"complaints": {"c1": first.replace(tzinfo=None)}}) == first
        assert profiles.paused_until({"complaints": {}}) is None
        assert profiles.paused_until(None) is None

    def test_quiet_hours_spanning_midnight_and_not(self) -> None:
        day_window = contact.Preferences(quiet_start=time(12, 0), quiet_end=time(13, 0))
        assert contact.in_quiet_hours(day_window, NOON)
        assert not contact.in_quiet_hours(day_window, LATE)
        assert contact.in_quiet_hours(PREFS, datetime(2026, 11, 29, 23, 0, tzinfo=UTC))  # 07:00
        assert not contact.in_quiet_hours(PREFS, datetime(2026, 11, 30, 0, 0, tzinfo=UTC))  # 08:00

    def test_daily_and_weekly_caps(self) -> None:
        today = contact.local_day(NOON, "Asia/Shanghai")
        assert (
            contact.decide(PREFS, "app_push", sent_by_day={today: 2}, caps=CAPS, now=NOON)
            == "frequency_cap"
        )
        week = {"20261128": 2, "20261129": 1}
        assert (
            contact.decide(PREFS, "app_push", sent_by_day=week, caps=CAPS, now=NOON)
            == "frequency_cap"
        )
        old = {"20261101": 50}
        assert contact.decide(PREFS, "app_push", sent_by_day=old, caps=CAPS, now=NOON) is None

    def test_local_day_uses_the_zone(self) -> None:
        assert (
            contact.local_day(datetime(2026, 11, 30, 17, 0, tzinfo=UTC), "Asia/Shanghai")
            == "20261201"
        )


class TestSegments:
    FACTS = segments.Facts(
        attributes={
            "risk_grade": 3,
            "kyc_level": 3,
            "party_kind": "customer",
            "engagement_milli": None,
        },
        counts={"salary_paid": {"20261130": 1, "20261001": 1}},
    )

    def rule(self, raw: object) -> segments.Rule:
        return segments.RULE.validate_python(raw)

    def test_attribute_and_windowed_count(self) -> None:
        r = self.rule(
            {
                "all": [
                    {"attr": "risk_grade", "op": ">=", "value": 3},
                    {"count": "salary_paid", "window_days": 30, "op": ">=", "value": 1},
                    {"not": {"attr": "party_kind", "op": "==", "value": "enterprise"}},
                ]
            }
        )
        assert segments.matches(r, self.FACTS, now=NOON)
        only_recent = self.rule({"count": "salary_paid", "window_days": 90, "op": "==", "value": 2})
        assert segments.matches(only_recent, self.FACTS, now=NOON)

    def test_missing_attribute_never_matches_and_any(self) -> None:
        r = self.rule(
            {
                "any": [
                    {"attr": "engagement_milli", "op": ">", "value": 0},
                    {"attr": "kyc_level", "op": "==", "value": 4},
                ]
            }
        )
        assert not segments.matches(r, self.FACTS, now=NOON)

    def test_type_mismatch_is_false_not_error(self) -> None:
        assert not segments.matches(
            self.rule({"attr": "risk_grade", "op": ">", "value": "x"}), self.FACTS, now=NOON
        )

    @pytest.mark.parametrize(
        "raw",
        [
            {"attr": "balance", "op": ">", "value": 1},
            {"attr": "risk_grade", "op": "=~", "value": 1},
            {"count": "salary_paid", "window_days": 0, "op": ">", "value": 1},
            {"count": "salary_paid", "window_days": 365, "op": ">", "value": 1},
            {"all": []},
            {"attr": "risk_grade", "op": ">", "value": 1, "extra": 1},
            "__import__('os')",
        ],
    )
    def test_bad_rules_are_refused(self, raw: object) -> None:
        with pytest.raises(ValidationError):
            segments.RULE.validate_python(raw)

    def test_membership_changes(self) -> None:
        rules = {
            "hi": self.rule({"attr": "risk_grade", "op": ">=", "value": 3}),
            "lo": self.rule({"attr": "risk_grade", "op": "<", "value": 3}),
        }
        joined, left = segments.membership_changes(rules, self.FACTS, {"lo", "gone"}, now=NOON)
        assert (joined, left) == ({"hi"}, {"lo"})


class TestEvaluation:
    def test_z_test_known_values(self) -> None:
        # 200/1000 vs 150/1000: pooled p=0.175, se=sqrt(0.175*0.825*0.002)=0.0169926, z=2.94245
        u = two_proportion_z_test(1000, 200, 1000, 150)
        assert u.uplift == pytest.approx(0.05)
        assert u.z == pytest.approx(0.05 / (0.175 * 0.825 * 0.002) ** 0.5, rel=1e-9)
        assert u.p_value == pytest.approx(0.003257, abs=2e-6)
        assert u.significant
        se = ((0.2 * 0.8 + 0.15 * 0.85) / 1000) ** 0.5
        assert u.ci_low == pytest.approx(0.05 - 1.959964 * se, abs=1e-6)
        assert u.ci_high == pytest.approx(0.05 + 1.959964 * se, abs=1e-6)

    def test_no_difference_not_significant(self) -> None:
        u = two_proportion_z_test(500, 50, 100, 10)
        assert u.z == 0 and u.p_value == pytest.approx(1.0) and not u.significant

    def test_empty_arm(self) -> None:
        with pytest.raises(NotEnoughData):
            two_proportion_z_test(10, 1, 0, 0)

    def test_holdout_is_stable_and_near_its_share(self) -> None:
        drawn = [in_holdout("c1", f"p{i}", 10) for i in range(10_000)]
        assert drawn == [in_holdout("c1", f"p{i}", 10) for i in range(10_000)]
        assert 900 < sum(drawn) < 1100
        assert not any(in_holdout("c1", f"p{i}", 0) for i in range(100))

    def test_cost_per_conversion(self) -> None:
        assert cost_per_conversion(1000, 3) == 333
        assert cost_per_conversion(1000, 0) is None


class TestStudios:
    def test_session_stats(self) -> None:
        s = SessionStats()
        t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
        from datetime import timedelta

        s.apply("joined", "a", t0)
        s.apply("joined", "b", t0 + timedelta(seconds=10))
        s.apply("joined", "a", t0 + timedelta(seconds=11))  # duplicate join ignored
        s.apply("card_clicked", "a", t0 + timedelta(seconds=20))
        s.apply("card_clicked", "a", t0 + timedelta(seconds=21))
        s.apply("commented", "b", t0 + timedelta(seconds=22))
        s.apply("left", "a", t0 + timedelta(seconds=60))
        s.apply("left", "zz", t0 + timedelta(seconds=60))  # never joined
        s.apply("converted", "a", t0 + timedelta(seconds=61))
        assert s.summary() == {
            "unique_viewers": 2,
            "concurrent_now": 1,
            "concurrent_peak": 2,
            "comments": 1,
            "card_clicks": 2,
            "click_through_rate": 0.5,
            "conversions": 1,
            "watch_seconds_total": 60.0,
        }


class TestTriggersAndSuitability:
    def test_salary_trigger(self) -> None:
        t = triggers.TRIGGER.validate_python(
            {"kind": "salary_paid", "min_month_salary_minor": 800_000}
        )
        assert isinstance(t, triggers.SalaryPaidTrigger)
        assert triggers.salary_fires(t, 800_000) and not triggers.salary_fires(t, 799_999)

    def test_bad_trigger(self) -> None:
        with pytest.raises(ValidationError):
            triggers.TRIGGER.validate_python({"kind": "salary_paid", "min_month_salary_minor": -1})
        with pytest.raises(ValidationError):
            triggers.TRIGGER.validate_python({"kind": "birthday"})

    def test_card_click(self) -> None:
        t = triggers.StudioCardClickedTrigger(kind="studio_card_clicked", product_id="w1")
        assert triggers.card_click_fires(t, "w1") and not triggers.card_click_fires(t, "w2")

    def test_suitability(self) -> None:
        assert suitable(WEALTH, 2) and suitable(WEALTH, 5)
        assert not suitable(WEALTH, 1)
        assert not suitable(WEALTH, None)
        assert suitable(LOAN, None)
