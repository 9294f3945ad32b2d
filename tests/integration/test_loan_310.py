"""The 310 path on real Kafka and FerretDB: apply → assessment → decision → acceptance →
disbursement, declines with reasons, exactly-once payouts, repayment and overdue events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, RunningApp, eventually
from tests.integration.spans import trace_id
from tests.integration.test_loan_support import (
    OPERATOR_KEY,
    EventBus,
    LoanTopicReader,
    Tokens,
    Topics,
    apply_for_loan,
    create_loan_topics,
    loan_settings,
    running_loan,
    wait_state,
)
from zerocontact.identity.domain.authentication import Aal
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.loan import bookkeeping, handlers
from zerocontact.loan.settings import LoanSettings
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import Ledger, Leg, Side
from zerocontact.platform.money import Money
from zerocontact.signals.v1 import risk_pb2


async def funder_funds(ledger: Ledger, funder: str) -> Money:
    """A funder's lendable funds over all its shards."""
    total = Money.zero("CNY")
    for account in bookkeeping.funding_shards(funder):
        total = total + await ledger.balance(account)
    return total


@dataclass
class LoanEnv:
    app: RunningApp
    bus: EventBus
    reader: LoanTopicReader
    tokens: Tokens
    topics: Topics
    settings: LoanSettings
    ledger: Ledger
    db: Any


