"""Shared set-up of the payroll integration tests (no tests here).

Identity's side is real where it matters to payroll: enterprise and KYB events are produced
to the real broker with identity's own protos, and access tokens are signed with identity's
own key ring (``zerocontact.identity.tokens``) and checked by its ``TokenVerifier``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient

from tests.integration.catalog_keys import check_record
from tests.integration.harness import Engines, random_key
from zerocontact.common.v1 import party_pb2
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.payroll.settings import PayrollSettings
from zerocontact.payroll.v1 import events_pb2
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.ledger import Ledger

ISSUER = "https://identity.zerocontact.internal"
AUDIENCE = "zerocontact"


class Tokens:
    """Identity's signing key ring, minting access tokens for tests."""

    def __init__(self) -> None:
        self.keys = SigningKeys(Ed25519PrivateKey.generate())

    def verifier(self) -> TokenVerifier:
        async def jwks() -> dict[str, Any]:
            return self.keys.jwks()

        return TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE)

    def token(self, subject: str, *, aal: str = "AAL2", age_s: float = 0) -> str:
        now = datetime.now(UTC)
        methods = (Method.PASSWORD, Method.TOTP) if aal == "AAL2" else (Method.PASSWORD,)
        grant = AccessGrant(subject, new_id(), Aal(aal), methods, now - timedelta(seconds=age_s))
        return self.keys.sign(
            access_claims(
                grant, issuer=ISSUER, audience=AUDIENCE, now=now, ttl=timedelta(minutes=5)
            )
        )

    def headers(
        self, subject: str, *, aal: str = "AAL2", age_s: float = 0, key: str | None = None
    ) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token(subject, aal=aal, age_s=age_s)}",
            "Idempotency-Key": key or new_id().replace("-", ""),
        }


@dataclass
class PayrollEnv:
    engines: Engines
    settings: PayrollSettings
    identity_topic: str
    payroll_topic: str
    tokens: Tokens
    publisher: EventPublisher
    mongo: AsyncMongoClient[dict[str, Any]]

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.mongodb_database]

    @property
    def rail_db(self) -> Any:
        return self.mongo[self.settings.rail_simulator_database]

    def ledger(self) -> Ledger:
        return Ledger(self.db)

    async def identity_event(
        self, key: str, field: str, message: Any, event_id: str | None = None
    ) -> str:
        wrapper = identity_pb2.IdentityEvent()
        getattr(wrapper, field).CopyFrom(message)
        event = CloudEvent(
            id=event_id or new_id(),
            source="/zerocontact/identity",
            type=message.DESCRIPTOR.full_name,
            subject=f"party/{key}",
            data=wrapper.SerializeToString(),
        )
        await self.publisher.publish(self.identity_topic, key, event)
        return event.id

    async def verified_enterprise(self, *, name: str = "Acme Ltd") -> tuple[str, str]:
        """Register an enterprise and make it VERIFIED on identity's topic: (id, representative)."""
        enterprise, representative = new_id(), new_id()
        await self.register(enterprise, representative, name=name)
        await self.kyb(enterprise, identity_pb2.KYC_LEVEL_VERIFIED)
        return enterprise, representative

    async def register(self, enterprise: str, representative: str, *, name: str) -> str:
        return await self.identity_event(
            enterprise,
            "enterprise_registered",
            identity_pb2.EnterpriseRegistered(
                enterprise_id=enterprise,
                credit_code="91350100M000100Y43",
                name=name,
                legal_representative_id=representative,
                business_category="F",
            ),
        )

    async def kyb(self, enterprise: str, level: int, event_id: str | None = None) -> str:
        return await self.identity_event(
            enterprise,
            "kyc_level_changed",
            identity_pb2.KycLevelChanged(
                party=party_pb2.PartyRef(
                    kind=party_pb2.PartyRef.PARTY_KIND_ENTERPRISE, party_id=enterprise
                ),
                from_level=identity_pb2.KYC_LEVEL_BASIC,
                to_level=level,  # type: ignore[arg-type]
                actor="system",
                reason="representative verified",
            ),
            event_id=event_id,
        )


def settings_for(
    engines: Engines,
    db: str,
    rail_db: str,
    identity_topic: str,
    payroll_topic: str,
    group: str,
    **overrides: Any,
) -> PayrollSettings:
    values: dict[str, Any] = dict(
        kafka_bootstrap_servers=engines.kafka_bootstrap,
        mongodb_uri=engines.mongodb_uri,
        mongodb_database=db,
        rail_simulator_database=rail_db,
        identity_topic=identity_topic,
        events_topic=payroll_topic,
        consumer_group=group,
        outbox_sweep_interval_s=0.5,
        scheduler_interval_s=0.3,
        rail_simulator_latency_s=0.001,
        retry_initial_s=0.01,
        retry_max_s=0.05,
        pii_key=random_key(),
        pii_index_key=random_key(),
    )
    values.update(overrides)
    return PayrollSettings(**values)


@pytest.fixture
async def payroll_env(
    engines: Engines,
    create_topic: Callable[..., Awaitable[str]],
    kafka_admin: Any,
    unique_name: Callable[[str], str],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[PayrollEnv]:
    identity_topic = await create_topic("identity-events", partitions=3)
    payroll_topic = await create_topic("payroll-events", partitions=3)
    await kafka_admin.create_topics(
        [NewTopic(f"{identity_topic}.dlq", 1, 1), NewTopic(f"{payroll_topic}.dlq", 1, 1)]
    )
    db = unique_name("pay").replace("-", "_")[:60]
    rail_db = unique_name("rail").replace("-", "_")[:60]
    settings = settings_for(
        engines, db, rail_db, identity_topic, payroll_topic, unique_name("payroll-group")
    )
    publisher = EventPublisher(bootstrap_servers=engines.kafka_bootstrap, client_id="test-identity")
    await publisher.start(wait=True)
    try:
        yield PayrollEnv(
            engines, settings, identity_topic, payroll_topic, Tokens(), publisher, mongo_client
        )  # type: ignore[arg-type]
    finally:
        await publisher.stop()
        await mongo_client.drop_database(db)
        await mongo_client.drop_database(rail_db)


async def read_payroll_events(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[tuple[str, Any]]], bool],
    within_s: float = 30.0,
    traceparents: dict[str, str] | None = None,
) -> list[tuple[str, Any]]:
    """(ce_id, PayrollEvent) records of ``topic`` from the beginning, until ``until`` holds;
    ``traceparents`` collects each record's ``traceparent`` header by ``ce_id``."""
    import asyncio

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen: list[tuple[str, Any]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not until(seen):
            if loop.time() > deadline:
                raise AssertionError(f"events not complete within {within_s}s: {len(seen)} seen")
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    check_record("payroll.events.v1", record.key, record.headers, record.value)
                    headers = dict(record.headers)
                    if traceparents is not None and "traceparent" in headers:
                        traceparents[headers["ce_id"].decode()] = headers["traceparent"].decode()
                    seen.append(
                        (
                            headers["ce_id"].decode(),
                            events_pb2.PayrollEvent.FromString(record.value),
                        )
                    )
    finally:
        await consumer.stop()
    return seen


def of_kind(events: list[tuple[str, Any]], kind: str) -> dict[str, Any]:
    """Events of one kind, deduplicated by ce_id."""
    return {ce_id: getattr(e, kind) for ce_id, e in events if e.WhichOneof("event") == kind}


def b64key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
