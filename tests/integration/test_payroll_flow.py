"""Payroll end to end on the real engines: onboarding from identity events, top-up, bad batches
refused with nothing moved, a batch with good and bad items approved at AAL2, items paid,
failed and retried, completion, pain.002, payslips; the ledger balances after every test."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from lxml import etree

from tests.integration.harness import eventually, serve
from tests.integration.spans import trace_id
from tests.integration.test_payroll_support import (  # noqa: F401  (fixture)
    PayrollEnv,
    of_kind,
    payroll_env,
    read_payroll_events,
)
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.payroll.app import create_app
from zerocontact.payroll.domain.batches import RawItem, csv_text
from zerocontact.payroll.domain.cards import luhn_complete
from zerocontact.payroll.rail import CLOSED_ACCOUNT_CARD, FLAKY_CARD, UNREACHABLE_CARD

PREFIXES = ["622202", "621700", "622848", "621661", "622588"]


def cards(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(luhn_complete(rng.choice(PREFIXES) + "".join(rng.choices("0123456789", k=12))))
    return sorted(out)


async def onboarded(
    env: PayrollEnv, client: Any, *, maker_checker: bool = False, threshold: str | None = None
) -> tuple[str, str]:
    employer, rep = await env.verified_enterprise()

    async def onboard() -> Any:
        r = await client.post(
            "/v1/employers",
            headers=env.tokens.headers(rep),
            json={
                "employer_id": employer,
                "maker_checker": maker_checker,
                "sweep_threshold": threshold,
            },
        )
        return r if r.status_code == 201 else None

    await eventually(onboard, within_s=20)
    return employer, rep


async def balances(env: PayrollEnv, client: Any, employer: str, rep: str) -> dict[str, Any]:
    r = await client.get(f"/v1/employers/{employer}", headers=env.tokens.headers(rep))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def assert_ledger_ok(env: PayrollEnv) -> None:
    report = await env.ledger().check_invariants()
    assert report.ok, report.problems
    assert not report.in_flight


async def test_onboarding_needs_a_verified_enterprise_and_its_representative(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        enterprise, rep = (
            "01900000-0000-7000-8000-00000000e001",
            "01900000-0000-7000-8000-0000000000a1",
        )
        await env.register(enterprise, rep, name="Not Yet Ltd")
        body = {"employer_id": enterprise}

        async def known() -> Any:
            return await env.db["parties"].find_one({"_id": enterprise})

        await eventually(known)
        wait_s = env.settings.party_wait_s
        # an enterprise payroll never heard of: "not yet known" after the bounded wait
        clock = time.monotonic()
        r = await client.post(
            "/v1/employers",
            headers=env.tokens.headers(rep),
            json={"employer_id": "01900000-0000-7000-8000-00000000e0ff"},
        )
        assert r.status_code == 503 and r.json()["title"] == "party_not_yet_known", r.text
        assert r.headers["Retry-After"] == "1"
        assert wait_s <= time.monotonic() - clock < wait_s + 1.5
        # known but not VERIFIED: refused after the same wait (the partner must act)
        clock = time.monotonic()
        r = await client.post("/v1/employers", headers=env.tokens.headers(rep), json=body)
        assert r.status_code == 409 and r.json()["title"] == "enterprise_not_verified"
        assert r.json()["retry_after_s"] == wait_s
        assert wait_s <= time.monotonic() - clock < wait_s + 1.5
        # verified while a request waits: identity's event ends the wait, the request succeeds
        clock = time.monotonic()
        waiting = asyncio.create_task(
            client.post("/v1/employers", headers=env.tokens.headers(rep), json=body)
        )
        await asyncio.sleep(0.2)
        verified_id = await env.kyb(enterprise, identity_pb2.KYC_LEVEL_VERIFIED)
        r = await waiting
        assert r.status_code == 201, r.text
        assert time.monotonic() - clock < wait_s
        # a redelivered (same ce_id) event changes nothing
        await env.kyb(enterprise, identity_pb2.KYC_LEVEL_VERIFIED, event_id=verified_id)
        r = await client.post(
            "/v1/employers", headers=env.tokens.headers("someone-else-0001"), json=body
        )
        assert r.status_code == 403
        r = await client.post("/v1/employers", headers={"Idempotency-Key": "abcdefgh12"}, json=body)
        assert r.status_code == 401
        r = await client.post(
            "/v1/employers",
            headers=env.tokens.headers(rep),
            json={"employer_id": "x", "sweep_threshold": "-1"},
        )
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert {"body.employer_id", "body.sweep_threshold"} <= fields
        r = await client.post("/v1/employers", headers=env.tokens.headers(rep), json=body)
        assert r.status_code == 201, r.text
        assert r.json()["wallet_minor"] == 0
        doc = await env.db["parties"].find_one({"_id": enterprise})
        assert len(doc["_applied"]) == 2  # registered + verified; the redelivery was ignored
    await assert_ledger_ok(env)


async def test_bad_batches_are_refused_with_a_report_and_move_no_money(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client)
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={"rail_reference": "IN-0001", "amount": "10000.00"},
        )
        assert r.status_code == 200, r.text
        before = await env.db["ledger_postings"].count_documents({})
        good = cards(3)
        items = [{"payee_name": "张三", "card_number": c, "amount": "100.00"} for c in good]

        # control sum mismatch
        r = await client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json={"items": items, "item_count": 3, "control_sum": "300.01"},
        )
        assert r.status_code == 422 and r.json()["batch_problems"] == ["control_sum_mismatch"]
        # over-limit amount, bad card, duplicate payee: one report naming each item
        bad = [
            {"payee_name": "A", "card_number": good[0], "amount": "600000.00"},
            {"payee_name": "B", "card_number": "6222021234567890", "amount": "1.00"},
            {"payee_name": "C", "card_number": good[1], "amount": "1.00"},
            {"payee_name": "D", "card_number": good[1], "amount": "1.00"},
        ]
        r = await client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json={"items": bad, "item_count": 4, "control_sum": "600003.00"},
        )
        assert r.status_code == 422, r.text
        report = r.json()
        codes = {(i["seq"], i["code"]) for i in report["items"]}
        assert codes == {(1, "amount_over_limit"), (2, "invalid_card"), (4, "duplicate_payee")}
        assert report["invalid_items"] == 3
        # malformed CSV: missing column, and not UTF-8
        url = f"/v1/employers/{employer}/batches/csv?item_count=1&control_sum=1.00"
        r = await client.post(url, headers=env.tokens.headers(rep), content="name,card\nx,y\n")
        assert r.status_code == 422 and r.json()["title"] == "malformed_input"
        r = await client.post(url, headers=env.tokens.headers(rep), content=b"\xff\xfe\x00bad")
        assert r.status_code == 422
        # a CSV row with too many fields is refused as an item
        csv = "payee_name,card_number,amount\n王五," + good[2] + ",1.00,extra\n"
        r = await client.post(url, headers=env.tokens.headers(rep), content=csv.encode())
        assert r.status_code == 422 and r.json()["items"][0]["code"] == "invalid_amount"
        # bad query parameters: 422 with the field named
        r = await client.post(
            f"/v1/employers/{employer}/batches/csv?item_count=-1",
            headers=env.tokens.headers(rep),
            content=csv.encode(),
        )
        assert r.status_code == 422
        assert {"query.item_count", "query.control_sum"} <= {e["field"] for e in r.json()["errors"]}
        # nothing moved: no posting beyond the top-up, no item stored, wallet intact
        assert await env.db["ledger_postings"].count_documents({}) == before
        assert await env.db["batch_items"].count_documents({}) == 0
        assert (await balances(env, client, employer, rep))["wallet_minor"] == 1_000_000
        assert await env.rail_db["rail_sim_payments"].count_documents({}) == 0
    await assert_ledger_ok(env)


async def test_batch_with_good_and_bad_items_pays_each_once_and_completes(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client, maker_checker=True)
        hr_platform, hr_rep = await env.verified_enterprise(name="HR Services Co")

        async def hr_known() -> Any:
            doc = await env.db["parties"].find_one({"_id": hr_platform})
            return doc and doc.get("kyc_level") == "KYC_LEVEL_VERIFIED"

        await eventually(hr_known)
        # the HR platform may not act before the employer authorises it
        r = await client.get(f"/v1/employers/{employer}", headers=env.tokens.headers(hr_rep))
        assert r.status_code == 403
        r = await client.post(
            f"/v1/employers/{employer}/agents",
            headers=env.tokens.headers(rep),
            json={"agent_id": hr_platform},
        )
        assert r.status_code == 200 and r.json()["agents"] == [hr_platform]
        top_up = {"rail_reference": "IN-0002", "amount": "50000.00"}
        for _ in range(2):  # the same incoming transfer twice credits once
            r = await client.post(
                f"/v1/employers/{employer}/top-ups", headers=env.tokens.headers(hr_rep), json=top_up
            )
            assert r.status_code == 200
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={**top_up, "amount": "1.00"},
        )
        assert r.status_code == 409
        assert (await balances(env, client, employer, rep))["wallet_minor"] == 5_000_000

        good = cards(20)
        items = [
            RawItem(
                f"员工{i}",
                c,
                "1000.00",
                customer_id=f"cust-{i}",
                gross="1200.00",
                deductions={"income_tax": "50.00", "social_insurance": "150.00"},
            )
            for i, c in enumerate(good)
        ]
        items += [
            RawItem("Closed", CLOSED_ACCOUNT_CARD, "500.00"),
            RawItem("Flaky", FLAKY_CARD, "300.00"),
            RawItem("Gone", UNREACHABLE_CARD, "200.00"),
        ]
        total = 20 * 1000 + 500 + 300 + 200
        key = "batch-key-0001"
        url = f"/v1/employers/{employer}/batches/csv?item_count={len(items)}&control_sum={total}.00"
        r = await client.post(
            url, headers=env.tokens.headers(hr_rep, key=key), content=csv_text(items).encode()
        )
        assert r.status_code == 201, r.text
        batch = r.json()
        assert batch["state"] == "SUBMITTED" and batch["status"] == "ACTC"
        # the same key and body returns the same batch; another body under it is refused
        again = await client.post(
            url, headers=env.tokens.headers(hr_rep, key=key), content=csv_text(items).encode()
        )
        assert again.json()["batch_id"] == batch["batch_id"]
        other = await client.post(
            url, headers=env.tokens.headers(hr_rep, key=key), content=csv_text(items[:-1]).encode()
        )
        assert other.status_code == 409
        batch_id = batch["batch_id"]
        # approval: AAL1 refused, an old authentication refused, the maker refused (4 eyes)
        approval = f"/v1/batches/{batch_id}/approval"
        r = await client.post(approval, headers=env.tokens.headers(rep, aal="AAL1"))
        assert r.status_code == 403 and r.json()["title"] == "step_up_required"
        r = await client.post(approval, headers=env.tokens.headers(rep, age_s=3600))
        assert r.status_code == 403
        r = await client.post(approval, headers=env.tokens.headers(hr_rep))
        assert r.status_code == 403 and r.json()["title"] == "maker_checker"
        assert (
            await env.db["ledger_postings"].count_documents({"_id": f"payroll:reserve:{batch_id}"})
            == 0
        )
        r = await client.post(approval, headers=env.tokens.headers(rep))
        assert r.status_code == 200, r.text

        async def completed() -> Any:
            r = await client.get(f"/v1/batches/{batch_id}", headers=env.tokens.headers(rep))
            return r.json() if r.json()["state"] == "COMPLETED" else None

        view = await eventually(completed, within_s=30)
        assert view["status"] == "PART"
        assert view["counts"] == {"PAID": 21, "FAILED": 2}
        failed = (
            await client.get(
                f"/v1/batches/{batch_id}/items?state=FAILED", headers=env.tokens.headers(rep)
            )
        ).json()
        assert {(f["card"], f["reason_code"]) for f in failed} == {
            (CLOSED_ACCOUNT_CARD[:6] + "*" * 9 + CLOSED_ACCOUNT_CARD[-4:], "AC04"),
            (UNREACHABLE_CARD[:6] + "*" * 9 + UNREACHABLE_CARD[-4:], "AB05"),
        }
        flaky = await env.db["item_outcomes"].find_one({"item_id": f"{batch_id}:000022"})
        assert flaky["state"] == "PAID" and flaky["attempts"] == 3
        stored = await env.db["batch_items"].find_one({"_id": f"{batch_id}:000022"})
        assert FLAKY_CARD not in str(stored) and stored["card_enc"].startswith("v1:")

        # money: paid once, unused reserve released, ledger balanced
        paid_minor = (20 * 1000 + 300) * 100
        state = await balances(env, client, employer, rep)
        assert state["wallet_minor"] == 5_000_000 - paid_minor
        assert (await env.ledger().balance(f"payroll:batch:{batch_id}:reserve")).minor_units == 0
        rail = [d async for d in env.rail_db["rail_sim_payments"].find({})]
        assert len(rail) == 22  # 21 settled + the closed account's rejection, one record each
        assert sum(int(d["amount_minor"]) for d in rail if d["status"] == "ACSC") == paid_minor

        # events: one per item (by ce_id), then completion
        traces: dict[str, str] = {}
        events = await read_payroll_events(
            env.engines.kafka_bootstrap,
            env.payroll_topic,
            until=lambda seen: bool(of_kind(seen, "payroll_batch_completed")),
            traceparents=traces,
        )
        # The run continued the submission's trace: every payment and the completion are in
        # it (the approving request, which started the run, is linked).
        (submitted_id,) = of_kind(events, "payroll_batch_submitted")
        runs = {
            trace_id(traces[ce_id])
            for ce_id, e in events
            if e.WhichOneof("event")
            in ("salary_paid", "salary_payment_failed", "payroll_batch_completed")
        }
        assert runs == {trace_id(traces[submitted_id])}
        paid = of_kind(events, "salary_paid")
        assert len(paid) == 21 and len({p.end_to_end_id for p in paid.values()}) == 21
        assert all("*" in p.card_masked for p in paid.values())
        # the payee's party where the employer named it (customer_id), else empty
        parties = sorted(p.payee_party_id for p in paid.values())
        assert parties == ["", *sorted(f"cust-{i}" for i in range(20))], parties
        failures = of_kind(events, "salary_payment_failed")
        assert sorted(f.reason_code for f in failures.values()) == ["AB05", "AC04"]
        assert len(of_kind(events, "payroll_batch_approved")) == 1
        (done,) = of_kind(events, "payroll_batch_completed").values()
        assert done.paid.minor_units == paid_minor and done.released.minor_units == 70_000

        # pain.002 status report
        r = await client.get(
            f"/v1/batches/{batch_id}/status-report", headers=env.tokens.headers(rep)
        )
        doc = etree.fromstring(r.content)
        ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"}
        assert doc.findtext(".//p:GrpSts", namespaces=ns) == "PART"
        reasons = doc.findall(".//p:TxInfAndSts[p:TxSts='RJCT']/p:StsRsnInf/p:Rsn/p:Cd", ns)
        assert sorted(e.text for e in reasons) == ["AB05", "AC04"]

        # the employee reads the payslip with their own token
        r = await client.get("/v1/me/payslips", headers=env.tokens.headers("cust-3", aal="AAL1"))
        (slip,) = r.json()
        assert slip["gross"] == "1200.00" and slip["net"] == "1000.00"
        assert slip["deductions"] == {"income_tax": "50.00", "social_insurance": "150.00"}
        assert slip["state"] == "PAID"
    await assert_ledger_ok(env)
