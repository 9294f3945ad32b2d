"""Exactly once under a crash: the payroll service runs in a subprocess (uvicorn on the real
engines), is killed with SIGKILL mid-batch, and a new process finishes the batch. Every salary
is paid once: by the rail's records, the ledger and the events (deduplicated by ce_id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from tests.integration.harness import eventually, free_port, serve
from tests.integration.test_payroll_flow import cards
from tests.integration.test_payroll_support import (  # noqa: F401  (fixture)
    PayrollEnv,
    of_kind,
    payroll_env,
    read_payroll_events,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ITEMS = 600


@asynccontextmanager
async def payroll_process(env: PayrollEnv, jwks_url: str) -> AsyncIterator[tuple[str, Any]]:
    port = free_port()
    s = env.settings
    environ = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "MONGODB_URI": s.mongodb_uri,
        "ZC_PAYROLL_MONGODB_DATABASE": s.mongodb_database,
        "ZC_PAYROLL_RAIL_SIMULATOR_DATABASE": s.rail_simulator_database,
        "ZC_PAYROLL_IDENTITY_TOPIC": s.identity_topic,
        "ZC_PAYROLL_EVENTS_TOPIC": s.events_topic,
        "ZC_PAYROLL_CONSUMER_GROUP": s.consumer_group,
        "ZC_PAYROLL_PII_KEY": s.pii_key.get_secret_value(),
        "ZC_PAYROLL_PII_INDEX_KEY": s.pii_index_key.get_secret_value(),
        "ZC_PAYROLL_IDENTITY_JWKS_URL": jwks_url,
        "ZC_PAYROLL_CHUNK_SIZE": "25",
        "ZC_PAYROLL_RAIL_CONCURRENCY": "1",
        "ZC_PAYROLL_RAIL_SIMULATOR_LATENCY_S": "0.15",
        "ZC_PAYROLL_OUTBOX_SWEEP_INTERVAL_S": "0.5",
        # the killed process's lease on the batch lapses after 2 s; the scheduler then resumes it
        "ZC_PAYROLL_BATCH_LEASE_S": "2",
        "ZC_PAYROLL_SCHEDULER_INTERVAL_S": "0.5",
        "ZC_PAYROLL_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(  # noqa: ASYNC220  (returns at once; we need the pid to kill)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "zerocontact.payroll.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    assert process.poll() is None, "payroll process exited"
                    return False

            await eventually(ready, within_s=30)
            yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_kill_mid_batch_then_restart_pays_every_salary_exactly_once(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
) -> None:
    env = payroll_env
    jwks_app = FastAPI()

    @jwks_app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        return env.tokens.keys.jwks()

    employer, rep = await env.verified_enterprise()
    good = cards(ITEMS, seed=11)
    total_minor = sum(100_00 + i for i in range(ITEMS))
    items = [
        {"payee_name": f"P{i}", "card_number": c, "amount": f"{100 + i / 100:.2f}"}
        for i, c in enumerate(good)
    ]
    async with serve(jwks_app) as identity:
        jwks_url = f"{identity.url}/.well-known/jwks.json"
        async with payroll_process(env, jwks_url) as (url, process):
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:

                async def onboard() -> Any:
                    r = await client.post(
                        "/v1/employers",
                        headers=env.tokens.headers(rep),
                        json={"employer_id": employer},
                    )
                    return r.status_code == 201

                await eventually(onboard)
                r = await client.post(
                    f"/v1/employers/{employer}/top-ups",
                    headers=env.tokens.headers(rep),
                    json={"rail_reference": "IN-CRASH-1", "amount": "100000.00"},
                )
                assert r.status_code == 200, r.text
                r = await client.post(
                    f"/v1/employers/{employer}/batches",
                    headers=env.tokens.headers(rep),
                    json={
                        "items": items,
                        "item_count": ITEMS,
                        "control_sum": f"{total_minor / 100:.2f}",
                    },
                )
                assert r.status_code == 201, r.text
                batch_id = r.json()["batch_id"]
                r = await client.post(
                    f"/v1/batches/{batch_id}/approval", headers=env.tokens.headers(rep)
                )
                assert r.status_code == 200, r.text

            async def some_paid() -> bool:
                n = await env.db["item_outcomes"].count_documents({"batch_id": batch_id})
                return n >= 100

            await eventually(some_paid, within_s=30, interval=0.05)
            process.send_signal(signal.SIGKILL)
            process.wait()
        decided = await env.db["item_outcomes"].count_documents({"batch_id": batch_id})
        assert decided < ITEMS, "the batch finished before the kill; the test proves nothing"
        assert await env.db["item_attempts"].count_documents({"batch_id": batch_id}) > 0

        async with (
            payroll_process(env, jwks_url) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):

            async def completed() -> bool:
                r = await client.get(f"/v1/batches/{batch_id}", headers=env.tokens.headers(rep))
                return bool(r.json()["state"] == "COMPLETED")

            await eventually(completed, within_s=60)
            events = await read_payroll_events(
                env.engines.kafka_bootstrap,
                env.payroll_topic,
                until=lambda seen: (
                    bool(of_kind(seen, "payroll_batch_completed"))
                    and len({p.end_to_end_id for p in of_kind(seen, "salary_paid").values()})
                    >= ITEMS
                ),
                within_s=60,
            )
            await asyncio.sleep(0)

    # the rail: one settled record per EndToEndId, nothing paid twice
    rail = [d async for d in env.rail_db["rail_sim_payments"].find({})]
    assert len(rail) == ITEMS and all(d["status"] == "ACSC" for d in rail)
    assert sum(int(d["amount_minor"]) for d in rail) == total_minor
    # the ledger: the reserve fully settled, wallet down by exactly the batch, invariants hold
    ledger = env.ledger()
    assert (await ledger.balance(f"payroll:batch:{batch_id}:reserve")).minor_units == 0
    wallet = await ledger.balance(f"payroll:employer:{employer}:wallet")
    assert wallet.minor_units == 100_000_00 - total_minor
    report = await ledger.check_invariants()
    assert report.ok and not report.in_flight, report.problems
    # the events: one SalaryPaid per item once deduplicated by ce_id, no item with two ids
    paid = of_kind(events, "salary_paid")
    by_item: dict[str, set[str]] = {}
    for ce_id, event in paid.items():
        by_item.setdefault(event.end_to_end_id, set()).add(ce_id)
    assert len(by_item) == ITEMS and all(len(ids) == 1 for ids in by_item.values())
    assert sum(e.amount.minor_units for e in paid.values()) == total_minor
    assert len(of_kind(events, "payroll_batch_completed")) == 1