@pytest.fixture
async def env(
    engines: Engines,
    kafka_admin: Any,
    unique_name: Callable[[str], str],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[LoanEnv]:
    topics = await create_loan_topics(kafka_admin, unique_name)
    database = unique_name("loan").replace("-", "_")[:60]
    settings = loan_settings(engines, topics, database, unique_name("group"))
    tokens = Tokens()
    bus = EventBus(engines.kafka_bootstrap, topics)
    reader = LoanTopicReader(engines.kafka_bootstrap, topics.loan)
    await bus.start()
    await reader.start()
    db = mongo_client[database]
    try:
        async with running_loan(settings, tokens) as app:
            yield LoanEnv(app, bus, reader, tokens, topics, settings, Ledger(db), db)
    finally:
        await reader.stop()
        await bus.stop()
        report = await Ledger(db).check_invariants()
        await mongo_client.drop_database(database)
        assert report.ok, report.problems  # the ledger balances after every test


async def approved_application(
    env: LoanEnv, party: str, amount: str = "50000.00"
) -> dict[str, Any]:
    await env.bus.register_customer(party)
    r = await eventually(lambda: _apply_when_known(env, party, amount))
    submitted = await env.reader.wait_for(
        "loan_application_submitted", application_id=r["application_id"]
    )
    await env.bus.assess(submitted[0].message, submitted[0].event_id)
    return await wait_state(env.app, env.tokens, r["application_id"], party, "APPROVED")


async def _apply_when_known(env: LoanEnv, party: str, amount: str) -> dict[str, Any] | None:
    # The party view fills from identity's topic asynchronously: 403 until it has arrived.
    r = await apply_for_loan(env.app, env.tokens, party, amount=amount)
    if r.status_code == 403:
        return None
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


async def accept(
    env: LoanEnv, application_id: str, party: str, key: str = "accept-key-1", aal: Aal = Aal.AAL2
) -> Any:
    return await env.app.client.post(
        f"/v1/applications/{application_id}/acceptance",
        headers=env.tokens.headers(party, key=key, aal=aal),
    )


async def test_the_310_path_from_application_to_disbursement(env: LoanEnv) -> None:
    party = new_id()
    await env.bus.register_customer(party)
    application = await eventually(lambda: _apply_when_known(env, party, "50000.00"))
    assert application["state"] == "AWAITING_RISK"

    submitted = await env.reader.wait_for(
        "loan_application_submitted", application_id=application["application_id"]
    )
    assert submitted[0].key == party
    assert submitted[0].message.amount.minor_units == 5_000_000
    assert submitted[0].message.device_id == "device-1"
    await asyncio.sleep(0.5)  # no decision without an assessment
    r = await env.app.client.get(
        f"/v1/applications/{application['application_id']}",
        headers=env.tokens.headers(party, aal=Aal.AAL1),
    )
    assert r.json()["state"] == "AWAITING_RISK"

    await env.bus.assess(submitted[0].message, submitted[0].event_id, score=140)
    approved = await wait_state(
        env.app, env.tokens, application["application_id"], party, "APPROVED"
    )
    assert approved["offered_amount"] == "50000.00"
    assert approved["annual_rate"] == "0.0960"
    assert [x["code"] for x in approved["reasons"]] == ["RISK_BAND_LOW", "RATE_DISCOUNT_APPLIED"]
    event = (
        await env.reader.wait_for("loan_approved", application_id=application["application_id"])
    )[0]
    assert event.message.risk_score == 140 and event.message.annual_rate == "0.0960"
    assert event.message.credit_limit.minor_units == 30_000_000

    # One factor is not enough to take the money.
    weak = await accept(env, application["application_id"], party, aal=Aal.AAL1)
    assert weak.status_code == 403 and weak.json()["title"] == "step_up_required"
    stranger = await accept(env, application["application_id"], new_id())
    assert stranger.status_code == 403

    r = await accept(env, application["application_id"], party)
    assert r.status_code == 200, r.text
    loan = r.json()
    assert loan["state"] == "DISBURSED"
    assert [(f["funder_id"], f["amount"]) for f in loan["funders"]] == [
        ("partner-bank-a", "35000.00"),
        ("partner-bank-b", "15000.00"),
    ]
    assert len(loan["schedule"]) == 12
    disbursed = (await env.reader.wait_for("loan_disbursed", loan_id=loan["loan_id"]))[0]
    assert disbursed.message.principal.minor_units == 5_000_000
    assert [
        (f.funder_id, f.share_bps, f.amount.minor_units) for f in disbursed.message.funders
    ] == [
        ("partner-bank-a", 7000, 3_500_000),
        ("partner-bank-b", 3000, 1_500_000),
    ]
    assert disbursed.message.rail_reference.startswith("SIM-")
    accepted = await env.reader.wait_for("loan_offer_accepted", loan_id=loan["loan_id"])
    # The acceptance and the payout continue the application's trace (submission → risk
    # assessment → decision → disbursement); the accepting request is linked to it.
    assert submitted[0].traceparent and disbursed.traceparent and accepted[0].traceparent
    assert trace_id(disbursed.traceparent) == trace_id(submitted[0].traceparent)
    assert trace_id(accepted[0].traceparent) == trace_id(submitted[0].traceparent)

    assert await env.ledger.balance(f"settlement:{party}") == Money.of("50000.00", "CNY")
    assert await funder_funds(env.ledger, "partner-bank-a") == Money.of("499965000.00", "CNY")
    shard = bookkeeping.funding("partner-bank-a", bookkeeping.shard_of(loan["loan_id"]))
    assert await env.ledger.balance(shard) == Money.of("62465000.00", "CNY")  # 500 M / 8 - 35 000
    assert await env.ledger.balance(f"clearing:disburse:{loan['loan_id']}") == Money.zero("CNY")


async def test_the_310_path_is_measured_once_on_metrics(env: LoanEnv) -> None:
    before = await _metrics(env)
    party = new_id()
    await env.bus.register_customer(party)
    application = await eventually(lambda: _apply_when_known(env, party, "20000.00"))
    app_id = application["application_id"]
    submitted = await env.reader.wait_for("loan_application_submitted", application_id=app_id)
    for _ in range(2):  # a redelivered assessment decides nothing twice
        await env.bus.assess(submitted[0].message, submitted[0].event_id, score=140)
    await wait_state(env.app, env.tokens, app_id, party, "APPROVED")
    for key in ("accept-key-1", "accept-key-1", "accept-key-2"):  # retried acceptances
        assert (await accept(env, app_id, party, key=key)).status_code == 200
    await asyncio.sleep(0.5)  # a late second decision would show up here

    after = await _metrics(env)
    delta = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    assert delta['zc_loan_applications_total{outcome="approved"}'] == 1
    assert delta["zc_loan_decision_seconds_count"] == 1
    assert delta["zc_loan_disbursement_seconds_count"] == 1
    assert delta['zc_loan_disbursements_total{outcome="paid"}'] == 1
    # application received -> paid out, on this machine well within the 10 s bucket
    assert delta['zc_loan_disbursement_seconds_bucket{le="10.0"}'] == 1
    acceptance = "/v1/applications/{application_id}/acceptance"
    assert delta[f'zc_http_requests_total{{method="POST",route="{acceptance}",status="200"}}'] == 3
    assert (
        delta[f'zc_http_request_duration_seconds_count{{method="POST",route="{acceptance}"}}'] == 3
    )
    assert not any(app_id in name or party in name for name in after)  # templates, not paths
    assert after['zc_engine_up{engine="kafka"}'] == 1
    assert after['zc_engine_up{engine="mongodb"}'] == 1


async def _metrics(env: LoanEnv) -> dict[str, float]:
    """The service's /metrics as ``{'name{label="value",...}': value}``."""
    response = await env.app.client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name + ("{" + ",".join(f'{k}="{v}"' for k, v in sample.labels.items()) + "}"
                       if sample.labels else ""): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }  # fmt: skip


