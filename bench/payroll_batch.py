"""Benchmark: a 10,000-item payroll batch, from submission to the last SalaryPaid event and a
balanced ledger, on the real engines (Kafka + the MongoDB-wire server).

The payroll app runs in this process on a real uvicorn server; the batch is submitted over
HTTP as JSON, approved with an AAL2 token (signed by identity's key ring), paid through
``PaymentRailSimulator`` (latency per rail request as configured), and the run ends when a
consumer has read one SalaryPaid per item from the topic and ``check_invariants()`` is OK.
For scale it also times a raw ``insert_many`` of the same number of documents into the same
database in the same run and prints the ratio.

    .venv/bin/python bench/payroll_batch.py [--items 10000] [--rail-latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zerocontact.common.v1 import party_pb2
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.payroll.app import create_app
from zerocontact.payroll.domain.cards import luhn_complete
from zerocontact.payroll.settings import PayrollSettings
from zerocontact.payroll.v1 import events_pb2
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.ledger import Ledger

ISSUER, AUDIENCE = "https://identity.zerocontact.internal", "zerocontact"
# Submit to the last SalaryPaid for 10,000 items on two cores (docs/performance.md).
GOAL_S = 3.0


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Tokens:
    def __init__(self) -> None:
        self.keys = SigningKeys(Ed25519PrivateKey.generate())

    def verifier(self) -> TokenVerifier:
        async def jwks() -> dict[str, Any]:
            return self.keys.jwks()

        return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)

    def headers(self, subject: str) -> dict[str, str]:
        now = datetime.now(UTC)
        grant = AccessGrant(subject, new_id(), Aal.AAL2, (Method.PASSWORD, Method.TOTP), now)
        token = self.keys.sign(
            access_claims(
                grant, issuer=ISSUER, audience=AUDIENCE, now=now, ttl=timedelta(minutes=5)
            )
        )
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}


async def identity_events(bootstrap: str, topic: str, enterprise: str, rep: str) -> None:
    publisher = EventPublisher(bootstrap_servers=bootstrap, client_id="bench-identity")
    await publisher.start(wait=True)
    try:
        for field, message in (
            (
                "enterprise_registered",
                identity_pb2.EnterpriseRegistered(
                    enterprise_id=enterprise, name="Bench Co", legal_representative_id=rep
                ),
            ),
            (
                "kyc_level_changed",
                identity_pb2.KycLevelChanged(
                    party=party_pb2.PartyRef(
                        kind=party_pb2.PartyRef.PARTY_KIND_ENTERPRISE, party_id=enterprise
                    ),
                    to_level=identity_pb2.KYC_LEVEL_VERIFIED,
                ),
            ),
        ):
            wrapper = identity_pb2.IdentityEvent()
            getattr(wrapper, field).CopyFrom(message)
            await publisher.publish(
                topic,
                enterprise,
                CloudEvent(
                    id=new_id(),
                    source="/bench",
                    type=message.DESCRIPTOR.full_name,
                    subject=enterprise,
                    data=wrapper.SerializeToString(),
                ),
            )
    finally:
        await publisher.stop()


async def run(items: int, rail_latency: float) -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    mongo_uri = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
    tag = uuid.uuid4().hex[:8]
    db_name, rail_db = f"bench_payroll_{tag}", f"bench_rail_{tag}"
    identity_topic, payroll_topic = f"bench-identity-{tag}", f"bench-payroll-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics(
        [
            NewTopic(t, p, 1)
            for t, p in (
                (identity_topic, 3),
                (payroll_topic, 3),
                (f"{identity_topic}.dlq", 1),
                (f"{payroll_topic}.dlq", 1),
            )
        ]
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    tokens = Tokens()
    settings = PayrollSettings(
        kafka_bootstrap_servers=bootstrap,
        mongodb_uri=mongo_uri,
        mongodb_database=db_name,
        rail_simulator_database=rail_db,
        identity_topic=identity_topic,
        events_topic=payroll_topic,
        consumer_group=f"bench-{tag}",
        pii_key=SecretStr(_key()),
        pii_index_key=SecretStr(_key()),
        rail_simulator_latency_s=rail_latency,
        log_level="WARNING",
    )
    port = _port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, verifier=tokens.verifier()),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    serving = asyncio.create_task(server.serve())
    consumer = AIOKafkaConsumer(
        payroll_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        while not server.started:  # noqa: ASYNC110  (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        await consumer.start()
        enterprise, rep = new_id(), new_id()
        await identity_events(bootstrap, identity_topic, enterprise, rep)
        rng = random.Random(1)
        cards: set[str] = set()
        while len(cards) < items:
            cards.add(luhn_complete("622202" + "".join(rng.choices("0123456789", k=12))))
        body = [
            {"payee_name": f"员工{i}", "card_number": c, "amount": "8888.88"}
            for i, c in enumerate(sorted(cards))
        ]
        total = 888888 * items
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            while (  # noqa: ASYNC110  (polling the API until identity events arrive)
                await client.post(
                    "/v1/employers", headers=tokens.headers(rep), json={"employer_id": enterprise}
                )
            ).status_code != 201:
                await asyncio.sleep(0.1)
            r = await client.post(
                f"/v1/employers/{enterprise}/top-ups",
                headers=tokens.headers(rep),
                json={"rail_reference": f"BENCH-{tag}", "amount": f"{total / 100 + 1:.2f}"},
            )
            assert r.status_code == 200, r.text

            # baseline: a raw bulk insert of as many documents into the same database
            raw = [
                {
                    "_id": f"raw-{i}",
                    "batch_id": "raw",
                    "seq": i,
                    "card_enc": "v1:" + "x" * 60,
                    "card_masked": "622202*********0000",
                    "amount_minor": 888888,
                    "state": "PENDING",
                }
                for i in range(items)
            ]
            t = time.perf_counter()
            await mongo[db_name]["raw_baseline"].insert_many(raw, ordered=False)
            raw_s = time.perf_counter() - t

            t0 = time.perf_counter()
            r = await client.post(
                f"/v1/employers/{enterprise}/batches",
                headers=tokens.headers(rep),
                json={"items": body, "item_count": items, "control_sum": f"{total / 100:.2f}"},
            )
            assert r.status_code == 201, r.text[:500]
            batch_id = r.json()["batch_id"]
            t_submit = time.perf_counter()
            r = await client.post(f"/v1/batches/{batch_id}/approval", headers=tokens.headers(rep))
            assert r.status_code == 200, r.text
            t_approve = time.perf_counter()
            paid: set[str] = set()
            while len(paid) < items:
                for records in (
                    await consumer.getmany(timeout_ms=100, max_records=10_000)
                ).values():
                    for record in records:
                        event = events_pb2.PayrollEvent.FromString(record.value)
                        if event.WhichOneof("event") == "salary_paid":
                            paid.add(event.salary_paid.end_to_end_id)
                if time.perf_counter() - t0 > 600:
                    raise SystemExit(f"only {len(paid)} SalaryPaid after 600 s")
            t_events = time.perf_counter()
            ledger = Ledger(mongo[db_name])
            while True:
                batch = await mongo[db_name]["batches"].find_one({"_id": batch_id})
                if batch and batch["state"] == "COMPLETED":
                    break
                await asyncio.sleep(0.01)
            report = await ledger.check_invariants()
            reserve = await ledger.balance(f"payroll:batch:{batch_id}:reserve")
            t_end = time.perf_counter()
        total_s = t_end - t0
        ok = report.ok and reserve.minor_units == 0
        print(f"payroll_batch: {items} items, rail latency {rail_latency * 1000:.0f} ms/request")
        print(f"  submit (HTTP JSON, validate, encrypt, bulk insert): {t_submit - t0:7.3f} s")
        print(
            f"  approve (step-up, reserve posting):                 {t_approve - t_submit:7.3f} s"
        )
        print(
            f"  pay until last SalaryPaid read from Kafka:          {t_events - t_approve:7.3f} s"
        )
        print(f"  completion + ledger check_invariants:               {t_end - t_events:7.3f} s")
        print(f"  total: {total_s:.3f} s, {items / total_s:,.0f} items/s, ledger balanced: {ok}")
        print(
            f"  raw insert_many of {items} docs: {raw_s:.3f} s; ratio total/raw = "
            f"{total_s / raw_s:.1f}x; goal <= {GOAL_S:g} s: {'met' if total_s <= GOAL_S else 'MISSED'}"
        )
        return 0 if ok else 1
    finally:
        await consumer.stop()
        server.should_exit = True
        await serving
        await admin.delete_topics(
            [identity_topic, payroll_topic, f"{identity_topic}.dlq", f"{payroll_topic}.dlq"]
        )
        await admin.close()
        await mongo.drop_database(db_name)
        await mongo.drop_database(rail_db)
        await mongo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rail-latency", type=float, default=0.02, help="seconds per request")
    args = parser.parse_args()
    return asyncio.run(run(args.items, args.rail_latency))


if __name__ == "__main__":
    sys.exit(main())
