"""Salary paid → a compliant, suitable offer delivered within a second, on the real broker and
FerretDB; consent, do-not-contact, quiet hours, frequency caps and suitability suppress the
offer (and the suppression is recorded); a redelivered SalaryPaid makes no second offer."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.integration.harness import Engines, eventually
from tests.integration.test_marketing_support import (
    DISCLOSURE,
    NOON_SHANGHAI,
    Clock,
    MarketingReader,
    Upstream,
    create_marketing_topics,
    marketing_settings,
    post,
    put,
    running_marketing,
)
from zerocontact.marketing.domain.contact import Caps
from zerocontact.platform.ids import new_id
from zerocontact.platform.money import Money

EMPLOYER = "ent-employer-1"


async def _setup_campaign(client: Any, min_salary_minor: int) -> str:
    await put(
        client,
        "/v1/products/wealth-r2",
        {
            "product_id": "wealth-r2",
            "kind": "wealth",
            "name": "稳健理财",
            "risk_level": 2,
        },
    )
    created = await post(
        client,
        "/v1/campaigns",
        {
            "name": "salary day",
            "goal": "wealth sign-ups",
            "budget_minor": 1_000_000,
            "cost_per_contact_minor": 5,
            "product_id": "wealth-r2",
            "holdout_percent": 0,
            "variants": [
                {
                    "id": "push",
                    "channel": "app_push",
                    "title": "工资到账",
                    "body": "稳健理财，期限灵活。" + DISCLOSURE,
                }
            ],
            "trigger": {"kind": "salary_paid", "min_month_salary_minor": min_salary_minor},
        },
    )
    assert created.status_code == 201, created.text
    cid: str = created.json()["id"]
    reviewed = await post(client, f"/v1/campaigns/{cid}/review")
    assert reviewed.json()["status"] == "pending_approval", reviewed.text
    approved = await post(client, f"/v1/campaigns/{cid}/approve", operator="bob")
    assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
    return cid


async def test_salary_paid_triggers_a_suitable_compliant_offer_within_a_second(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    topics = await create_marketing_topics(create_topic)
    clock = Clock()
    settings = marketing_settings(engines, topics, unique_name)
    # One push a day, so the second salary of the capped party is suppressed.
    caps = Caps(per_day={"app_push": 1}, per_week={"app_push": 5})
    reader = MarketingReader(engines.kafka_bootstrap, topics.marketing)
    upstream = Upstream(engines.kafka_bootstrap, topics)
    await reader.start()
    await upstream.start()
    try:
        async with running_marketing(settings, clock, caps) as svc:
            c = svc.client
            cid = await _setup_campaign(c, min_salary_minor=800_000)
            parties = {
                name: f"party-{name}-{new_id()[-8:]}"
                for name in ("ok", "quiet", "noconsent", "dnc", "unsuitable", "low", "capped")
            }
            cards = {name: f"622202******{1000 + i}" for i, name in enumerate(parties)}
            for name, party in parties.items():
                await put(
                    c,
                    "/v1/payee-links",
                    {"employer_id": EMPLOYER, "card_masked": cards[name], "party_id": party},
                )
                prefs: dict[str, Any] = {"consented_channels": ["app_push"]}
                if name == "quiet":
                    prefs |= {"quiet_start": "11:00", "quiet_end": "13:00"}
                if name == "noconsent":
                    prefs = {"consented_channels": ["sms"]}
                if name == "dnc":
                    prefs |= {"do_not_contact": True}
                await put(c, f"/v1/parties/{party}/preferences", prefs)
                grade = 1 if name == "unsuitable" else 3
                r = await post(c, f"/v1/parties/{party}/risk-tolerance", {"grade": grade})
                assert r.status_code == 200, r.text

            async def graded() -> bool:
                for party in parties.values():
                    r = await c.get(f"/v1/parties/{party}/profile")
                    if r.status_code != 200 or r.json()["risk_grade"] is None:
                        return False
                return True

            await eventually(graded, within_s=30)

            salary = Money.of("9000.00", "CNY")
            # The measured path: SalaryPaid produced -> OfferInteraction(delivered) consumed.
            started = time.monotonic()
            await upstream.salary_paid(EMPLOYER, cards["ok"], salary, NOON_SHANGHAI)

            async def delivered() -> Any:
                return reader.of("offer_interaction", party_id=parties["ok"], stage="delivered")

            seen = await eventually(delivered, within_s=10, interval=0.005)
            latency = seen[0].at - started
            assert latency < 1.0, f"salary -> delivered took {latency:.3f}s"
            sent = reader.of("offer_sent", party_id=parties["ok"])
            assert len(sent) == 1 and sent[0].event.campaign_id == cid
            assert sent[0].event.cause == "salary_paid" and sent[0].event.product_id == "wealth-r2"

            # The same SalaryPaid again (redelivery, same ce_id): no second offer.
            eid = await upstream.salary_paid(EMPLOYER, cards["capped"], salary, NOON_SHANGHAI)
            await upstream.salary_paid(
                EMPLOYER, cards["capped"], salary, NOON_SHANGHAI, event_id=eid
            )
            # A second salary the same day for the capped party: over the daily push cap.
            await upstream.salary_paid(
                EMPLOYER, cards["capped"], Money.of("100.00", "CNY"), NOON_SHANGHAI
            )
            for name in ("quiet", "noconsent", "dnc", "unsuitable"):
                await upstream.salary_paid(EMPLOYER, cards[name], salary, NOON_SHANGHAI)
            await upstream.salary_paid(
                EMPLOYER, cards["low"], Money.of("7999.99", "CNY"), NOON_SHANGHAI
            )
            # A salary whose payee nobody linked: nothing happens (no party to offer to).
            await upstream.salary_paid(EMPLOYER, "999999******0000", salary, NOON_SHANGHAI)

            expected = {
                "quiet": "quiet_hours",
                "noconsent": "no_consent",
                "dnc": "do_not_contact",
                "unsuitable": "unsuitable",
                "capped": "frequency_cap",
            }

            async def all_suppressed() -> bool:
                for name, reason in expected.items():
                    r = await c.get(f"/v1/parties/{parties[name]}/suppressions")
                    if [s["reason"] for s in r.json()] != [reason]:
                        return False
                return True

            await eventually(all_suppressed, within_s=15)
            for name, reason in expected.items():
                await eventually(lambda n=name: _has(reader, parties[n]), within_s=5)
                events = reader.of("contact_suppressed", party_id=parties[name])
                assert [e.event.reason for e in events] == [reason]

            # The capped party got exactly one offer; the low earner none, and no suppression.
            async def profile_of(name: str) -> Any:
                return (await c.get(f"/v1/parties/{parties[name]}/profile")).json()

            await eventually(lambda: _salaries(c, parties["low"]), within_s=10)
            assert len(reader.of("offer_sent", party_id=parties["capped"])) == 1
            assert reader.of("offer_sent", party_id=parties["low"]) == []
            assert (await c.get(f"/v1/parties/{parties['low']}/suppressions")).json() == []
            capped = await profile_of("capped")
            # 9,000 once (the redelivery was ignored) + 100 = 9,100.00 this month.
            assert capped["salary_by_month_minor"] == {"202611": 910_000}
            for name in expected.keys() - {"capped"}:
                assert reader.of("offer_sent", party_id=parties[name]) == []
            # The quiet party is reachable once its quiet hours are over.
            clock.now = NOON_SHANGHAI.replace(hour=6)  # 14:00 in Shanghai
            await upstream.salary_paid(EMPLOYER, cards["quiet"], salary, clock.now)
            await eventually(
                lambda: _async(
                    reader.of("offer_interaction", party_id=parties["quiet"], stage="delivered")
                ),
                within_s=10,
            )
            # Payroll names the payee's party (the employer gave its customer id): no link
            # needed, the masked card is not even looked up.
            direct = f"party-direct-{new_id()[-8:]}"
            await put(c, f"/v1/parties/{direct}/preferences", {"consented_channels": ["app_push"]})
            r = await post(c, f"/v1/parties/{direct}/risk-tolerance", {"grade": 3})
            assert r.status_code == 200, r.text

            async def direct_graded() -> bool:
                r = await c.get(f"/v1/parties/{direct}/profile")
                return r.status_code == 200 and r.json()["risk_grade"] is not None

            await eventually(direct_graded, within_s=30)
            await upstream.salary_paid(
                EMPLOYER, "622202******7777", salary, clock.now, payee_party_id=direct
            )
            await eventually(
                lambda: _async(reader.of("offer_interaction", party_id=direct, stage="delivered")),
                within_s=10,
            )
            print(f"salary -> delivered: {latency * 1000:.1f} ms")
    finally:
        await upstream.stop()
        await reader.stop()


async def _async(value: Any) -> Any:
    return value


async def _has(reader: MarketingReader, party: str) -> bool:
    return bool(reader.of("contact_suppressed", party_id=party))


async def _salaries(client: Any, party: str) -> bool:
    r = await client.get(f"/v1/parties/{party}/profile")
    return r.status_code == 200 and r.json()["salary_total_minor"] == 799_999


async def test_loan_reminder_and_studio_follow_up(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
) -> None:
    """Loan approved and not accepted within 1 h → reminder (then acceptance converts);
    studio viewer clicked a product card → follow-up. The clock moves; nothing sleeps 1 h."""
    from datetime import timedelta

    from zerocontact.loan.v1 import events_pb2 as loan_pb

    topics = await create_marketing_topics(create_topic)
    clock = Clock()
    settings = marketing_settings(engines, topics, unique_name).model_copy(
        update={"reminder_poll_s": 0.2}
    )
    reader = MarketingReader(engines.kafka_bootstrap, topics.marketing)
    upstream = Upstream(engines.kafka_bootstrap, topics)
    await reader.start()
    await upstream.start()
    try:
        async with running_marketing(settings, clock) as svc:
            c = svc.client
            await put(
                c,
                "/v1/products/loan-1",
                {
                    "product_id": "loan-1",
                    "kind": "loan",
                    "name": "薪享贷",
                    "risk_level": 1,
                    "annual_rate": "7.2%",
                },
            )
            await put(
                c,
                "/v1/products/wealth-r2",
                {"product_id": "wealth-r2", "kind": "wealth", "name": "稳健理财", "risk_level": 2},
            )
            ids = {}
            for name, product, trigger, body in (
                (
                    "reminder",
                    "loan-1",
                    {"kind": "loan_not_accepted", "after_minutes": 60},
                    "您的贷款额度已批，年化利率7.2%，记得确认。",
                ),
                (
                    "follow",
                    "wealth-r2",
                    {"kind": "studio_card_clicked", "product_id": "wealth-r2"},
                    "您关注的稳健理财。" + DISCLOSURE,
                ),
            ):
                r = await post(
                    c,
                    "/v1/campaigns",
                    {
                        "name": name,
                        "goal": "g",
                        "budget_minor": 1,
                        "product_id": product,
                        "holdout_percent": 0,
                        "variants": [
                            {"id": "p", "channel": "app_push", "title": "提醒", "body": body}
                        ],
                        "trigger": trigger,
                    },
                )
                ids[name] = r.json()["id"]
                assert (await post(c, f"/v1/campaigns/{ids[name]}/review")).json()[
                    "status"
                ] == "pending_approval"
                assert (
                    await post(c, f"/v1/campaigns/{ids[name]}/approve", operator="bob")
                ).status_code == 200
            party = f"party-loan-{new_id()[-8:]}"
            await put(c, f"/v1/parties/{party}/preferences", {"consented_channels": ["app_push"]})
            assert (
                await post(c, f"/v1/parties/{party}/risk-tolerance", {"grade": 2})
            ).status_code == 200
            w = loan_pb.LoanEvent()
            a = w.loan_approved
            a.application_id, a.party_id, a.annual_rate, a.term_months = "app-1", party, "7.2%", 12
            a.offered_amount.CopyFrom(Money.of("30000.00", "CNY").to_proto())
            a.decided_at.FromDatetime(NOON_SHANGHAI)
            await upstream.send(topics.loan, party, w)

            async def approved_seen() -> bool:
                r = await c.get(f"/v1/parties/{party}/profile")
                return (
                    r.status_code == 200
                    and "app-1" in r.json()["loans"]
                    and r.json()["risk_grade"] == 2
                )

            await eventually(approved_seen, within_s=15)
            clock.now = NOON_SHANGHAI + timedelta(minutes=59)
            await _pause(0.6)
            assert reader.of("offer_sent", party_id=party) == []
            clock.now = NOON_SHANGHAI + timedelta(minutes=61)
            await eventually(
                lambda: _async(
                    reader.of("offer_sent", party_id=party, campaign_id=ids["reminder"])
                ),
                within_s=10,
            )
            accepted = loan_pb.LoanEvent()
            acc = accepted.loan_offer_accepted
            acc.application_id, acc.loan_id, acc.party_id = "app-1", "loan-1", party
            acc.accepted_at.FromDatetime(clock.now)
            await upstream.send(topics.loan, party, accepted)

            async def converted() -> Any:
                result = (await c.get(f"/v1/campaigns/{ids['reminder']}/evaluation")).json()
                return result["funnel"]["converted"] == 1

            await eventually(converted, within_s=10)
            await _pause(0.6)  # no second reminder
            assert len(reader.of("offer_sent", party_id=party, campaign_id=ids["reminder"])) == 1

            # A studio card click → the follow-up offer.
            await put(c, "/v1/studios/s1", {"studio_id": "s1", "name": "studio"})
            assert (
                await post(
                    c,
                    "/v1/studios/s1/sessions",
                    {"session_id": "s1-1", "host": "h", "starts_at": clock.now.isoformat()},
                )
            ).status_code == 201
            click = {
                "event_id": new_id(),
                "party_id": party,
                "kind": "card_clicked",
                "product_id": "wealth-r2",
                "at": clock.now.isoformat(),
            }
            assert (await c.post("/v1/studio-sessions/s1-1/events", json=click)).status_code == 200
            await eventually(
                lambda: _async(
                    reader.of(
                        "offer_interaction",
                        party_id=party,
                        campaign_id=ids["follow"],
                        stage="delivered",
                    )
                ),
                within_s=10,
            )
    finally:
        await upstream.stop()
        await reader.stop()


async def _pause(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