async def test_a_risky_party_is_declined_with_readable_reasons(env: LoanEnv) -> None:
    party = new_id()
    await env.bus.register_customer(party)
    application = await eventually(lambda: _apply_when_known(env, party, "20000.00"))
    submitted = await env.reader.wait_for(
        "loan_application_submitted", application_id=application["application_id"]
    )
    shared = risk_pb2.RuleResult(
        name="device_shared_by_many_parties",
        threshold="3",
        observed="7",
        triggered=True,
        points=500,
        description="device used by 7 parties in 24 h (limit 3)",
    )
    await env.bus.assess(
        submitted[0].message,
        submitted[0].event_id,
        band=risk_pb2.RISK_BAND_HIGH,
        score=810,
        rules=(shared,),
    )
    declined = await wait_state(
        env.app, env.tokens, application["application_id"], party, "DECLINED"
    )
    assert [x["code"] for x in declined["reasons"]] == [
        "RISK_BAND_HIGH",
        "RISK_RULE_DEVICE_SHARED_BY_MANY_PARTIES",
    ]
    assert "7 parties" in declined["reasons"][1]["description"]
    event = (
        await env.reader.wait_for("loan_declined", application_id=application["application_id"])
    )[0]
    assert event.message.risk_band == risk_pb2.RISK_BAND_HIGH
    assert next(x.code for x in event.message.reasons) == "RISK_BAND_HIGH"
    refused = await accept(env, application["application_id"], party)
    assert refused.status_code == 409 and refused.json()["title"] == "offer_not_available"

    # An open risk alert declines even a low-band assessment; a redelivered assessment and a
    # second one for the same application change nothing.
    await env.bus.alert(party, "device shared by 9 parties")
    await asyncio.sleep(1)
    second = await eventually(lambda: _apply_when_known(env, party, "20000.00"))
    sub2 = await env.reader.wait_for(
        "loan_application_submitted", application_id=second["application_id"]
    )
    first_id = await env.bus.assess(sub2[0].message, sub2[0].event_id)
    await env.bus.assess(sub2[0].message, sub2[0].event_id, event_id=first_id)
    await env.bus.assess(
        sub2[0].message, sub2[0].event_id, band=risk_pb2.RISK_BAND_REJECT, score=999
    )
    declined2 = await wait_state(env.app, env.tokens, second["application_id"], party, "DECLINED")
    assert [x["code"] for x in declined2["reasons"]] == ["OPEN_RISK_ALERT"]
    await asyncio.sleep(1.5)
    assert len(env.reader.of("loan_declined", application_id=second["application_id"])) == 1
    stored = await env.db["applications"].find_one({"_id": second["application_id"]})
    assert stored["assessment_event_id"] == first_id


