"""Marketing's operator credential, idempotency under concurrency, scheduled campaigns and
budgets, on the real engines.

- every /v1 route refuses a missing or wrong X-Operator-Key (403, nothing changes) and a
  missing or malformed X-Operator-Id (422); health, readiness and metrics stay open;
- identical requests fired together with one Idempotency-Key have exactly one effect;
- an approved campaign with ``start_at`` runs once when the (injected) clock reaches it,
  and its sends stop at its budget (the rest suppressed as ``budget_exhausted``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, eventually
from tests.integration.test_marketing_support import (
    DISCLOSURE,
    NOON_SHANGHAI,
    OPERATOR_KEY,
    Clock,
    Upstream,
    create_marketing_topics,
    marketing_settings,
    new_key,
    operator_headers,
    post,
    put,
    running_marketing,
)
from zerocontact.common.v1 import party_pb2
from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.marketing.api import ProductIn, request_fingerprint
from zerocontact.marketing.app import run_due_schedules
from zerocontact.marketing.idempotency import fingerprint
from zerocontact.platform.ids import new_id

PRODUCT = {
    "product_id": "wealth-r3",
    "kind": "wealth",
    "name": "进取理财",
    "risk_level": 3,
}
VARIANT = {
    "id": "card",
    "channel": "in_app",
    "title": "进取理财",
    "body": "了解一下。" + DISCLOSURE,
}


def _campaign(**change: Any) -> dict[str, Any]:
    return {
        "name": "c",
        "goal": "g",
        "budget_minor": 10_000,
        "product_id": "wealth-r3",
        "segment_id": "customers",
        "holdout_percent": 0,
        "variants": [VARIANT],
    } | change


async def _counts(repo: Any) -> dict[str, int]:
    names = ("products", "segments", "campaigns", "preferences", "idempotency", "studios")
    return {n: await getattr(repo, n).count_documents({}) for n in names}


async def test_every_v1_route_needs_the_operator_credential_and_an_operator_id(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    async with running_marketing(settings, Clock()) as svc:
        repo = svc.app.state.deps.repo
        before = await _counts(repo)
        # Every route the service documents (OpenAPI), path parameters filled in.
        routes = [
            (method.upper(), re.sub(r"\{[^}]+\}", "x1", path))
            for path, operations in svc.app.openapi()["paths"].items()
            if path.startswith("/v1/")
            for method in operations
        ]
        assert len(routes) >= 20
        wrong = "wrong-operator-key-0123456789abcdef"
        async with httpx.AsyncClient(base_url=svc.url, timeout=5) as bare:
            for method, path in routes:
                for key_headers in ({}, {"X-Operator-Key": wrong}, {"X-Operator-Key": ""}):
                    r = await bare.request(
                        method,
                        path,
                        json={"segment_id": "x", "name": "n", "rule": {"all": []}},
                        headers={"Idempotency-Key": new_key(), "X-Operator-Id": "alice"}
                        | key_headers,
                    )
                    assert r.status_code == 403, (method, path, r.text)
                    assert r.json()["title"] == "credential_required"
                    assert wrong not in r.text
                # The right key without a (valid) operator id: a 422 naming the header.
                for bad_id in (None, "", "alice smith", "a" * 65, "<script>"):
                    h = {"X-Operator-Key": OPERATOR_KEY, "Idempotency-Key": new_key()}
                    if bad_id is not None:
                        h["X-Operator-Id"] = bad_id
                    r = await bare.request(method, path, json={}, headers=h)
                    assert r.status_code == 422, (method, path, bad_id, r.text)
                    assert any("X-Operator-Id" in e["field"] for e in r.json()["errors"])
            for open_path in ("/healthz", "/readyz", "/metrics"):
                assert (await bare.get(open_path)).status_code == 200
            # The same call with the credential works.
            ok = await bare.put(
                "/v1/products/wealth-r3",
                json=PRODUCT,
                headers=operator_headers("alice") | {"Idempotency-Key": new_key()},
            )
            assert ok.status_code == 200, ok.text
        assert before == {n: 0 for n in before}
        after = await _counts(repo)
        assert after == before | {"products": 1, "idempotency": 1}


async def test_identical_requests_fired_together_have_exactly_one_effect(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    async with running_marketing(settings, Clock()) as svc:
        c = svc.client
        repo = svc.app.state.deps.repo
        await put(c, "/v1/products/wealth-r3", PRODUCT)
        rule = {"attr": "risk_grade", "op": ">=", "value": 3}
        await put(
            c, "/v1/segments/customers", {"segment_id": "customers", "name": "c", "rule": rule}
        )
        seen: dict[int, int] = {}
        for attempt in range(5):
            key = f"together-{attempt:02d}"
            body = _campaign(name=f"twice-{attempt}")
            responses = await asyncio.gather(
                *(post(c, "/v1/campaigns", body, key=key) for _ in range(4))
            )
            for r in responses:
                seen[r.status_code] = seen.get(r.status_code, 0) + 1
                assert r.status_code in (201, 409), r.text
                if r.status_code == 409:
                    assert r.json()["title"] == "request_in_progress" and r.json()["retry"]
            assert await repo.campaigns.count_documents({"name": f"twice-{attempt}"}) == 1
            ids = {r.json()["id"] for r in responses if r.status_code == 201}
            assert len(ids) == 1
            # Once answered, a retry is a replay; the same key with another body is a 422.
            replay = await post(c, "/v1/campaigns", body, key=key)
            assert replay.status_code == 201 and replay.json()["id"] in ids
            other = await post(c, "/v1/campaigns", _campaign(name="other"), key=key)
            assert other.status_code == 422 and other.json()["title"] == "idempotency_key_reused"
            # The same key and body from another operator is another request, too.
            as_bob = await post(c, "/v1/campaigns", body, key=key, operator="bob")
            assert as_bob.status_code == 422
        assert await repo.campaigns.count_documents({}) == 5
        # Every attempt's 4 requests: 201 (the one that ran, or a replay) or 409.
        assert sum(seen.values()) == 20
        print(f"concurrent duplicates: {seen}")


async def _customers(c: Any, repo: Any, parties: list[str]) -> None:
    await put(c, "/v1/products/wealth-r3", PRODUCT)
    rule = {"attr": "risk_grade", "op": ">=", "value": 3}
    await put(c, "/v1/segments/customers", {"segment_id": "customers", "name": "c", "rule": rule})
    for party in parties:
        await put(c, f"/v1/parties/{party}/preferences", {"consented_channels": ["in_app"]})
        assert (
            await post(c, f"/v1/parties/{party}/risk-tolerance", {"grade": 3})
        ).status_code == 200

    async def all_in_segment() -> bool:
        return await repo.profiles.count_documents({"segments.customers": True}) == len(parties)

    await eventually(all_in_segment, within_s=60, interval=0.3)


async def _approved(c: Any, body: dict[str, Any]) -> str:
    created = await post(c, "/v1/campaigns", body)
    assert created.status_code == 201, created.text
    cid: str = created.json()["id"]
    assert (await post(c, f"/v1/campaigns/{cid}/review")).json()["status"] == "pending_approval"
    assert (await post(c, f"/v1/campaigns/{cid}/approve", operator="bob")).status_code == 200
    return cid


async def test_a_scheduled_campaign_runs_once_at_its_time_and_stops_at_its_budget(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    clock = Clock()
    async with running_marketing(settings, clock) as svc:
        c = svc.client
        deps = svc.app.state.deps
        repo = deps.repo
        parties = [f"sched-{i}" for i in range(5)]
        await _customers(c, repo, parties)
        start = NOON_SHANGHAI + timedelta(hours=1)
        # 5 consenting members, 100 per contact, a budget of 250: two sends, three refused.
        cid = await _approved(
            c,
            _campaign(start_at=start.isoformat(), budget_minor=250, cost_per_contact_minor=100),
        )
        # Before its time: the scheduler (ticking every 0.2 s) leaves it alone.
        await asyncio.sleep(1.0)
        assert "run" not in (await c.get(f"/v1/campaigns/{cid}")).json()
        assert await run_due_schedules(deps) == []

        clock.now = start

        async def finished() -> Any:
            doc = (await c.get(f"/v1/campaigns/{cid}")).json()
            run = doc.get("run") or {}
            return doc if run.get("state") == "done" else None

        doc = await eventually(finished, within_s=30, interval=0.2)
        assert doc["run"]["cause"] == "scheduled" and doc["scheduled_run"]["run_id"]
        assert doc["run"]["outcomes"] == {"delivered": 2, "budget_exhausted": 3}
        assert doc["spent_minor"] == 200
        # Later ticks (and a direct one) do not run it again.
        clock.now = start + timedelta(hours=2)
        await asyncio.sleep(1.0)
        assert await run_due_schedules(deps) == []
        again = (await c.get(f"/v1/campaigns/{cid}")).json()
        assert again["runs"] == 1 and again["scheduled_run"] == doc["scheduled_run"]
        assert await repo.deliveries.count_documents({"campaign_id": cid}) == 2
        refused = [
            s
            async for s in repo.suppressions.find(
                {"campaign_id": cid, "reason": "budget_exhausted"}
            )
        ]
        assert len(refused) == 3 and {s["party_id"] for s in refused} < set(parties)
        evaluation = (await c.get(f"/v1/campaigns/{cid}/evaluation")).json()
        assert evaluation["cost_minor"] == 200 and evaluation["spent_minor"] == 200
        assert evaluation["suppressed"] == {"budget_exhausted": 3}
        # A manual run after the budget is spent sends nothing more.
        assert (await post(c, f"/v1/campaigns/{cid}/execute")).status_code == 202
        doc = await eventually(lambda: _runs_done(c, cid, 2), within_s=30, interval=0.2)
        assert doc["run"]["outcomes"] == {"budget_exhausted": 5}
        assert await repo.deliveries.count_documents({"campaign_id": cid}) == 2


async def _runs_done(c: Any, cid: str, runs: int) -> Any:
    doc = (await c.get(f"/v1/campaigns/{cid}")).json()
    return doc if doc.get("runs") == runs and doc["run"]["state"] == "done" else None


async def test_concurrent_scheduler_ticks_claim_a_due_campaign_once(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    """Replicas tick at the same moment: the compare-and-set lets one of them start it."""
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    # The app's own ticker is slowed so that only the ticks fired here race.
    settings = settings.model_copy(update={"schedule_poll_s": 3600.0})
    clock = Clock()
    async with running_marketing(settings, clock) as svc:
        c = svc.client
        deps = svc.app.state.deps
        await _customers(c, deps.repo, ["tick-1", "tick-2"])
        start = NOON_SHANGHAI + timedelta(minutes=5)
        cids = [
            await _approved(c, _campaign(name=f"t{i}", start_at=start.isoformat()))
            for i in range(3)
        ]
        clock.now = start
        results = await asyncio.gather(*(run_due_schedules(deps) for _ in range(6)))
        claimed = [cid for result in results for cid in result]
        assert sorted(claimed) == sorted(cids)
        for cid in cids:
            doc = await eventually(lambda cid=cid: _runs_done(c, cid, 1), within_s=30, interval=0.2)
            assert doc["run"]["outcomes"] == {"delivered": 2}


async def test_a_key_left_in_flight_by_a_dead_process_is_taken_over_after_its_lease(
    engines: Engines, create_topic: Callable[..., Awaitable[str]], unique_name: Callable[[str], str]
) -> None:
    """A record still ``in_flight`` within the lease is a 409; one older than the lease (the
    process that claimed it died) is taken over, and the request runs once."""
    topics = await create_marketing_topics(create_topic)
    settings = marketing_settings(engines, topics, unique_name)
    async with running_marketing(settings, Clock()) as svc:
        c = svc.client
        records = svc.app.state.deps.repo.idempotency
        # The product route's fingerprint is of its validated body (defaults filled in).
        digest = fingerprint(
            request_fingerprint("alice", ProductIn(**PRODUCT).model_dump(mode="json"))
        )
        for key, age_s in (("fresh-claim-1", 1.0), ("stale-claim-1", 3600.0)):
            await records.insert_one(
                {
                    "_id": f"product:{key}",
                    "state": "in_flight",
                    "fingerprint": digest,
                    "token": "dead-process",
                    "started_s": time.time() - age_s,
                }
            )
        fresh = await c.put(
            "/v1/products/wealth-r3", json=PRODUCT, headers={"Idempotency-Key": "fresh-claim-1"}
        )
        assert fresh.status_code == 409 and fresh.json()["title"] == "request_in_progress"
        assert await svc.app.state.deps.repo.products.count_documents({}) == 0
        stale = await c.put(
            "/v1/products/wealth-r3", json=PRODUCT, headers={"Idempotency-Key": "stale-claim-1"}
        )
        assert stale.status_code == 200, stale.text
        assert await svc.app.state.deps.repo.products.count_documents({}) == 1
        record = await records.find_one({"_id": "product:stale-claim-1"})
        assert record is not None and record["state"] == "done" and "token" not in record
        replay = await c.put(
            "/v1/products/wealth-r3", json=PRODUCT, headers={"Idempotency-Key": "stale-claim-1"}
        )
        assert replay.json() == stale.json()


async def test_a_kyc_level_marketing_does_not_know_is_dead_lettered_and_the_stream_goes_on(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    unique_name: Callable[[str], str],
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    """Found by tests/chaos/poison.py: a ``KycLevelChanged`` with an unknown ``to_level`` (99)
    was written into the profile as ``kyc_level: 99``, which no segment rule means. It now goes
    to ``<identity topic>.dlq`` with the consumer's error headers, and the next record of the
    partition is applied."""
    topics = await create_marketing_topics(create_topic)
    await kafka_admin.create_topics([NewTopic(f"{topics.identity}.dlq", 1, 1)])
    settings = marketing_settings(engines, topics, unique_name).model_copy(
        update={"assistant_topic": await create_topic("assistant")}
    )
    upstream = Upstream(engines.kafka_bootstrap, topics)
    await upstream.start()
    poisoned, good = f"party-poison-{new_id()[-8:]}", f"party-good-{new_id()[-8:]}"
    try:
        async with running_marketing(settings, Clock()):
            for party, level in ((poisoned, 99), (good, identity_pb.KYC_LEVEL_VERIFIED)):
                w = identity_pb.IdentityEvent()
                k = w.kyc_level_changed
                k.party.kind, k.party.party_id = party_pb2.PartyRef.PARTY_KIND_CUSTOMER, party
                k.to_level = level  # type: ignore[assignment]  # 99: not a KycLevel
                k.changed_at.FromDatetime(NOON_SHANGHAI)
                # One key, so one partition: the good record waits behind the poison.
                await upstream.send(topics.identity, "same-key", w)
            mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(engines.mongodb_uri)
            try:
                profiles = mongo[settings.mongodb_database]["profiles"]

                async def applied() -> bool:
                    found = await profiles.find_one({"_id": good})
                    return found is not None and found.get("kyc_level") == 3

                await eventually(applied, within_s=30, interval=0.2)
                assert await profiles.find_one({"_id": poisoned, "kyc_level": 99}) is None
            finally:
                await mongo.close()
        consumer = AIOKafkaConsumer(
            f"{topics.identity}.dlq", bootstrap_servers=engines.kafka_bootstrap,
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            dead = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()
        headers = dict(dead.headers)
        assert headers["dlq_consumer_group"] == settings.consumer_group.encode()
        assert headers["dlq_original_topic"] == topics.identity.encode()
        assert b"unknown to_level 99" in headers["dlq_error"]
    finally:
        await upstream.stop()
