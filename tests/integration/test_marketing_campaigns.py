"""Campaigns on the real engines: a forbidden claim blocks the campaign with its findings (no
approval, no send); bad rules and content are 422 problems that change nothing; four eyes;
idempotency keys; and an evaluation on a synthetic audience with known conversion rates
matches an independent calculation (scipy)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from scipy import stats

from tests.integration.catalog_keys import check_topic_holding
from tests.integration.harness import Engines, eventually
from tests.integration.test_marketing_support import (
    DISCLOSURE,
    Clock,
    MarketingReader,
    Upstream,
    create_marketing_topics,
    marketing_settings,
    post,
    put,
    running_marketing,
)
from zerocontact.marketing.domain.evaluation import in_holdout
from zerocontact.platform.ids import new_id


async def _product(client: Any) -> None:
    await put(
        client,
        "/v1/products/wealth-r3",
        {
            "product_id": "wealth-r3",
            "kind": "wealth",
            "name": "进取理财",
            "risk_level": 3,
        },
    )


async def test_forbidden_claim_blocks_the_campaign_with_its_findings(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    reader = MarketingReader(engines.kafka_bootstrap, topics.marketing)
    await reader.start()
    try:
        async with running_marketing(settings, Clock()) as svc:
            c = svc.client
            await _product(c)
            await put(
                c,
                "/v1/segments/everyone",
                {
                    "segment_id": "everyone",
                    "name": "all",
                    "rule": {"attr": "party_kind", "op": "==", "value": "customer"},
                },
            )
            body = "本产品保本保收益，收益最高！"  # noqa: RUF001 (Chinese punctuation)
            created = await post(
                c,
                "/v1/campaigns",
                {
                    "name": "bad",
                    "goal": "g",
                    "budget_minor": 100,
                    "product_id": "wealth-r3",
                    "segment_id": "everyone",
                    "holdout_percent": 10,
                    "variants": [{"id": "sms1", "channel": "sms", "title": "理财", "body": body}],
                },
            )
            assert created.status_code == 201, created.text
            cid = created.json()["id"]
            reviewed = (await post(c, f"/v1/campaigns/{cid}/review")).json()
            assert reviewed["status"] == "blocked"
            text = "理财\n" + body
            found = [(f["rule"], f["text"], f["start"], f["end"]) for f in reviewed["findings"]]
            assert found == [
                ("missing_risk_disclosure", "", -1, -1),
                ("forbidden_claim", "保本", text.index("保本"), text.index("保本") + 2),
                ("forbidden_claim", "保收益", text.index("保收益"), text.index("保收益") + 3),
                ("absolute_superlative", "最高", text.index("最高"), text.index("最高") + 2),
            ]
            refused = await post(c, f"/v1/campaigns/{cid}/approve", operator="bob")
            assert refused.status_code == 409
            problem = refused.json()
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert problem["title"] == "compliance_blocked" and len(problem["findings"]) == 4
            assert (await post(c, f"/v1/campaigns/{cid}/execute")).status_code == 409
            assert (await c.get(f"/v1/campaigns/{cid}")).json()["status"] == "blocked"
            await eventually(
                lambda: _async(reader.of("campaign_reviewed", campaign_id=cid)), within_s=10
            )
            event = reader.of("campaign_reviewed", campaign_id=cid)[0].event
            assert (
                event.status == "blocked"
                and [f.rule for f in event.findings][1] == "forbidden_claim"
            )

            # Fixed content passes review; the author may not approve it, someone else may.
            fixed = await c.put(
                f"/v1/campaigns/{cid}/design",
                json={
                    "variants": [
                        {
                            "id": "sms1",
                            "channel": "sms",
                            "title": "理财",
                            "body": "进取理财。" + DISCLOSURE,
                        }
                    ]
                },
                headers={"Idempotency-Key": "design-fix-1"},
            )
            assert fixed.status_code == 200 and fixed.json()["status"] == "draft"
            assert (await post(c, f"/v1/campaigns/{cid}/review")).json()[
                "status"
            ] == "pending_approval"
            # The author is whoever created it (the client's default operator, alice): her own
            # approval is refused, whatever the request says.
            assert created.json()["author"] == "alice"
            own = await post(c, f"/v1/campaigns/{cid}/approve")
            assert own.status_code == 403 and own.json()["title"] == "approver_is_author"
            assert (await c.get(f"/v1/campaigns/{cid}")).json()["status"] == "pending_approval"
            ok = await post(c, f"/v1/campaigns/{cid}/approve", key="approve-key-1", operator="bob")
            assert ok.json()["status"] == "approved" and ok.json()["approver"] == "bob"
            assert ok.json()["author"] == "alice" and ok.json()["reviewed_by"] == "alice"
            again = await post(
                c, f"/v1/campaigns/{cid}/approve", key="approve-key-1", operator="bob"
            )
            assert again.json() == ok.json()
            other = await post(
                c, f"/v1/campaigns/{cid}/approve", key="approve-key-1", operator="carol"
            )
            assert other.status_code == 422 and other.json()["title"] == "idempotency_key_reused"
            await eventually(
                lambda: _async(reader.of("campaign_reviewed", campaign_id=cid, status="approved")),
                within_s=10,
            )
            approved_event = reader.of("campaign_reviewed", campaign_id=cid, status="approved")
            assert [e.event.approver for e in approved_event] == ["bob"]
    finally:
        await reader.stop()


async def test_bad_rules_and_content_are_clear_422s_and_change_nothing(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    async with running_marketing(settings, Clock()) as svc:
        c = svc.client
        await _product(c)
        h = {"Idempotency-Key": "bad-input-key"}
        bad_rules: list[Any] = [
            {"attr": "balance", "op": ">", "value": 1},
            {"count": "salary_paid", "window_days": 400, "op": ">", "value": 1},
            {"all": []},
            "__import__('os').system('true')",
        ]
        for rule in bad_rules:
            r = await c.put(
                "/v1/segments/s1", json={"segment_id": "s1", "name": "x", "rule": rule}, headers=h
            )
            assert r.status_code == 422, r.text
            assert r.json()["errors"] or r.json()["detail"]
        assert (await c.get("/v1/campaigns/none")).status_code == 404
        base = {
            "name": "c",
            "goal": "g",
            "budget_minor": 1,
            "product_id": "wealth-r3",
            "holdout_percent": 10,
            "trigger": {"kind": "salary_paid", "min_month_salary_minor": 1},
            "variants": [{"id": "v", "channel": "app_push", "title": "t", "body": "b"}],
        }
        for change in (
            {"variants": []},
            {"variants": [{"id": "v", "channel": "fax", "title": "t", "body": "b"}]},
            {"variants": [{"id": "v", "channel": "sms", "title": "", "body": "b"}]},
            {"holdout_percent": 80},
            {"budget_minor": -1},
            {"trigger": {"kind": "birthday"}},
            {"trigger": None, "segment_id": None},
            {"product_id": "no-such-product"},
        ):
            r = await c.post(
                "/v1/campaigns",
                json=base | change,
                headers={"Idempotency-Key": new_id().replace("-", "")[:20]},
            )
            assert r.status_code == 422, (change, r.text)
        missing_key = await c.post("/v1/campaigns", json=base)
        assert missing_key.status_code == 422
        bad_prefs = await c.put(
            "/v1/parties/p1/preferences",
            json={"consented_channels": ["app_push"], "quiet_start": "25:00"},
            headers=h,
        )
        assert bad_prefs.status_code == 422
        bad_zone = await c.put(
            "/v1/parties/p1/preferences",
            json={"consented_channels": [], "time_zone": "Mars/Base"},
            headers=h,
        )
        assert bad_zone.status_code == 422
        assert (
            await c.post("/v1/parties/p1/risk-tolerance", json={"grade": 9}, headers=h)
        ).status_code == 422
        db = svc.app.state.deps.repo
        assert await db.campaigns.count_documents({}) == 0
        assert await db.segments.count_documents({}) == 0
        assert await db.preferences.count_documents({}) == 0


async def test_evaluation_matches_an_independent_calculation(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    """300 synthetic customers; conversions planted at 30 % (treatment) and 15 % (holdout)."""
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    upstream = Upstream(engines.kafka_bootstrap, topics)
    await upstream.start()
    try:
        async with running_marketing(settings, Clock()) as svc:
            c = svc.client
            await _product(c)
            await put(
                c,
                "/v1/segments/customers",
                {
                    "segment_id": "customers",
                    "name": "customers",
                    "rule": {"attr": "risk_grade", "op": ">=", "value": 3},
                },
            )
            parties = [f"syn-{i:04d}-{new_id()[-6:]}" for i in range(300)]
            sem = asyncio.Semaphore(8)

            async def prepare(party: str) -> None:
                async with sem:
                    await put(
                        c, f"/v1/parties/{party}/preferences", {"consented_channels": ["in_app"]}
                    )
                    r = await post(c, f"/v1/parties/{party}/risk-tolerance", {"grade": 3})
                    assert r.status_code == 200

            await asyncio.gather(*(prepare(p) for p in parties))
            repo = svc.app.state.deps.repo

            async def all_in_segment() -> bool:
                return await repo.profiles.count_documents({"segments.customers": True}) == len(
                    parties
                )

            await eventually(all_in_segment, within_s=120, interval=0.5)
            created = await post(
                c,
                "/v1/campaigns",
                {
                    "name": "eval",
                    "goal": "g",
                    "budget_minor": 100_000,
                    "cost_per_contact_minor": 10,
                    "product_id": "wealth-r3",
                    "segment_id": "customers",
                    "holdout_percent": 25,
                    "variants": [
                        {
                            "id": "card",
                            "channel": "in_app",
                            "title": "进取理财",
                            "body": "了解一下。" + DISCLOSURE,
                        }
                    ],
                },
            )
            cid = created.json()["id"]
            assert (await post(c, f"/v1/campaigns/{cid}/review")).json()[
                "status"
            ] == "pending_approval"
            assert (
                await post(c, f"/v1/campaigns/{cid}/approve", operator="bob")
            ).status_code == 200
            run = await post(c, f"/v1/campaigns/{cid}/execute")
            assert run.status_code == 202, run.text

            async def finished() -> Any:
                doc = (await c.get(f"/v1/campaigns/{cid}")).json()
                return doc["run"]["outcomes"] if doc["run"]["state"] == "done" else None

            outcomes = await eventually(finished, within_s=120, interval=0.5)
            holdout = [p for p in parties if in_holdout(cid, p, 25)]
            treated = [p for p in parties if p not in holdout]
            assert outcomes == {"delivered": len(treated), "holdout": len(holdout)}
            # Known rates: the first 30 % of the treatment and 15 % of the holdout convert.
            converts = treated[: round(0.30 * len(treated))] + holdout[: round(0.15 * len(holdout))]

            async def convert(party: str) -> None:
                async with sem:
                    r = await post(
                        c,
                        f"/v1/campaigns/{cid}/interactions",
                        {"party_id": party, "stage": "converted"},
                    )
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(convert(p) for p in converts))
            result = (await c.get(f"/v1/campaigns/{cid}/evaluation")).json()
            u = result["uplift"]
            n_t, x_t = len(treated), round(0.30 * len(treated))
            n_h, x_h = len(holdout), round(0.15 * len(holdout))
            assert (
                u["treatment_n"],
                u["treatment_conversions"],
                u["holdout_n"],
                u["holdout_conversions"],
            ) == (n_t, x_t, n_h, x_h)
            # Independent: chi-square of the 2x2 table without continuity correction equals the
            # pooled two-proportion z-test (chi2 = z^2, same two-sided p).
            chi2, p_value, _, _ = stats.chi2_contingency(
                [[x_t, n_t - x_t], [x_h, n_h - x_h]], correction=False
            )
            assert u["z"] ** 2 == pytest_approx(chi2)
            assert u["p_value"] == pytest_approx(p_value)
            p_t, p_h = x_t / n_t, x_h / n_h
            se = (p_t * (1 - p_t) / n_t + p_h * (1 - p_h) / n_h) ** 0.5
            crit = stats.norm.ppf(0.975)
            assert u["ci_low"] == pytest_approx(p_t - p_h - crit * se)
            assert u["ci_high"] == pytest_approx(p_t - p_h + crit * se)
            assert u["significant"] == (p_value < 0.05)
            assert result["funnel"]["sent"] == n_t and result["funnel"]["delivered"] == n_t
            assert result["funnel"]["converted"] == x_t
            assert result["cost_minor"] == 10 * n_t
            assert result["cost_per_conversion_minor"] == round(10 * n_t / x_t)
            print(
                f"uplift {u['uplift']:.4f} z {u['z']:.4f} p {u['p_value']:.6f} (scipy p {p_value:.6f})"
            )
            # Every record the service wrote for them is keyed as proto/topics.toml says.
            expected = {"OfferSent", "OfferConverted", "CampaignReviewed"}
            checked = await check_topic_holding(
                engines.kafka_bootstrap, topics.marketing, "marketing.events.v1", expected
            )
            assert expected <= set(checked), checked
    finally:
        await upstream.stop()


def pytest_approx(value: float) -> Any:
    import pytest

    return pytest.approx(value, rel=1e-9, abs=1e-12)


async def _async(value: Any) -> Any:
    return value