async def test_a_retried_or_redelivered_disbursement_pays_once(
    env: LoanEnv, engines: Engines
) -> None:
    party = new_id()
    approved = await approved_application(env, party, "30000.00")
    app_id = approved["application_id"]
    results = await asyncio.gather(
        accept(env, app_id, party, key="accept-key-1"),
        accept(env, app_id, party, key="accept-key-1"),
        accept(env, app_id, party, key="accept-key-2"),
    )
    assert {r.status_code for r in results} == {200}
    loan_ids = {r.json()["loan_id"] for r in results}
    assert len(loan_ids) == 1
    loan_id = loan_ids.pop()
    admin = {"X-Operator-Key": OPERATOR_KEY}
    again = await asyncio.gather(
        *(
            env.app.client.post(f"/v1/admin/loans/{loan_id}/disbursement", headers=admin)
            for _ in range(3)
        )
    )
    assert {r.json()["state"] for r in again} == {"DISBURSED"}
    assert {r.json()["rail_reference"] for r in again} == {results[0].json()["rail_reference"]}

    # Restart the service on the same database: the recovery sweep runs and pays nothing more.
    await env.app.client.aclose()
    async with running_loan(env.settings, env.tokens) as restarted:
        await asyncio.sleep(1.5)
        r = await restarted.client.post(
            f"/v1/applications/{app_id}/acceptance",
            headers=env.tokens.headers(party, key="accept-key-3"),
        )
        assert r.json()["loan_id"] == loan_id
    await asyncio.sleep(1)
    assert await env.db["rail_payments"].count_documents({}) == 1
    assert len(env.reader.of("loan_disbursed", loan_id=loan_id)) == 1
    assert len(env.reader.of("loan_offer_accepted", application_id=app_id)) == 1
    assert await env.ledger.balance(f"settlement:{party}") == Money.of("30000.00", "CNY")


