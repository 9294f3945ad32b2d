"""The whole 310 path with the real signals app: the Faust worker runs as a subprocess on the
test's topics, assesses the applications the loan service publishes, and the loan service
decides on its assessments. A device shared by three parties gets the third one declined."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tests.integration.harness import (
    Engines,
    RunningApp,
    eventually,
    start_signals_worker,
    stop_process,
)
from tests.integration.test_loan_support import (
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
from zerocontact.platform.ids import new_id
from zerocontact.platform.ledger import Ledger
from zerocontact.platform.money import Money

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signals_worker(
    engines: Engines, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Callable[[Topics], int]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(topics: Topics) -> int:
        process, port = start_signals_worker(
            engines,
            app_id=unique_name("signals"),
            data_dir=tmp_path / "signals",
            log=tmp_path / "signals.log",
            topics={"loan": topics.loan, "identity": topics.identity, "risk": topics.risk},
        )
        processes.append(process)
        return port

    yield start
    for process in processes:
        stop_process(process)


@pytest.fixture
async def topics(kafka_admin: Any, unique_name: Callable[[str], str]) -> Topics:
    return await create_loan_topics(kafka_admin, unique_name)


async def _apply(app: RunningApp, tokens: Tokens, party: str, device: str) -> dict[str, Any]:
    async def known() -> dict[str, Any] | None:
        r = await apply_for_loan(app, tokens, party, amount="30000.00", device_id=device)
        if r.status_code == 403:
            return None
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    result: dict[str, Any] = await eventually(known)
    return result


async def test_the_310_path_with_the_signals_app(
    engines: Engines,
    topics: Topics,
    signals_worker: Callable[[Topics], int],
    unique_name: Callable[[str], str],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    port = signals_worker(topics)

    async def signals_ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(f"http://127.0.0.1:{port}/healthz")
        except httpx.TransportError:
            return False
        return r.status_code == 200 and not r.json().get("recovering")

    await eventually(signals_ready, within_s=120, interval=0.2)
    database = unique_name("loan").replace("-", "_")[:60]
    tokens = Tokens()
    bus = EventBus(engines.kafka_bootstrap, topics)
    reader = LoanTopicReader(engines.kafka_bootstrap, topics.loan)
    await bus.start()
    await reader.start()
    db = mongo_client[database]
    try:
        settings = loan_settings(engines, topics, database, unique_name("group"))
        async with running_loan(settings, tokens) as app:
            # A clean party: assessed by the signals app, approved, accepted, paid out.
            party = new_id()
            await bus.register_customer(party)
            application = await _apply(app, tokens, party, f"own-device-{party[-6:]}")
            approved = await wait_state(
                app, tokens, application["application_id"], party, "APPROVED"
            )
            assert (
                approved["risk_band"] == "LOW" and approved["reasons"][0]["code"] == "RISK_BAND_LOW"
            )
            stored = await db["applications"].find_one({"_id": application["application_id"]})
            assert stored is not None and stored["assessment_event_id"]
            r = await app.client.post(
                f"/v1/applications/{application['application_id']}/acceptance",
                headers=tokens.headers(party, key="accept-with-signals"),
            )
            assert r.status_code == 200 and r.json()["state"] == "DISBURSED", r.text
            await reader.wait_for("loan_disbursed", loan_id=r.json()["loan_id"])
            assert await Ledger(db).balance(f"settlement:{party}") == Money.of("30000.00", "CNY")

            # One device, three parties: the signals' hard rule declines the third.
            device = f"shared-{new_id()[-8:]}"
            decided = []
            for _ in range(3):
                p = new_id()
                await bus.register_customer(p)
                a = await _apply(app, tokens, p, device)

                async def decided_state(a: dict[str, Any] = a, p: str = p) -> dict[str, Any] | None:
                    got = await app.client.get(
                        f"/v1/applications/{a['application_id']}",
                        headers=tokens.headers(p, aal=Aal.AAL1),
                    )
                    body: dict[str, Any] = got.json()
                    return body if body["state"] in ("APPROVED", "DECLINED") else None

                decided.append(await eventually(decided_state, within_s=30))
            assert decided[-1]["state"] == "DECLINED", decided[-1]
            codes = [x["code"] for x in decided[-1]["reasons"]]
            assert "RISK_RULE_DEVICE_SHARED_BY_MANY_PARTIES" in codes, codes
            assert any("3" in x["description"] for x in decided[-1]["reasons"])
        report = await Ledger(db).check_invariants()
        assert report.ok, report.problems
    finally:
        await reader.stop()
        await bus.stop()
        await mongo_client.drop_database(database)
