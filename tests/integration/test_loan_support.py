"""Shared set-up of the loan integration tests (no tests here): topics of the test's own, the
loan app on a real uvicorn server, identity's tokens and events, risk assessments.

Identity's events are built with identity's protos and RiskAssessments with the signals'
protos, and both are produced to the real broker: the loan service consumes them exactly as
it would from the real producers. Tokens are signed with identity's own key code and
verified by identity's own verifier (the key set served in-process, as identity does).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from google.protobuf.timestamp_pb2 import Timestamp

from tests.integration.catalog_keys import check_record
from tests.integration.harness import Engines, RunningApp, eventually, serve
from zerocontact.common.v1 import party_pb2
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.loan.app import create_app
from zerocontact.loan.authority import IdentityTokenAuthority
from zerocontact.loan.settings import LoanSettings
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.signals.v1 import risk_pb2

ISSUER = "https://identity.test"
AUDIENCE = "zerocontact"
OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef"


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


@dataclass
class Topics:
    identity: str
    risk: str
    loan: str


@dataclass
class Tokens:
    """Access tokens as identity issues them."""

    keys: SigningKeys = field(
        default_factory=lambda: SigningKeys.from_config(
            pem=None,
            seed=base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
            previous_pems=(),
        )
    )

    def issue(self, subject: str, *, aal: Aal = Aal.AAL2, auth_age_s: int = 0) -> str:
        now = datetime.now(UTC)
        methods = (Method.PASSWORD, Method.TOTP) if aal is Aal.AAL2 else (Method.PASSWORD,)
        grant = AccessGrant(subject, new_id(), aal, methods, now - timedelta(seconds=auth_age_s))
        return self.keys.sign(
            access_claims(
                grant, issuer=ISSUER, audience=AUDIENCE, now=now, ttl=timedelta(minutes=5)
            )
        )

    def authority(self) -> IdentityTokenAuthority:
        async def jwks() -> dict[str, Any]:
            return self.keys.jwks()

        return IdentityTokenAuthority(
            TokenVerifier(jwks, issuer=ISSUER, audience=AUDIENCE), step_up_max_age_s=300
        )

    def headers(
        self, subject: str, *, key: str | None = None, aal: Aal = Aal.AAL2, **extra: str
    ) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.issue(subject, aal=aal)}", **extra}
        if key:
            h["Idempotency-Key"] = key
        return h


async def create_loan_topics(kafka_admin: Any, unique_name: Callable[[str], str]) -> Topics:
    topics = Topics(unique_name("identity"), unique_name("risk"), unique_name("loan"))
    await kafka_admin.create_topics(
        [NewTopic(t, 6, 1) for t in (topics.identity, topics.risk, topics.loan)]
        + [NewTopic(f"{t}.dlq", 1, 1) for t in (topics.identity, topics.risk)]
    )
    return topics


def loan_settings(
    engines: Engines, topics: Topics, database: str, group: str, **overrides: Any
) -> LoanSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": engines.kafka_bootstrap,
        "mongodb_uri": engines.mongodb_uri,
        "mongodb_database": database,
        "consumer_group": group,
        "events_topic": topics.loan,
        "risk_topic": topics.risk,
        "identity_topic": topics.identity,
        "operator_key": OPERATOR_KEY,
        "outbox_sweep_interval_s": 0.5,
        "rail_latency_ms": 5,
        "recovery_interval_s": 0.5,
        "recovery_min_age_s": 0.5,
    }
    return LoanSettings(**(values | overrides))


@asynccontextmanager
async def running_loan(settings: LoanSettings, tokens: Tokens) -> AsyncIterator[RunningApp]:
    async with serve(create_app(settings, authority=tokens.authority())) as running:
        yield running


class EventBus:
    """Produces identity and risk events to the real broker; reads loan events back."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=True, acks="all"
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def _send(
        self, topic: str, key: str, message: Any, inner: Any, *, event_id: str | None = None
    ) -> str:
        cloud = CloudEvent(
            id=event_id or new_id(),
            source="/tests",
            type=inner.DESCRIPTOR.full_name,
            subject=key,
            data=message.SerializeToString(),
        )
        await self.producer.send_and_wait(
            topic, cloud.data, key=key.encode(), headers=cloud.headers()
        )
        return cloud.id

    async def register_customer(
        self, party_id: str, *, birth_year: int = 1988, kyc: int = identity_pb2.KYC_LEVEL_VERIFIED
    ) -> None:
        now = datetime.now(UTC)
        reg = identity_pb2.IdentityEvent()
        reg.customer_registered.customer_id = party_id
        reg.customer_registered.id_number_masked = "110***********1234"
        reg.customer_registered.phone_masked = "+86*******5678"
        reg.customer_registered.birth_year = birth_year
        reg.customer_registered.registered_at.CopyFrom(_ts(now))
        await self._send(self.topics.identity, party_id, reg, reg.customer_registered)
        level = identity_pb2.KYC_LEVEL_NONE
        for target in (
            identity_pb2.KYC_LEVEL_BASIC,
            identity_pb2.KYC_LEVEL_VERIFIED,
            identity_pb2.KYC_LEVEL_ENHANCED,
        ):
            if target > kyc:
                break
            change = identity_pb2.IdentityEvent()
            e = change.kyc_level_changed
            e.party.CopyFrom(
                party_pb2.PartyRef(kind=party_pb2.PartyRef.PARTY_KIND_CUSTOMER, party_id=party_id)
            )
            e.from_level, e.to_level = level, target
            e.actor, e.reason, e.evidence = "system", "test", "amr=pwd,otp"
            e.changed_at.CopyFrom(_ts(now))
            await self._send(self.topics.identity, party_id, change, e)
            level = target

    async def assess(
        self,
        submitted: loan_pb2.LoanApplicationSubmitted,
        application_event_id: str,
        *,
        band: int = risk_pb2.RISK_BAND_LOW,
        score: int = 120,
        rules: tuple[risk_pb2.RuleResult, ...] = (),
        event_id: str | None = None,
    ) -> str:
        wrapper = risk_pb2.RiskEvent()
        a = wrapper.risk_assessment
        a.assessment_id = new_id()
        a.application_id = submitted.application_id
        a.party_id = submitted.party_id
        a.application_event_id = application_event_id
        a.score, a.band = score, band
        a.rules.extend(rules)
        a.assessed_at.CopyFrom(_ts(datetime.now(UTC)))
        a.scorecard_version = "test-1"
        return await self._send(self.topics.risk, submitted.party_id, wrapper, a, event_id=event_id)

    async def alert(self, party_id: str, description: str) -> None:
        wrapper = risk_pb2.RiskEvent()
        a = wrapper.risk_alert
        a.alert_id = new_id()
        a.party_id = party_id
        a.kind = risk_pb2.RISK_ALERT_KIND_DEVICE_SHARED
        a.reasons.add(
            name="device_shared_by_many_parties",
            threshold="3",
            observed="9",
            triggered=True,
            points=400,
            description=description,
        )
        a.raised_at.CopyFrom(_ts(datetime.now(UTC)))
        await self._send(self.topics.risk, party_id, wrapper, a)