async def test_a_disbursement_the_rail_could_not_take_is_finished_after_a_restart(
    engines: Engines,
    kafka_admin: Any,
    unique_name: Callable[[str], str],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    topics = await create_loan_topics(kafka_admin, unique_name)
    database = unique_name("loan").replace("-", "_")[:60]
    group = unique_name("group")
    tokens = Tokens()
    bus = EventBus(engines.kafka_bootstrap, topics)
    reader = LoanTopicReader(engines.kafka_bootstrap, topics.loan)
    await bus.start()
    await reader.start()
    db = mongo_client[database]
    party = new_id()
    try:
        down = loan_settings(
            engines, topics, database, group, rail_failure_rate=1.0, recovery_interval_s=60
        )
        async with running_loan(down, tokens) as app:
            await bus.register_customer(party)

            async def apply_known() -> dict[str, Any] | None:
                r = await apply_for_loan(app, tokens, party, amount="8000.00")
                return r.json() if r.status_code == 202 else None

            application = await eventually(apply_known)
            sub = await reader.wait_for(
                "loan_application_submitted", application_id=application["application_id"]
            )
            await bus.assess(sub[0].message, sub[0].event_id)
            await wait_state(app, tokens, application["application_id"], party, "APPROVED")
            r = await app.client.post(
                f"/v1/applications/{application['application_id']}/acceptance",
                headers=tokens.headers(party, key="accept-while-down"),
            )
            assert r.status_code == 200 and r.json()["state"] == "BOOKED"
            loan_id = r.json()["loan_id"]
        assert await db["rail_payments"].count_documents({}) == 0
        assert await Ledger(db).balance(f"settlement:{party}") == Money.zero("CNY")
        # Reserved but not paid: the funders' money waits in the loan's clearing account.
        assert await Ledger(db).balance(f"clearing:disburse:{loan_id}") == Money.of(
            "8000.00", "CNY"
        )

        up = loan_settings(engines, topics, database, group)
        async with running_loan(up, tokens):
            disbursed = await reader.wait_for("loan_disbursed", loan_id=loan_id)
        # The recovery sweep's payout continues the trace stored with the booked loan: the
        # application's.
        assert sub[0].traceparent and disbursed[0].traceparent
        assert trace_id(disbursed[0].traceparent) == trace_id(sub[0].traceparent)
        assert await db["rail_payments"].count_documents({}) == 1
        assert await Ledger(db).balance(f"settlement:{party}") == Money.of("8000.00", "CNY")
        assert len(reader.of("loan_disbursed", loan_id=loan_id)) == 1
        report = await Ledger(db).check_invariants()
        assert report.ok, report.problems
    finally:
        await reader.stop()
        await bus.stop()
        await mongo_client.drop_database(database)


async def test_repayment_and_overdue_produce_their_events(env: LoanEnv) -> None:
    party = new_id()
    approved = await approved_application(env, party, "12000.00")
    loan = (await accept(env, approved["application_id"], party)).json()
    loan_id = loan["loan_id"]
    first_due = date.fromisoformat(loan["schedule"][0]["due_date"])
    admin = {"X-Operator-Key": OPERATOR_KEY}

    scan = await env.app.client.post(
        "/v1/admin/overdue-scans",
        json={"as_of": str(first_due + timedelta(days=10))},
        headers=admin,
    )
    assert scan.json()["entered_bucket"] == [
        {"loan_id": loan_id, "bucket": "DPD_1_30", "days_past_due": 10}
    ]
    again = await env.app.client.post(
        "/v1/admin/overdue-scans",
        json={"as_of": str(first_due + timedelta(days=10))},
        headers=admin,
    )
    assert again.json()["entered_bucket"] == []
    later = await env.app.client.post(
        "/v1/admin/overdue-scans",
        json={"as_of": str(first_due + timedelta(days=35))},
        headers=admin,
    )
    assert later.json()["entered_bucket"][0]["bucket"] == "DPD_31_60"
    overdue = await env.reader.wait_for("loan_overdue", count=2, loan_id=loan_id)
    assert [o.message.days_past_due for o in overdue] == [10, 35]
    assert overdue[1].message.overdue_amount.minor_units > 0

    # A late repayment pays the penalty first; the rest of the installment follows.
    late_day = first_due + timedelta(days=35)
    r = await env.app.client.post(
        f"/v1/admin/loans/{loan_id}/repayments?as_of={late_day}",
        json={"amount": "500.00", "currency": "CNY"},
        headers={**admin, "Idempotency-Key": "repay-late-0001"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert float(body["penalty"]) > 0 and body["settled"] is False
    retry = await env.app.client.post(
        f"/v1/admin/loans/{loan_id}/repayments?as_of={late_day}",
        json={"amount": "500.00", "currency": "CNY"},
        headers={**admin, "Idempotency-Key": "repay-late-0001"},
    )
    assert retry.json() == body
    received = await env.reader.wait_for("repayment_received", loan_id=loan_id)
    assert received[0].message.days_late == 35 and received[0].message.installment_number == 1

    # Early payoff through the borrower's own API: the quote settles it. The borrower's
    # settlement account receives money from outside first (a deposit through the ledger).
    await env.ledger.open_account(
        "external:test-deposits", currency="CNY", normal_balance=Side.DEBIT, allow_negative=True
    )
    await env.ledger.post(
        f"deposit:{party}",
        [
            Leg.debit("external:test-deposits", Money.of("2000.00", "CNY")),
            Leg.credit(f"settlement:{party}", Money.of("2000.00", "CNY")),
        ],
    )
    quote = await env.app.client.get(
        f"/v1/loans/{loan_id}/payoff", headers=env.tokens.headers(party, aal=Aal.AAL1)
    )
    # The quote is as of today; the 35-days-late penalty above was accrued on a later value
    # date, so today's payoff includes it already.
    amount = quote.json()["amount"]
    paid = await env.app.client.post(
        f"/v1/loans/{loan_id}/repayments",
        json={"amount": amount, "currency": "CNY"},
        headers=env.tokens.headers(party, key="payoff-0001", aal=Aal.AAL1),
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["settled"] is True and paid.json()["loan_state"] == "SETTLED"
    settled = await env.reader.wait_for("loan_settled", loan_id=loan_id)
    assert settled[0].message.early_payoff is True
    assert await env.reader.wait_for("repayment_received", count=2, loan_id=loan_id)
    # The 20 % rate cut: the platform's subsidy account paid the funders the difference.
    subsidy = await env.ledger.balance("subsidy:platform:mybank")
    assert subsidy.minor_units > 0
    income = await env.ledger.balance("interest-income:partner-bank-a")
    assert income.minor_units > 0
    assert await funder_funds(env.ledger, "partner-bank-a") == Money.of("500000000.00", "CNY")


async def test_bad_input_is_refused_and_changes_nothing(env: LoanEnv) -> None:
    party = new_id()
    await env.bus.register_customer(party, kyc=identity_pb2.KYC_LEVEL_BASIC)
    unverified = new_id()

    async def known() -> bool:
        return await env.db["parties"].find_one({"_id": party, "kyc_level": "BASIC"}) is not None

    await eventually(known)
    base = {
        "party_id": party,
        "product_id": "own-interest-first",
        "amount": "5000.00",
        "currency": "CNY",
        "term_months": 6,
        "purpose": "stock",
        "device_id": "d-1",
    }
    headers = env.tokens.headers(party, key="bad-input-0001", aal=Aal.AAL1)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"amount": "-5.00"}, 422, "body.amount"),
        ({"amount": "0"}, 422, "body.amount"),
        ({"amount": "5000.001"}, 422, "body.amount"),
        ({"amount": "50000.01"}, 422, "body.amount"),
        ({"term_months": 13}, 422, "body.term_months"),
        ({"term_months": 0}, 422, "body.term_months"),
        ({"product_id": "no-such-product"}, 422, "body.product_id"),
        ({"currency": "usd"}, 422, "body.currency"),
        ({"currency": "USD"}, 422, "body.currency"),
    ]
    for change, status, field in cases:
        r = await env.app.client.post("/v1/applications", json=base | change, headers=headers)
        assert r.status_code == status, (change, r.text)
        problem = r.json()
        fields = [e["field"] for e in problem.get("errors", [])] or [problem.get("field")]
        assert field in fields, (change, problem)
        assert "5000.001" not in r.text and "-5.00" not in r.text
    # A verified product needs a verified party: refused once the bounded wait for a newer
    # KYC level has passed (the partner must act), with how long identity's event may take.
    wait_s = env.settings.party_wait_s
    clock = time.monotonic()
    r = await env.app.client.post(
        "/v1/applications",
        json=base | {"product_id": "merchant-310", "term_months": 12},
        headers=headers,
    )
    assert r.status_code == 403 and r.json()["title"] == "party_not_verified"
    assert r.json()["kyc_level"] == "BASIC" and r.json()["required_kyc_level"] == "VERIFIED"
    assert r.json()["retry_after_s"] == wait_s and "Retry-After" not in r.headers
    assert wait_s <= time.monotonic() - clock < wait_s + 1.5
    # A party loan has never heard of: "not yet known" (retryable), after the same bounded wait.
    clock = time.monotonic()
    r = await env.app.client.post(
        "/v1/applications",
        json=base | {"party_id": unverified},
        headers=env.tokens.headers(unverified, key="bad-input-0002", aal=Aal.AAL1),
    )
    assert r.status_code == 503 and r.json()["title"] == "party_not_yet_known", r.text
    assert r.json()["type"] == "urn:zerocontact:problem:party_not_yet_known"
    assert r.headers["Retry-After"] == "1" and r.json()["party_id"] == unverified
    assert wait_s <= time.monotonic() - clock < wait_s + 1.5
    # No token, someone else's party, no idempotency key.
    assert (
        await env.app.client.post(
            "/v1/applications", json=base, headers={"Idempotency-Key": "bad-input-0003"}
        )
    ).status_code == 401
    assert (
        await env.app.client.post(
            "/v1/applications",
            json=base,
            headers=env.tokens.headers(new_id(), key="bad-input-0004"),
        )
    ).status_code == 403
    r = await env.app.client.post("/v1/applications", json=base, headers=env.tokens.headers(party))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "header.Idempotency-Key"
    # Repayments, reports and admin calls validate too.
    assert (
        await env.app.client.post(
            f"/v1/loans/{new_id()}/repayments",
            json={"amount": "-1", "currency": "CNY"},
            headers=env.tokens.headers(party, key="bad-input-0005"),
        )
    ).status_code == 422
    assert (
        await env.app.client.post(
            f"/v1/loans/{new_id()}/repayments",
            json={"amount": "1", "currency": "CNY"},
            headers=env.tokens.headers(party, key="bad-input-0006"),
        )
    ).status_code == 404
    report = {
        "report_id": "r-1",
        "party_id": party,
        "platform_id": "tmall",
        "revenue": "-1",
        "currency": "CNY",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-10-01T00:00:00Z",
    }
    r = await env.app.client.post(
        "/v1/merchant-revenue-reports", json=report, headers={"Idempotency-Key": "bad-input-0007"}
    )
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} >= {"body.revenue"}
    r = await env.app.client.post(
        "/v1/merchant-revenue-reports",
        json=report
        | {"revenue": "1", "period_end": "2026-12-01T00:00:00Z", "party_id": unverified},
        headers={"Idempotency-Key": "bad-input-0008"},
    )
    assert r.status_code == 503 and r.json()["title"] == "party_not_yet_known"
    assert (await env.app.client.post("/v1/admin/overdue-scans", json={})).status_code == 403
    assert (
        await env.app.client.post(
            "/v1/admin/overdue-scans",
            json={"as_of": "yesterday"},
            headers={"X-Operator-Key": OPERATOR_KEY},
        )
    ).status_code == 422

    await asyncio.sleep(1)
    assert await env.db["applications"].count_documents({}) == 0
    assert await env.db["revenue_reports"].count_documents({}) == 0
    assert env.reader.records == []


