"""Gig payouts, sweep, yield and redemption on the real engines: income tax withheld in the
ledger; idle money above the threshold swept into the money-market account, yield accrued,
and redeemed automatically so an approved or a scheduled payroll is funded. The ledger
balances to the fen after each test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from tests.integration.harness import eventually, serve
from tests.integration.test_payroll_flow import assert_ledger_ok, balances, cards, onboarded
from tests.integration.test_payroll_support import (  # noqa: F401  (fixture)
    PayrollEnv,
    of_kind,
    payroll_env,
    read_payroll_events,
)
from zerocontact.payroll.app import create_app
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.rail import CLOSED_ACCOUNT_CARD


async def test_gig_payout_withholds_income_tax_in_the_ledger(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client)
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={"rail_reference": "IN-GIG-1", "amount": "20000.00"},
        )
        assert r.status_code == 200, r.text
        (card,) = cards(1, seed=21)
        url = f"/v1/employers/{employer}/gig-payouts"
        body = {
            "payee_name": "骑手甲",
            "card_number": card,
            "gross": "5000.00",
            "task_reference": "TASK-1",
        }
        headers = env.tokens.headers(rep, key="gig-key-00001")
        r = await client.post(url, headers=headers, json=body)
        assert r.status_code == 201, r.text
        payout = r.json()
        # 5,000 > 4,000: taxable 80 % = 4,000 at 20 % = 800 (STA 2018 No. 61, docs/payroll.md)
        assert (payout["gross_minor"], payout["tax_minor"], payout["net_minor"]) == (
            500_000,
            80_000,
            420_000,
        )
        assert payout["card"] == card[:6] + "*" * 9 + card[-4:]

        async def paid() -> Any:
            doc = await env.db["gig_payouts"].find_one({"_id": payout["payout_id"]})
            return doc if doc and doc["state"] == "PAID" else None

        await eventually(paid, within_s=20)
        # the same key again: the same payout, nothing paid twice
        again = await client.post(url, headers=headers, json=body)
        assert again.status_code == 201 and again.json()["payout_id"] == payout["payout_id"]
        ledger = env.ledger()
        assert (await ledger.balance(accounts.TAX_WITHHELD)).minor_units == 80_000
        assert (await ledger.balance(accounts.gig_hold(employer))).minor_units == 0
        assert (await balances(env, client, employer, rep))["wallet_minor"] == 2_000_000 - 500_000
        rail = [d async for d in env.rail_db["rail_sim_payments"].find({})]
        assert [(d["status"], int(d["amount_minor"])) for d in rail] == [("ACSC", 420_000)]

        # a closed card: refused by the rail, the hold goes back, no tax booked
        r = await client.post(
            url,
            headers=env.tokens.headers(rep),
            json={**body, "card_number": CLOSED_ACCOUNT_CARD, "task_reference": "TASK-2"},
        )
        assert r.status_code == 201, r.text
        failed_id = r.json()["payout_id"]

        async def failed() -> Any:
            doc = await env.db["gig_payouts"].find_one({"_id": failed_id})
            return doc if doc and doc["state"] == "FAILED" else None

        assert (await eventually(failed, within_s=20))["reason_code"] == "AC04"
        assert (await ledger.balance(accounts.TAX_WITHHELD)).minor_units == 80_000
        assert (await balances(env, client, employer, rep))["wallet_minor"] == 1_500_000
        # bad input: 422 naming the fields, nothing moved
        before = await env.db["ledger_postings"].count_documents({})
        r = await client.post(
            url,
            headers=env.tokens.headers(rep),
            json={"payee_name": "", "card_number": "123", "gross": "-1", "task_reference": ""},
        )
        assert r.status_code == 422
        assert {"body.payee_name", "body.card_number"} <= {e["field"] for e in r.json()["errors"]}
        r = await client.post(
            url,
            headers=env.tokens.headers(rep),
            json={**body, "card_number": "6222021234567890", "task_reference": "TASK-3"},
        )
        assert r.status_code == 422
        assert await env.db["ledger_postings"].count_documents({}) == before
    await assert_ledger_ok(env)


def _batch(n: int, amount: str, seed: int) -> dict[str, Any]:
    items = [
        {"payee_name": f"员工{i}", "card_number": c, "amount": amount}
        for i, c in enumerate(cards(n, seed=seed))
    ]
    total = Decimal(amount) * n
    return {"items": items, "item_count": n, "control_sum": f"{total:.2f}"}


async def test_sweep_yield_and_redemption_keep_payroll_funded(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client, threshold="10000.00")
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={"rail_reference": "IN-SWEEP-1", "amount": "100000.00"},
        )
        assert r.status_code == 200, r.text
        ledger = env.ledger()

        # sweep: everything above the 10,000.00 threshold, once per business day
        day = {"business_day": "2026-03-02"}
        r = await client.post(
            f"/v1/employers/{employer}/sweeps", headers=env.tokens.headers(rep), json=day
        )
        assert r.status_code == 200, r.text
        assert r.json()["swept_minor"] == 9_000_000
        assert (r.json()["wallet_minor"], r.json()["money_market_minor"]) == (1_000_000, 9_000_000)
        r = await client.post(
            f"/v1/employers/{employer}/sweeps", headers=env.tokens.headers(rep), json=day
        )
        assert r.json()["swept_minor"] == 0
        await assert_ledger_ok(env)

        # yield: holding * rate / 365, rounded down to the fen, once per day
        expected = int(
            (Decimal(9_000_000) * env.settings.mmf_annual_rate / 365).to_integral_value(ROUND_DOWN)
        )
        assert expected > 0
        for _ in range(2):  # the second run of the day replays the same posting
            r = await client.post(
                f"/v1/employers/{employer}/yield-accruals",
                headers=env.tokens.headers(rep),
                json=day,
            )
            assert r.status_code == 200 and r.json()["accrued_minor"] == expected
        holding = 9_000_000 + expected
        assert (await ledger.balance(accounts.money_market(employer))).minor_units == holding
        assert (await ledger.balance(accounts.YIELD_EXPENSE)).minor_units == expected
        r = await client.post(
            f"/v1/employers/{employer}/sweeps",
            headers=env.tokens.headers(rep),
            json={"business_day": "not-a-day"},
        )
        assert r.status_code == 422
        await assert_ledger_ok(env)

        # a payroll of 50,000.00 due now needs 40,000.00 more than the wallet: approval redeems
        r = await client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json=_batch(5, "10000.00", seed=31),
        )
        assert r.status_code == 201, r.text
        batch_id = r.json()["batch_id"]
        r = await client.post(f"/v1/batches/{batch_id}/approval", headers=env.tokens.headers(rep))
        assert r.status_code == 200, r.text

        async def completed(batch: str) -> Any:
            r = await client.get(f"/v1/batches/{batch}", headers=env.tokens.headers(rep))
            return r.json() if r.json()["state"] == "COMPLETED" else None

        view = await eventually(lambda: completed(batch_id), within_s=30)
        assert view["status"] == "ACSC" and view["counts"] == {"PAID": 5}
        redeemed = await env.db["ledger_postings"].find_one(
            {"_id": f"payroll:redeem:batch:{batch_id}"}
        )
        assert redeemed is not None
        holding -= 4_000_000
        state = await balances(env, client, employer, rep)
        assert (state["wallet_minor"], state["money_market_minor"]) == (0, holding)
        await assert_ledger_ok(env)

        # a payroll scheduled a few seconds ahead: the scheduler redeems before it is approved
        # (within the lead time), then starts it when due
        due = datetime.now(UTC) + timedelta(seconds=4)
        r = await client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json={**_batch(2, "7500.00", seed=41), "scheduled_for": due.isoformat()},
        )
        assert r.status_code == 201, r.text
        scheduled = r.json()["batch_id"]

        async def redeemed_ahead() -> Any:
            state = await balances(env, client, employer, rep)
            return state if state["wallet_minor"] == 1_500_000 else None

        state = await eventually(redeemed_ahead, within_s=10)
        assert state["money_market_minor"] == holding - 1_500_000
        # the same day's sweep keeps the money a scheduled payroll needs in the wallet
        r = await client.post(
            f"/v1/employers/{employer}/sweeps",
            headers=env.tokens.headers(rep),
            json={"business_day": "2026-03-03"},
        )
        assert r.status_code == 200 and r.json()["swept_minor"] == 0
        r = await client.post(f"/v1/batches/{scheduled}/approval", headers=env.tokens.headers(rep))
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "APPROVED"
        view = await eventually(lambda: completed(scheduled), within_s=30)
        assert view["counts"] == {"PAID": 2}
        stored = await env.db["batches"].find_one({"_id": scheduled})
        assert stored["started_at"] >= due  # not before it was due
        state = await balances(env, client, employer, rep)
        assert (state["wallet_minor"], state["money_market_minor"]) == (0, holding - 1_500_000)

        events = await read_payroll_events(
            env.engines.kafka_bootstrap,
            env.payroll_topic,
            until=lambda seen: len(of_kind(seen, "payroll_batch_completed")) == 2,
        )
        assert len(of_kind(events, "funds_swept")) == 1
        redemptions = of_kind(events, "funds_redeemed")
        assert sorted(e.amount.minor_units for e in redemptions.values()) == [1_500_000, 4_000_000]
    await assert_ledger_ok(env)
