"""Every service as its own Kafka principal: the walking skeleton's two apps over SASL_SSL.

A private broker (as tests/integration/test_kafka_access.py: its own ``ZC_LOCAL_HOME`` and free
ports, never the shared engines) with ACLs enforced; every service's SCRAM user and ACLs are
created from deploy/tools/kafka_users.py through the platform's ``create_team_user``. Then the
real skeleton apps run with ``KAFKA_SECURITY_PROTOCOL=SASL_SSL`` as ``kafka-skeleton``: the
accounts app publishes, the projection consumes under its group, end to end; the signals Faust
worker runs as ``kafka-signals`` (its internal topics under its PREFIXED ACLs); identity, loan,
payroll and marketing each run their real app as their own user (/readyz, their consumer group
joined, their outbox relay publishing their topic); the gateway's event hub reads with no group
and its audit sink writes ``gateway.audit.v1`` as ``kafka-gateway``. A service principal may not
write another service's topic.

The integration conftest's session engines (an autouse fixture) start on the default ports
unless ``ZC_LOCAL_HOME`` and the ``ZC_*_PORT`` variables say otherwise: on a machine whose
default ports are taken, set them to a private home and free ports.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAuthorizationFailedError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from deploy.tools.kafka_users import ServiceAccess, service_access
from tests.integration.harness import eventually, free_port, random_key, serve
from tests.integration.test_signals_pipeline import application
from zerocontact.gateway.audit import AuditSink
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.gateway.watch import EventHub
from zerocontact.identity.app import create_app as identity_app
from zerocontact.identity.settings import IdentitySettings
from zerocontact.loan.app import create_app as loan_app
from zerocontact.loan.settings import LoanSettings
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.marketing.app import create_app as marketing_app
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.payroll.app import create_app as payroll_app
from zerocontact.payroll.settings import PayrollSettings
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.access import create_acls, create_team_user, new_password
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection
from zerocontact.platform.outbox import OutboxEvent, outbox_document, protobuf_event
from zerocontact.signals.v1 import risk_pb2
from zerocontact.skeleton.app import create_accounts_app, create_projection_app
from zerocontact.skeleton.settings import AccountsSettings, ProjectionSettings

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / "deploy" / "local" / "engines.py"
CLI = Path(sys.executable).with_name("zerocontact")


@dataclass(frozen=True)
class Broker:
    plaintext: str
    sasl_ssl: str
    cafile: str
    admin_password: str
    mongodb_uri: str

    def connection(self, user: str, password: str) -> KafkaConnection:
        return KafkaConnection(
            self.sasl_ssl,
            security_protocol="SASL_SSL",
            sasl_username=user,
            sasl_password=SecretStr(password),
            ssl_cafile=self.cafile,
        )

    def settings(self, user: str, password: str) -> dict[str, Any]:
        """A service's settings on the SASL_SSL listener as ``user``."""
        return {
            "kafka_bootstrap_servers": self.sasl_ssl,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": user,
            "kafka_sasl_password": password,
            "kafka_ssl_cafile": self.cafile,
            "mongodb_uri": self.mongodb_uri,
        }


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("external engines (KAFKA_BOOTSTRAP_SERVERS): no SASL_SSL listener known")
    cache = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache")
    if not (cache / "kafka" / "libs").is_dir():
        pytest.skip(f"no Kafka jars in {cache / 'kafka' / 'libs'}: run `make fetch`")
    home = tmp_path_factory.mktemp("principals") / "engines"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(cache / "kafka" / "libs")
    (home / "bin").symlink_to(cache / "bin")
    kafka, sasl, mongodb = free_port(), free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env = {
        **base,
        "ZC_LOCAL_HOME": str(home),
        "ZC_KAFKA_PORT": str(kafka),
        "ZC_KAFKA_SASL_PORT": str(sasl),
        "ZC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "ZC_MONGODB_PORT": str(mongodb),
    }
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", "--engines-only"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    try:
        created = subprocess.run(
            [str(CLI), "topics", "create", "--bootstrap", f"127.0.0.1:{kafka}"],
            env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        secrets = json.loads((home / "run" / "local-secrets.json").read_text())
        yield Broker(
            plaintext=f"127.0.0.1:{kafka}",
            sasl_ssl=f"127.0.0.1:{sasl}",
            cafile=str(home / "kafka-tls" / "ca.pem"),
            admin_password=secrets["KAFKA_ADMIN_PASSWORD"],
            mongodb_uri=f"mongodb://127.0.0.1:{mongodb}/",
        )
    finally:
        subprocess.run([sys.executable, str(ENGINES), "stop"], env=env, capture_output=True)


@pytest.fixture(scope="module")
def passwords(broker: Broker) -> dict[str, str]:
    """Every service's user, created as the operator would: the admin over SASL_SSL."""

    async def create() -> dict[str, str]:
        admin = AIOKafkaAdminClient(
            **broker.connection("zc-admin", broker.admin_password).client_kwargs()
        )
        await admin.start()
        made: dict[str, str] = {}
        try:
            for access in service_access().values():
                password = new_password()
                await create_team_user(admin, access.team_access(), password)
                if access.internal_acls():  # Faust's internal topics
                    await create_acls(admin, access.team_access().principal, access.internal_acls())
                made[access.service] = password
        finally:
            await admin.close()
        return made

    made = asyncio.run(create())
    assert made.keys() == service_access().keys()
    return made


def _access(service: str) -> ServiceAccess:
    return service_access()[service]


async def test_the_skeleton_runs_end_to_end_as_its_own_principal(
    broker: Broker, passwords: dict[str, str]
) -> None:
    user = _access("skeleton").user
    kafka = broker.settings(user, passwords["skeleton"])
    accounts = create_accounts_app(
        AccountsSettings(
            **kafka,
            mongodb_database="zc_principals_accounts",
            outbox_sweep_interval_s=0.5,
            pii_key=SecretStr(random_key()),
            pii_index_key=SecretStr(random_key()),
        )
    )
    projection = create_projection_app(
        ProjectionSettings(**kafka, mongodb_database="zc_principals_projection")
    )
    async with serve(accounts) as acc, serve(projection) as proj:
        body = {"holder_name": "Li Wei", "holder_phone": "+8613812345678", "currency": "CNY"}
        r = await acc.client.post(
            "/v1/accounts", json=body, headers={"Idempotency-Key": "open-key-0001"}
        )
        assert r.status_code == 201, r.text
        account_id = r.json()["account_id"]
        r = await acc.client.post(
            f"/v1/accounts/{account_id}/deposits",
            json={"amount": "125.50", "currency": "CNY"},
            headers={"Idempotency-Key": "d-000000001"},
        )
        assert r.status_code == 200, r.text

        async def projected() -> dict[str, Any] | None:
            r = await proj.client.get(f"/v1/balances/{account_id}")
            return r.json() if r.status_code == 200 and r.json()["balance_minor"] else None

        balance = await eventually(projected, within_s=60)
        assert balance["balance_minor"] == 12550


@pytest.mark.parametrize(
    ("service", "foreign"),
    [("skeleton", "loan.events.v1"), ("loan", "skeleton.events.v1"),
     ("signals", "loan.events.v1"), ("gateway", "signals.risk.v1")],
)  # fmt: skip
async def test_a_service_cannot_write_another_services_topic(
    broker: Broker, passwords: dict[str, str], service: str, foreign: str
) -> None:
    assert foreign not in _access(service).write
    connection = broker.connection(_access(service).user, passwords[service])
    producer = AIOKafkaProducer(**connection.client_kwargs(), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(foreign, b"forged", key=b"k")
        # its own topic is fine
        own = next(t for t in _access(service).write if not t.endswith(".dlq"))
        await producer.send_and_wait(own, b"", key=b"k")
    finally:
        await producer.stop()


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "zerocontact.signals", "worker", "-l", "warn"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_the_signals_worker_runs_as_its_own_principal(
    broker: Broker, passwords: dict[str, str], tmp_path: Path
) -> None:
    """Faust over SASL_SSL as kafka-signals: creates its internal topics, reads, scores, writes."""
    access = _access("signals")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        "KAFKA_BOOTSTRAP_SERVERS": broker.sasl_ssl,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": access.user,
        "KAFKA_SASL_PASSWORD": passwords["signals"],
        "KAFKA_SSL_CAFILE": broker.cafile,
        "ZC_SIGNALS_DATA_DIR": str(tmp_path / "data"),
        "ZC_SIGNALS_HTTP_PORT": str(port),
        "ZC_SIGNALS_PRODUCER_LINGER_MS": "1",
        "ZC_SIGNALS_SESSION_TIMEOUT_S": "6",
    }
    log_path = tmp_path / "worker.log"
    process = _start_worker(env, log_path)
    try:

        async def ready() -> bool:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    response = await client.get(f"http://127.0.0.1:{port}/readyz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await eventually(ready, within_s=90, interval=0.5)
        party = f"party-{uuid.uuid4().hex[:8]}"
        event = application(party, device="device-1", address="10.0.0.1")
        producer = AIOKafkaProducer(bootstrap_servers=broker.plaintext, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                "loan.events.v1", event.data, key=party.encode(), headers=event.headers()
            )
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "signals.risk.v1", bootstrap_servers=broker.plaintext, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:

            async def assessed() -> bool:
                batches = await consumer.getmany(timeout_ms=500)
                return any(
                    record.key == party.encode()
                    and risk_pb2.RiskEvent.FromString(record.value).WhichOneof("event")
                    == "risk_assessment"
                    for records in batches.values()
                    for record in records
                    if record.value
                )

            await eventually(assessed, within_s=60)
        finally:
            await consumer.stop()
        log = log_path.read_text(errors="replace")
        assert "TopicAuthorizationFailed" not in log and "AuthorizationFailed" not in log, log[
            -3000:
        ]
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


# --- identity, loan, payroll and marketing: the real app as the service's own user ----------
#
# Each app starts with its catalog topics and consumer group (what its ACLs name), on the
# private broker's SASL_SSL listener as its user: /readyz 200 means its consumer group joined
# (group and topic READ ACLs) and its publisher reached the broker. Then one event, stored in
# an aggregate's outbox as the service's own writes store them, is published by the app's
# running outbox relay: the relay's producer writes the service's topic as its user. Marketing
# also publishes a real call's event (a party's preferences, put through its API); the others'
# cheapest emitting calls need tokens from identity or events from other services.

OPERATOR_KEY = SecretStr("o" * 32)
NOWHERE = "http://127.0.0.1:9/.well-known/jwks.json"  # no token is checked here


def _identity(kafka: dict[str, Any], db: str) -> tuple[FastAPI, str, str, str]:
    raw = (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    settings = IdentitySettings(
        **kafka, mongodb_database=db, outbox_sweep_interval_s=0.5, pii_key=SecretStr(random_key()),
        pii_index_key=SecretStr(random_key()), jwt_signing_seed=SecretStr(random_key()),
        sms_gateway_public_key=SecretStr(base64.urlsafe_b64encode(raw).decode().rstrip("=")),
        sms_gateway_key=SecretStr(random_key()), operator_key=SecretStr(random_key()), password_time_cost=1,
        password_memory_kib=1024, password_parallelism=1,
    )  # fmt: skip
    return identity_app(settings), settings.events_topic, settings.consumer_group, "customers"


def _loan(kafka: dict[str, Any], db: str) -> tuple[FastAPI, str, str, str]:
    settings = LoanSettings(
        **kafka, mongodb_database=db, operator_key=OPERATOR_KEY, outbox_sweep_interval_s=0.5,
        jwks_url=NOWHERE,
    )  # fmt: skip
    return loan_app(settings), settings.events_topic, settings.consumer_group, "applications"


def _payroll(kafka: dict[str, Any], db: str) -> tuple[FastAPI, str, str, str]:
    settings = PayrollSettings(
        **kafka, mongodb_database=db, rail_simulator_database=f"{db}_rail",
        outbox_sweep_interval_s=0.5, pii_key=SecretStr(random_key()), pii_index_key=SecretStr(random_key()),
        identity_jwks_url=NOWHERE,
    )  # fmt: skip
    return payroll_app(settings), settings.events_topic, settings.consumer_group, "employers"


def _marketing(kafka: dict[str, Any], db: str) -> tuple[FastAPI, str, str, str]:
    settings = MarketingSettings(
        **kafka, mongodb_database=db, operator_key=OPERATOR_KEY, outbox_sweep_interval_s=0.5
    )
    return marketing_app(settings), settings.topic, settings.consumer_group, "preferences"


APPS: dict[str, Callable[[dict[str, Any], str], tuple[FastAPI, str, str, str]]] = {
    "identity": _identity,
    "loan": _loan,
    "payroll": _payroll,
    "marketing": _marketing,
}


async def _group_state(broker: Broker, group: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.plaintext)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    state: str = described.groups[0][2]  # (error, group, state, protocol_type, protocol, members)
    return state


async def _published(
    broker: Broker, topic: str, event_id: str | None = None, *, key: str | None = None
) -> bool:
    """Whether ``topic`` holds the event ``event_id`` (or a record keyed ``key``)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.plaintext, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        for _ in range(10):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if event_id is not None and dict(record.headers).get("ce_id") == (
                        event_id.encode()
                    ):
                        return True
                    if key is not None and record.key == key.encode():
                        return True
    finally:
        await consumer.stop()
    return False


@pytest.mark.parametrize("service", sorted(APPS))
async def test_a_service_app_runs_as_its_own_principal(
    broker: Broker, passwords: dict[str, str], service: str
) -> None:
    kafka = broker.settings(_access(service).user, passwords[service])
    db = f"zc_principals_{service}"
    app, topic, group, collection = APPS[service](kafka, db)
    assert topic in _access(service).write
    async with serve(app) as running:

        async def ready() -> bool:
            r = await running.client.get("/readyz")
            return r.status_code == 200

        await eventually(ready, within_s=60, interval=0.3)
        # /readyz says the consumer runs; the join follows (an ACL refusal would stop it there)

        async def joined() -> bool:
            return await _group_state(broker, group) == "Stable"

        await eventually(joined, within_s=30, interval=0.3)

        # One event in an aggregate's outbox, as the service's writes store it; the app's own
        # relay (sweeping every 0.5 s) publishes it with the service's credentials.
        event = OutboxEvent(
            topic=topic,
            key=f"principal-{service}",
            event=CloudEvent(
                id=new_id(), source=f"/zerocontact/{service}",
                type="zerocontact.test.PrincipalProbe", subject=f"principal-{service}", data=b"",
            ),
        )  # fmt: skip
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(broker.mongodb_uri)
        try:
            await mongo[db][collection].insert_one(
                {"_id": f"principal-probe-{uuid.uuid4().hex[:8]}", "version": 1,
                 **outbox_document([event], version=1)}
            )  # fmt: skip
            await eventually(lambda: _published(broker, topic, event.event.id), within_s=30)
            if service == "marketing":  # a real call's event, through the API, as the user
                party = f"party-{uuid.uuid4().hex[:8]}"
                r = await running.client.put(
                    f"/v1/parties/{party}/preferences",
                    json={"consented_channels": ["in_app"]},
                    headers={
                        "Idempotency-Key": uuid.uuid4().hex,
                        "X-Operator-Key": OPERATOR_KEY.get_secret_value(),
                        "X-Operator-Id": "alice",
                    },
                )
                assert r.status_code in (200, 201), r.text
                await eventually(lambda: _published(broker, topic, key=party), within_s=30)
        finally:
            await mongo.drop_database(db)
            await mongo.close()


async def test_the_gateways_kafka_parts_run_as_its_own_principal(
    broker: Broker, passwords: dict[str, str]
) -> None:
    """The event hub reads with no group, the audit sink writes gateway.audit.v1, as kafka-gateway."""
    settings = GatewaySettings.model_construct()  # only the topic defaults are read
    connection = broker.connection(_access("gateway").user, passwords["gateway"])
    hub = EventHub(
        connection,
        loan_topic=settings.loan_topic,
        payroll_topic=settings.payroll_topic,
        risk_topic=settings.risk_topic,
    )
    sink = AuditSink(connection, settings.audit_topic)
    await hub.start()
    await sink.start()
    try:
        application_id = f"app-{uuid.uuid4().hex[:8]}"
        wrapper = loan_pb2.LoanEvent()
        wrapper.loan_application_submitted.application_id = application_id
        # As loan's outbox writes it (the hub reads the CloudEvents headers first, decision 29).
        event = protobuf_event(wrapper, topic="loan", key=application_id, source="/test/loan").event
        with hub.watch(f"application:{application_id}") as queue:
            producer = AIOKafkaProducer(bootstrap_servers=broker.plaintext, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(
                    settings.loan_topic,
                    event.data,
                    key=application_id.encode(),
                    headers=event.headers(),
                )
            finally:
                await producer.stop()
            notice = await asyncio.wait_for(queue.get(), 30)
        assert notice.kind == "loan_application_submitted"

        partner = f"partner-{uuid.uuid4().hex[:8]}"
        sink.record(
            partner_id=partner, method="/probe", outcome="OK", reason="", latency_us=1,
            replayed=False, started_at=datetime.now(UTC), peer="127.0.0.1",
        )  # fmt: skip
    finally:
        await sink.stop()
        await hub.stop()

    consumer = AIOKafkaConsumer(
        settings.audit_topic, bootstrap_servers=broker.plaintext, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:

        async def audited() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            return any(
                record.key == partner.encode() for records in batches.values() for record in records
            )

        await eventually(audited, within_s=30)
    finally:
        await consumer.stop()