async def test_merchant_revenue_reports_are_published_once(env: LoanEnv) -> None:
    party = new_id()
    await env.bus.register_customer(party)

    async def known() -> bool:
        return await env.db["parties"].find_one({"_id": party, "kind": "CUSTOMER"}) is not None

    await eventually(known)
    report = {
        "report_id": "2026-11-r1",
        "party_id": party,
        "platform_id": "tmall",
        "revenue": "182345.67",
        "currency": "CNY",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-11-29T00:00:00Z",
    }
    first = await env.app.client.post(
        "/v1/merchant-revenue-reports", json=report, headers={"Idempotency-Key": "report-0001"}
    )
    again = await env.app.client.post(
        "/v1/merchant-revenue-reports", json=report, headers={"Idempotency-Key": "report-0002"}
    )
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    other = await env.app.client.post(
        "/v1/merchant-revenue-reports",
        json=report | {"revenue": "1.00"},
        headers={"Idempotency-Key": "report-0003"},
    )
    assert other.status_code == 409
    events = await env.reader.wait_for("merchant_revenue_reported", report_id="2026-11-r1")
    await asyncio.sleep(1)
    assert len(env.reader.of("merchant_revenue_reported")) == 1
    assert events[0].key == party and events[0].message.revenue.minor_units == 18_234_567


