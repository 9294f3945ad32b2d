"""Shared set-up of the gateway integration tests (no tests here): the real identity, loan and
payroll services on uvicorn, the real signals worker as a subprocess, and the gateway over
mTLS, all on topics and databases of the module's own, with partners and certificates issued
by the gateway's own development CA.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyotp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from pymongo import AsyncMongoClient

from tests.integration.catalog_keys import check_record
from tests.integration.harness import (
    RUN_ID,
    Engines,
    RunningApp,
    eventually,
    random_key,
    serve,
    start_signals_worker,
    stop_process,
)
from tests.integration.test_identity_service import PASSWORD, Person, credit_code
from zerocontact.assistant.app import create_app as assistant_app
from zerocontact.assistant.settings import AssistantSettings
from zerocontact.gateway import certs
from zerocontact.gateway.app import RunningGateway, running
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.v1 import audit_pb2, identity_pb2
from zerocontact.identity.app import create_app as identity_app
from zerocontact.identity.notifier import SmsGatewaySimulator
from zerocontact.identity.settings import IdentitySettings
from zerocontact.loan.app import create_app as loan_app
from zerocontact.loan.settings import LoanSettings
from zerocontact.partner_client import PartnerClient, new_key
from zerocontact.payroll.app import create_app as payroll_app
from zerocontact.payroll.settings import PayrollSettings

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "operator-key-for-tests-0123456789abcdef-0123"
ALL_SCOPES = [
    "identity:write", "identity:read", "loans:write", "loans:read", "payroll:write",
    "payroll:read", "signals:read", "assistant:write", "assistant:read",
]  # fmt: skip


@dataclass
class Topics:
    identity: str
    notifications: str
    loan: str
    risk: str
    payroll: str
    audit: str
    assistant: str


@dataclass
class Partner:
    partner_id: str
    credential: str
    cert: bytes
    key: bytes


@dataclass
class Suite:
    """Everything a gateway test needs."""

    engines: Engines
    topics: Topics
    certs_dir: Path
    ca: certs.Issued
    gateway: RunningGateway
    identity: RunningApp
    loan: RunningApp
    payroll: RunningApp
    assistant: RunningApp | None = None
    partners: dict[str, Partner] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)  # what one test leaves for the next
    dbs: dict[str, str] = field(default_factory=dict)  # the services' and gateway's databases
    signals_port: int = 0  # the signals worker's web port (0: started without it)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def client(self, partner: str, *, credential: str | None = None) -> PartnerClient:
        p = self.partners[partner]
        return PartnerClient.connect(
            self.target,
            ca=self.ca.cert_pem,
            cert=p.cert,
            key=p.key,
            credential=credential if credential is not None else p.credential,
            server_name="localhost",
        )

    async def add_partner(self, partner_id: str, scopes: list[str], rate: float = 500.0) -> Partner:
        issued = certs.issue_partner(self.ca, partner_id)
        credential = await self.gateway.gateway.partners.register(
            partner_id, scopes, rate_per_s=rate
        )
        partner = Partner(partner_id, credential, issued.cert_pem, issued.key_pem)
        self.partners[partner_id] = partner
        return partner


@dataclass
class Customer:
    """A customer registered through a partner, with a TOTP authenticator enrolled."""

    person: Person
    party_id: str
    totp: pyotp.TOTP
    device_id: str

    token: str = ""
    used_step: int = 0  # the last TOTP time step sent (identity accepts each step once)

    async def aal2(self, zc: PartnerClient, *, attempts: int = 3) -> str:
        """Authenticate through the gateway: password, then TOTP → an AAL2 token.

        The code is the next time step's (identity accepts ±1 step and refuses a step it has
        accepted before, so this never collides with the enrolment's code), or a later one than
        the last sent. A login that ran out of its deadline or was refused as transient
        (``UNAVAILABLE``) starts over, up to ``attempts`` times, as a person's app would: a new
        password login and a step not sent before (the one sent may have been used, its answer
        lost), waiting until identity's clock accepts it."""
        for attempt in range(1, attempts + 1):
            try:
                return await self._aal2(zc)
            except grpc.aio.AioRpcError as err:
                transient = err.code() in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNAVAILABLE,
                )
                if attempt == attempts or not transient:
                    raise
        raise AssertionError("unreachable")

    async def _aal2(self, zc: PartnerClient) -> str:
        started = await zc.start_authentication(
            self.person.phone, PASSWORD, device_id=self.device_id
        )
        assert started.assurance_level == identity_pb2.ASSURANCE_LEVEL_AAL1
        period = self.totp.interval
        step = max(int(time.time()) // period + 1, self.used_step + 1)
        early = (step - 1) * period - time.time()  # identity accepts one step ahead at most
        if early > 0:
            await asyncio.sleep(early + 0.5)
        self.used_step = step
        done = await zc.complete_authentication(
            started.access_token,
            identity_pb2.SECOND_FACTOR_TOTP,
            self.totp.at(step * period),
            device_id=self.device_id,
        )
        assert done.assurance_level == identity_pb2.ASSURANCE_LEVEL_AAL2, done
        self.token = done.access_token
        return done.access_token


async def register_customer(suite: Suite, zc: PartnerClient, *, verify: bool = True) -> Customer:
    """Register through the gateway; enrol TOTP on identity (the customer's own app does this,
    not the partner); with ``verify``, become KYC VERIFIED through the gateway."""
    person = Person()
    party = await zc.register_customer(
        identity_pb2.RegisterCustomerRequest(**person.body(date_of_birth=person.birth.isoformat()))
    )
    device = f"device-{uuid.uuid4().hex[:10]}"
    started = await zc.start_authentication(person.phone, PASSWORD, device_id=device)
    headers = {"Authorization": f"Bearer {started.access_token}", "X-Device-Id": device}
    r = await suite.identity.client.post(
        f"/v1/customers/{party.party_id}/factors/totp",
        headers={**headers, "Idempotency-Key": new_key()},
    )
    assert r.status_code == 201, r.text
    totp = pyotp.parse_uri(r.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    r = await suite.identity.client.post(
        f"/v1/customers/{party.party_id}/factors/totp/confirmation",
        json={"code": totp.now()},
        headers={**headers, "Idempotency-Key": new_key()},
    )
    assert r.status_code == 200, r.text
    customer = Customer(person, party.party_id, totp, device)
    if verify:
        token = await customer.aal2(zc)
        verified = await zc.verify_customer(party.party_id, token=token)
        assert verified.kyc_level == identity_pb2.KYC_LEVEL_VERIFIED
    return customer


async def make_topics(admin: AIOKafkaAdminClient) -> Topics:
    prefix = f"t{RUN_ID}-gw-{uuid.uuid4().hex[:8]}"
    topics = Topics(
        f"{prefix}-identity", f"{prefix}-notes", f"{prefix}-loan", f"{prefix}-risk",
        f"{prefix}-payroll", f"{prefix}-audit", f"{prefix}-assistant",
    )  # fmt: skip
    names = [
        topics.identity, topics.notifications, topics.loan, topics.risk, topics.payroll,
        topics.assistant,
    ]  # fmt: skip
    await admin.create_topics(
        [NewTopic(t, 6, 1) for t in names]
        + [NewTopic(f"{t}.dlq", 1, 1) for t in names]
        + [NewTopic(topics.audit, 3, 1)]
        + [NewTopic(f"{topics.risk}-{t}", 6, 1) for t in ("marketing", "engagement")]
    )
    return topics


async def signals_ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            r = await client.get(f"http://127.0.0.1:{port}/readyz")
    except httpx.TransportError:
        return False
    return r.status_code == 200


async def start_suite(
    engines: Engines,
    admin: AIOKafkaAdminClient,
    mongo: AsyncMongoClient[dict[str, Any]],
    tmp: Path,
    stack: AsyncExitStack,
    *,
    with_signals: bool = True,
    with_assistant: bool = False,
    gateway_overrides: dict[str, Any] | None = None,
) -> Suite:
    topics = await make_topics(admin)
    tag = uuid.uuid4().hex[:8]
    names = ("identity", "loan", "payroll", "rail", "gateway", "assistant")
    dbs = {n: f"t{RUN_ID}_gw_{n}_{tag}" for n in names}
    for name in dbs.values():
        stack.push_async_callback(mongo.drop_database, name)

    sms = SmsGatewaySimulator()
    raw = sms.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    identity_settings = IdentitySettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
        mongodb_database=dbs["identity"], events_topic=topics.identity,
        notifications_topic=topics.notifications, consumer_group=f"t{RUN_ID}-gw-id-{tag}",
        outbox_sweep_interval_s=0.5, pii_key=random_key(), pii_index_key=random_key(),
        jwt_signing_seed=random_key(),
        sms_gateway_public_key=base64.urlsafe_b64encode(raw).decode().rstrip("="),
        sms_gateway_key=random_key(), operator_key=random_key(), password_time_cost=1,
        password_memory_kib=1024, password_parallelism=1, trusted_proxies=["127.0.0.1"],
    )  # type: ignore[arg-type]  # fmt: skip
    identity = await stack.enter_async_context(serve(identity_app(identity_settings)))
    jwks = f"{identity.url}/.well-known/jwks.json"
    loan_settings = LoanSettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
        mongodb_database=dbs["loan"], consumer_group=f"t{RUN_ID}-gw-loan-{tag}",
        events_topic=topics.loan, risk_topic=topics.risk, identity_topic=topics.identity,
        operator_key=OPERATOR_KEY, outbox_sweep_interval_s=0.5, rail_latency_ms=5,
        recovery_interval_s=0.5, recovery_min_age_s=0.5, jwks_url=jwks,
    )  # type: ignore[arg-type]  # fmt: skip
    loan = await stack.enter_async_context(serve(loan_app(loan_settings)))
    payroll_settings = PayrollSettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
        mongodb_database=dbs["payroll"], rail_simulator_database=dbs["rail"],
        identity_topic=topics.identity, events_topic=topics.payroll,
        consumer_group=f"t{RUN_ID}-gw-payroll-{tag}", outbox_sweep_interval_s=0.5,
        scheduler_interval_s=0.3, rail_simulator_latency_s=0.001, retry_initial_s=0.01,
        retry_max_s=0.05, pii_key=random_key(), pii_index_key=random_key(),
        identity_jwks_url=jwks,
    )  # type: ignore[arg-type]  # fmt: skip
    payroll = await stack.enter_async_context(serve(payroll_app(payroll_settings)))
    assistant = None
    if with_assistant:
        assistant_settings = AssistantSettings(
            kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
            mongodb_database=dbs["assistant"], events_topic=topics.assistant,
            consumer_group=f"t{RUN_ID}-gw-assistant-{tag}", outbox_sweep_interval_s=0.5,
            operator_key=OPERATOR_KEY, pii_key=random_key(), pii_index_key=random_key(),
            jwks_url=jwks, identity_url=identity.url, loan_url=loan.url, payroll_url=payroll.url,
        )  # type: ignore[arg-type]  # fmt: skip
        assistant = await stack.enter_async_context(serve(assistant_app(assistant_settings)))

    signals_port = 0
    if with_signals:
        data = tmp / "signals" / "data"
        data.mkdir(parents=True)
        process, port = start_signals_worker(
            engines,
            app_id=f"t{RUN_ID}-gw-signals-{uuid.uuid4().hex[:8]}",
            data_dir=data,
            log=data.parent / "signals.log",
            topics={
                "loan": topics.loan,
                "identity": topics.identity,
                "risk": topics.risk,
                "marketing": f"{topics.risk}-marketing",
                "engagement": f"{topics.risk}-engagement",
                "assistant": topics.assistant,
            },
        )
        stack.callback(stop_process, process)
        await eventually(lambda: signals_ready(port), within_s=90, interval=0.3)
        signals_port = port

    certs_dir = tmp / "certs"
    ca = certs.issue_ca()
    ca.write(certs_dir, "ca")
    certs.issue_server(ca).write(certs_dir, "server")
    gateway_settings = GatewaySettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap, mongodb_uri=engines.mongodb_uri,
        mongodb_database=dbs["gateway"], grpc_host="127.0.0.1", grpc_port=0, http_port=0,
        tls_cert_file=str(certs_dir / "server.crt"), tls_key_file=str(certs_dir / "server.key"),
        client_ca_file=str(certs_dir / "ca.crt"), credential_pepper=random_key(),
        pii_key=random_key(), pii_index_key=random_key(),
        identity_url=identity.url, loan_url=loan.url, payroll_url=payroll.url,
        assistant_url=assistant.url if assistant else "http://127.0.0.1:9",
        loan_topic=topics.loan, payroll_topic=topics.payroll, risk_topic=topics.risk,
        audit_topic=topics.audit, webhook_consumer_group=f"t{RUN_ID}-gw-hooks-{tag}",
        **(gateway_overrides or {}),
    )  # type: ignore[arg-type]  # fmt: skip
    gw = await stack.enter_async_context(running(gateway_settings))
    return Suite(
        engines, topics, certs_dir, ca, gw, identity, loan, payroll, assistant, dbs=dbs,
        signals_port=signals_port,
    )  # fmt: skip


class AuditReader:
    """Follows the audit topic from the beginning."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        self.records: list[audit_pb2.GatewayCallAudited] = []
        self.raw: list[bytes] = []

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def poll(self) -> None:
        for batch in (await self.consumer.getmany(timeout_ms=200)).values():
            for record in batch:
                check_record("gateway.audit.v1", record.key, record.headers, record.value)
                self.raw.append(record.value or b"")
                event = audit_pb2.GatewayAuditEvent.FromString(record.value or b"")
                self.records.append(event.call_audited)

    async def find(self, **match: Any) -> audit_pb2.GatewayCallAudited:
        async def probe() -> audit_pb2.GatewayCallAudited | None:
            await self.poll()
            for r in self.records:
                if all(getattr(r, k) == v for k, v in match.items()):
                    return r
            return None

        found: audit_pb2.GatewayCallAudited = await eventually(probe, within_s=15)
        return found


def code_of(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    return error.code()


async def aclose(stack: AsyncExitStack) -> None:
    await stack.aclose()


__all__ = ["ALL_SCOPES", "AsyncIterator", "credit_code"]