@dataclass
class LoanRecord:
    kind: str
    message: Any
    event_id: str
    key: str
    traceparent: str | None = None


class LoanTopicReader:
    """Follows the loan topic from the beginning, collecting decoded events once per ``ce_id``.

    Delivery is at least once (a sweep may republish an event a relay is flushing); like every
    consumer, the reader keeps the first copy of each event id.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self.records: list[LoanRecord] = []
        self.off_catalog: list[str] = []  # records not keyed as proto/topics.toml says
        self._seen: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for batch in (await self.consumer.getmany(timeout_ms=200)).values():
                for r in batch:
                    try:
                        check_record("loan.events.v1", r.key, r.headers, r.value)
                    except AssertionError as exc:  # a task's failure would go unseen
                        self.off_catalog.append(str(exc))
                    wrapper = loan_pb2.LoanEvent.FromString(r.value or b"")
                    kind = wrapper.WhichOneof("event") or ""
                    headers = dict(r.headers)
                    if headers["ce_id"] in self._seen:
                        continue
                    self._seen.add(headers["ce_id"])
                    assert (
                        headers["ce_type"].decode() == getattr(wrapper, kind).DESCRIPTOR.full_name
                    )
                    self.records.append(
                        LoanRecord(
                            kind,
                            getattr(wrapper, kind),
                            headers["ce_id"].decode(),
                            (r.key or b"").decode(),
                            headers["traceparent"].decode() if "traceparent" in headers else None,
                        )
                    )

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()

    def of(self, kind: str, **match: Any) -> list[LoanRecord]:
        assert not self.off_catalog, self.off_catalog
        return [
            r
            for r in self.records
            if r.kind == kind and all(getattr(r.message, k) == v for k, v in match.items())
        ]

    async def wait_for(
        self, kind: str, count: int = 1, within_s: float = 20, **match: Any
    ) -> list[LoanRecord]:
        async def probe() -> list[LoanRecord] | None:
            found = self.of(kind, **match)
            return found if len(found) >= count else None

        result: list[LoanRecord] = await eventually(probe, within_s=within_s)
        return result


async def apply_for_loan(
    app: RunningApp,
    tokens: Tokens,
    party_id: str,
    *,
    key: str | None = None,
    amount: str = "50000.00",
    product_id: str = "merchant-310",
    term: int = 12,
    device_id: str = "device-1",
) -> Any:
    return await app.client.post(
        "/v1/applications",
        json={
            "party_id": party_id,
            "product_id": product_id,
            "amount": amount,
            "currency": "CNY",
            "term_months": term,
            "purpose": "inventory",
            "device_id": device_id,
            "source_address": "203.0.113.7",
        },
        headers=tokens.headers(party_id, key=key or f"apply-{new_id()[-12:]}", aal=Aal.AAL1),
    )


async def wait_state(
    app: RunningApp, tokens: Tokens, application_id: str, party_id: str, state: str
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await app.client.get(
            f"/v1/applications/{application_id}", headers=tokens.headers(party_id, aal=Aal.AAL1)
        )
        body: dict[str, Any] = r.json()
        return body if body.get("state") == state else None

    result: dict[str, Any] = await eventually(probe, within_s=20)
    return result