async def test_a_repayment_interrupted_by_a_crash_is_finished_once(env: LoanEnv) -> None:
    party = new_id()
    approved = await approved_application(env, party, "6000.00")
    loan = (await accept(env, approved["application_id"], party)).json()
    loan_id = loan["loan_id"]
    first = loan["schedule"][0]
    due = date.fromisoformat(first["due_date"])
    amount = Money.of(first["principal"], "CNY") + Money.of(first["interest"], "CNY")

    async def crash(posting_id: str, step: str) -> None:
        if posting_id.startswith("repay:") and step == "inserted":
            raise RuntimeError("the process died after the posting was stored")

    # The service's own handlers and database, with a ledger that "crashes" mid-posting.
    crashing = replace(env.app.app.state.deps.loan, ledger=Ledger(env.db, on_step=crash))
    with pytest.raises(RuntimeError):
        await handlers.repay(
            loan_id=loan_id,
            repayment_id="repay-crash-0001",
            amount=amount,
            subject=None,
            deps=crashing,
            as_of=due,
        )
    stored = await env.db["loans"].find_one({"_id": loan_id})
    assert stored is not None and stored["pending_repayment"]["id"] == "repay-crash-0001"
    assert stored["repayment_pending"] is True  # what the recovery sweep reads

    # The running service's recovery sweep finishes it: posting, allocation, event, once.
    async def finished() -> bool:
        doc = await env.db["loans"].find_one({"_id": loan_id})
        return doc is not None and doc["pending_repayment"] is None and bool(doc["repayments"])

    await eventually(finished)
    done = await env.db["loans"].find_one({"_id": loan_id})
    assert done is not None and done["repayment_pending"] is False
    received = await env.reader.wait_for("repayment_received", loan_id=loan_id)
    assert received[0].message.amount.minor_units == amount.minor_units
    assert await env.ledger.balance(f"settlement:{party}") == Money.of("6000.00", "CNY") - amount
    retry = await env.app.client.post(
        f"/v1/admin/loans/{loan_id}/repayments?as_of={due}",
        json={"amount": str(amount.to_decimal()), "currency": "CNY"},
        headers={"X-Operator-Key": OPERATOR_KEY, "Idempotency-Key": "repay-crash-0001"},
    )
    assert retry.status_code == 200 and retry.json()["principal"] == first["principal"]
    await asyncio.sleep(1)
    assert len(env.reader.of("repayment_received", loan_id=loan_id)) == 1
    assert await env.ledger.balance(f"settlement:{party}") == Money.of("6000.00", "CNY") - amount


