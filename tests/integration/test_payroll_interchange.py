"""pain.001 export and import over HTTP, and the ``zerocontact payroll submit --follow`` CLI
run as a subprocess against the payroll app on a real port (real engines behind it)."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from lxml import etree

from tests.integration.harness import eventually, serve
from tests.integration.test_payroll_flow import assert_ledger_ok, balances, cards, onboarded
from tests.integration.test_payroll_support import (  # noqa: F401  (fixture)
    PayrollEnv,
    payroll_env,
)
from zerocontact.payroll.app import create_app
from zerocontact.payroll.domain.batches import RawItem, csv_text
from zerocontact.payroll.iso20022 import PAIN_001
from zerocontact.payroll.rail import CLOSED_ACCOUNT_CARD

NS = {"p": PAIN_001}
REPO = Path(__file__).resolve().parents[2]


async def test_pain001_export_then_import_round_trip_and_bad_messages_refused(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client)
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={"rail_reference": "IN-PAIN-1", "amount": "10000.00"},
        )
        assert r.status_code == 200, r.text
        good = cards(4, seed=51)
        amounts = ["1000.00", "1234.56", "0.01", "2500.10"]
        items = [
            {"payee_name": f"员工{i}", "card_number": c, "amount": a}
            for i, (c, a) in enumerate(zip(good, amounts, strict=True))
        ]
        total = sum(Decimal(a) for a in amounts)
        r = await client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json={"items": items, "item_count": 4, "control_sum": f"{total:.2f}"},
        )
        assert r.status_code == 201, r.text
        first = r.json()["batch_id"]

        # export: pain.001.001.09, SALA, counts and sums in both headers, cards masked
        r = await client.get(f"/v1/batches/{first}/pain001", headers=env.tokens.headers(rep))
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
        exported = r.content
        doc = etree.fromstring(exported)
        assert doc.findtext(".//p:GrpHdr/p:NbOfTxs", namespaces=NS) == "4"
        assert Decimal(doc.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=NS)) == total
        assert Decimal(doc.findtext(".//p:PmtInf/p:CtrlSum", namespaces=NS)) == total
        assert doc.findtext(".//p:PmtInf/p:PmtTpInf/p:CtgyPurp/p:Cd", namespaces=NS) == "SALA"
        txs = doc.findall(".//p:CdtTrfTxInf", NS)
        exported_items = [
            (
                tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
                tx.findtext("p:Cdtr/p:Nm", namespaces=NS),
                tx.findtext("p:Amt/p:InstdAmt", namespaces=NS),
                tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS),
            )
            for tx in txs
        ]
        assert [(n, a) for _, n, a, _ in exported_items] == [
            (i["payee_name"], i["amount"]) for i in items
        ]
        assert [c for *_, c in exported_items] == [c[:6] + "*" * 9 + c[-4:] for c in good]
        assert not any(c.encode() in exported for c in good)

        # the export is a record, not a payment file: imported as is, the masked cards are refused
        url = f"/v1/employers/{employer}/batches/pain001"
        r = await client.post(url, headers=env.tokens.headers(rep), content=exported)
        assert r.status_code == 422, r.text
        assert {i["code"] for i in r.json()["items"]} == {"invalid_card"}
        # with the full card numbers put back (what the employer's own system holds) it imports
        # as a new batch with the same items, control sum and count
        for tx, card in zip(txs, good, strict=True):
            tx.find("p:CdtrAcct/p:Id/p:Othr/p:Id", NS).text = card
        reused = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
        # the same EndToEndIds again are refused: the rail pays an EndToEndId once, so a
        # re-import would be reported paid without being paid (and the wallet debited)
        r = await client.post(url, headers=env.tokens.headers(rep), content=reused)
        assert r.status_code == 422, r.text
        assert {i["code"] for i in r.json()["items"]} == {"end_to_end_id_reused"}
        for tx in txs:
            e2e = tx.find("p:PmtId/p:EndToEndId", NS)
            e2e.text = "R" + e2e.text[1:]
        exported_items = [("R" + e[1:], n, a, c) for e, n, a, c in exported_items]
        complete = etree.tostring(doc, xml_declaration=True, encoding="UTF-8")
        r = await client.post(url, headers=env.tokens.headers(rep), content=complete)
        assert r.status_code == 201, r.text
        second = r.json()
        assert second["batch_id"] != first
        assert (second["item_count"], Decimal(second["control_sum"])) == (4, total)
        r = await client.get(
            f"/v1/batches/{second['batch_id']}/pain001", headers=env.tokens.headers(rep)
        )
        again = etree.fromstring(r.content)
        assert [
            (
                tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
                tx.findtext("p:Cdtr/p:Nm", namespaces=NS),
                tx.findtext("p:Amt/p:InstdAmt", namespaces=NS),
                tx.findtext("p:CdtrAcct/p:Id/p:Othr/p:Id", namespaces=NS),
            )
            for tx in again.findall(".//p:CdtTrfTxInf", NS)
        ] == exported_items
        assert Decimal(again.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=NS)) == total

        # bad messages: 422, and nothing stored or moved
        postings = await env.db["ledger_postings"].count_documents({})
        stored = await env.db["batch_items"].count_documents({})
        bad_sum = etree.fromstring(complete)
        bad_sum.find(".//p:GrpHdr/p:CtrlSum", NS).text = f"{total + 1:.2f}"
        bad_sum.find(".//p:PmtInf/p:CtrlSum", NS).text = f"{total + 1:.2f}"
        not_sala = etree.fromstring(complete)
        not_sala.find(".//p:CtgyPurp/p:Cd", NS).text = "SUPP"
        bad_count = etree.fromstring(complete)
        bad_count.find(".//p:GrpHdr/p:NbOfTxs", NS).text = "5"
        for body, expect in (
            (b"<Document><unclosed></Document>", "malformed_input"),
            (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>", "malformed_input"),
            (
                b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.008.001.08'/>",
                "malformed_input",
            ),
            (etree.tostring(not_sala), "malformed_input"),
            (etree.tostring(bad_sum), None),
            (etree.tostring(bad_count), None),
        ):
            r = await client.post(url, headers=env.tokens.headers(rep), content=body)
            assert r.status_code == 422, (body[:80], r.text)
            if expect:
                assert r.json()["title"] == expect
        assert r.json()["batch_problems"] == ["item_count_mismatch"]
        assert await env.db["ledger_postings"].count_documents({}) == postings
        assert await env.db["batch_items"].count_documents({}) == stored
        assert await env.rail_db["rail_sim_payments"].count_documents({}) == 0
        assert (await balances(env, client, employer, rep))["wallet_minor"] == 1_000_000
    await assert_ledger_ok(env)


async def test_cli_submits_a_csv_and_follows_it_to_completion(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    env = payroll_env
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as running:
        client = running.client
        employer, rep = await onboarded(env, client)
        r = await client.post(
            f"/v1/employers/{employer}/top-ups",
            headers=env.tokens.headers(rep),
            json={"rail_reference": "IN-CLI-1", "amount": "50000.00"},
        )
        assert r.status_code == 200, r.text
        rows = [RawItem(f"员工{i}", c, "800.00") for i, c in enumerate(cards(30, seed=61))]
        rows.append(RawItem("Closed", CLOSED_ACCOUNT_CARD, "100.00"))
        csv_file = tmp_path / "march.csv"
        csv_file.write_text(csv_text(rows), encoding="utf-8")
        token = env.tokens.token(rep)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "zerocontact.platform.cli",
            "payroll",
            "submit",
            str(csv_file),
            "--employer",
            employer,
            "--url",
            running.url,
            "--follow",
            cwd=REPO,
            env={**os.environ, "ZC_ACCESS_TOKEN": token, "COLUMNS": "120"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def submitted() -> Any:
            return await env.db["batches"].find_one({"employer_id": employer})

        batch = await eventually(submitted, within_s=30)
        assert batch["item_count"] == 31 and int(batch["control_sum_minor"]) == 30 * 80_000 + 10_000
        assert batch["source"] == "csv"
        # the CLI is following a SUBMITTED batch; an approver steps up and approves it
        r = await client.post(
            f"/v1/batches/{batch['_id']}/approval", headers=env.tokens.headers(rep)
        )
        assert r.status_code == 200, r.text
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert lines[0] == f"batch {batch['_id']} SUBMITTED (31 items)"
        assert lines[-1] == "COMPLETED PART: {'PAID': 30, 'FAILED': 1}"
        assert "paying" in out.decode() and "31/31" in out.decode()  # the progress bar's last state
        r = await client.get(f"/v1/batches/{batch['_id']}", headers=env.tokens.headers(rep))
        assert r.json()["state"] == "COMPLETED"

        # a malformed CSV: the CLI refuses before calling the server
        bad = tmp_path / "bad.csv"
        bad.write_text("name,card\nx,y\n", encoding="utf-8")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "zerocontact.platform.cli",
            "payroll",
            "submit",
            str(bad),
            "--employer",
            employer,
            "--url",
            running.url,
            cwd=REPO,
            env={**os.environ, "ZC_ACCESS_TOKEN": token},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2 and "malformed CSV" in err.decode()
        assert await env.db["batches"].count_documents({"employer_id": employer}) == 1
    await assert_ledger_ok(env)