async def test_exposure_counts_the_partys_loans_and_open_offers(env: LoanEnv) -> None:
    """The credit limit (300,000.00 for a LOW band) covers disbursed loans and open offers."""

    async def decide(amount: str, key: str) -> dict[str, Any]:
        r = await apply_for_loan(env.app, env.tokens, party, amount=amount, key=key)
        assert r.status_code == 202, r.text
        application_id = r.json()["application_id"]
        submitted = await env.reader.wait_for(
            "loan_application_submitted", application_id=application_id
        )
        await env.bus.assess(submitted[0].message, submitted[0].event_id, score=140)
        decided: dict[str, Any] = await eventually(lambda: _decided(application_id), within_s=20)
        return decided

    async def _decided(application_id: str) -> dict[str, Any] | None:
        r = await env.app.client.get(
            f"/v1/applications/{application_id}", headers=env.tokens.headers(party, aal=Aal.AAL1)
        )
        body: dict[str, Any] = r.json()
        return body if body["state"] in ("APPROVED", "DECLINED") else None

    party = new_id()
    await env.bus.register_customer(party)
    await eventually(lambda: _apply_when_known(env, party, "250000.00"))  # known to loan now
    first = await decide("250000.00", "exposure-1")
    assert first["state"] == "APPROVED" and first["offered_amount"] == "250000.00"
    r = await accept(env, first["application_id"], party, key="exposure-accept-1")
    assert r.status_code == 200 and r.json()["state"] == "DISBURSED", r.text

    # 250,000.00 lent: of 100,000.00 asked, the 50,000.00 left under the limit is offered
    second = await decide("100000.00", "exposure-2")
    assert second["state"] == "APPROVED" and second["offered_amount"] == "50000.00", second
    assert "AMOUNT_REDUCED_TO_LIMIT" in [x["code"] for x in second["reasons"]]

    # that offer is open, so it counts too: nothing is left for a third application
    third = await decide("10000.00", "exposure-3")
    codes = [x["code"] for x in third["reasons"]]
    assert third["state"] == "DECLINED" and codes == ["CREDIT_LIMIT_EXHAUSTED"], third
