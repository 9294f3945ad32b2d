"""Per-team access on the SASL_SSL listener: SCRAM over TLS, ACLs enforced.

The session's engines may have been started by an older checkout (no SASL_SSL listener), so
these tests start a broker of their own from the same cache, on free ports, with the
current engines.py configuration; they never touch the shared engines. With external
engines (``KAFKA_BOOTSTRAP_SERVERS``) they are skipped: that broker's listeners are unknown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from tests.integration.harness import free_port
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection
from zerocontact.platform.kafka.consumer import ConsumedEvent, ConsumerRunner
from zerocontact.platform.kafka.producer import EventPublisher

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / "deploy" / "local" / "engines.py"
CLI = Path(sys.executable).with_name("zerocontact")
TEAM = "risk"


@dataclass(frozen=True)
class SecuredBroker:
    plaintext: str
    sasl_ssl: str
    cafile: str
    admin_password: str
    team_password: str

    def team(self, password: str | None = None, **overrides: str) -> KafkaConnection:
        options = {
            "security_protocol": "SASL_SSL",
            "sasl_username": TEAM,
            "ssl_cafile": self.cafile,
            **overrides,
        }
        return KafkaConnection(
            self.sasl_ssl,
            sasl_password=SecretStr(password or self.team_password),
            **options,  # type: ignore[arg-type]
        )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("external engines (KAFKA_BOOTSTRAP_SERVERS): no SASL_SSL listener known")
    cache = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache")
    if not (cache / "kafka" / "libs").is_dir():
        pytest.skip(f"no Kafka jars in {cache / 'kafka' / 'libs'}: run `make fetch`")
    home = tmp_path_factory.mktemp("secured") / "engines"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(cache / "kafka" / "libs")
    (home / "bin").symlink_to(cache / "bin")
    kafka, sasl = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env = {
        **base,
        "ZC_LOCAL_HOME": str(home),
        "ZC_KAFKA_PORT": str(kafka),
        "ZC_KAFKA_SASL_PORT": str(sasl),
        "ZC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "ZC_MONGODB_PORT": str(free_port()),
    }
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", "--engines-only"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    try:
        secrets = json.loads((home / "run" / "local-secrets.json").read_text())
        cafile = str(home / "kafka-tls" / "ca.pem")
        created = _cli(env, "topics", "create", "--bootstrap", f"127.0.0.1:{kafka}")
        assert created.returncode == 0, created.stderr
        # The operator's path: the local admin (a super user) over SASL_SSL, not PLAINTEXT.
        admin = {
            **env,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{sasl}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_USERNAME": "zc-admin",
            "KAFKA_SASL_PASSWORD": secrets["KAFKA_ADMIN_PASSWORD"],
            "KAFKA_SSL_CAFILE": cafile,
        }
        password_file = home / "risk.password"
        made = _cli(
            admin,
            "kafka", "users", "create", TEAM,
            "--read", "loan.events.v1", "--write", "signals.risk.v1",
            "--password-file", str(password_file),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "READ" in made.stdout and "group risk." in made.stdout
        assert f"password written to {password_file}" in made.stdout
        assert oct(password_file.stat().st_mode & 0o777) == "0o600"
        yield SecuredBroker(
            plaintext=f"127.0.0.1:{kafka}",
            sasl_ssl=f"127.0.0.1:{sasl}",
            cafile=cafile,
            admin_password=secrets["KAFKA_ADMIN_PASSWORD"],
            team_password=password_file.read_text().strip(),
        )
    finally:
        subprocess.run([sys.executable, str(ENGINES), "stop"], env=env, capture_output=True)


@pytest.fixture
async def loan_record(secured_broker: SecuredBroker) -> AsyncIterator[bytes]:
    """One CloudEvent on loan.events.v1, written over the loopback listener.

    A CloudEvent, not raw bytes: the platform's ConsumerRunner (a test below) would take raw
    bytes for a poison record, and the team may not write to loan.events.v1.dlq.
    """
    value = uuid.uuid4().hex.encode()
    event = CloudEvent(
        id=value.decode(), source="/test", type="test.Thing", subject="party-1", data=value
    )
    producer = AIOKafkaProducer(bootstrap_servers=secured_broker.plaintext, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            "loan.events.v1", value, key=b"party-1", headers=event.headers()
        )
    finally:
        await producer.stop()
    yield value


async def _consume(connection: KafkaConnection, topic: str, group: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        **connection.client_kwargs(),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        batches = await consumer.getmany(timeout_ms=10_000)
        for _ in range(20):
            if batches:
                break
            batches = await consumer.getmany(timeout_ms=1_000)
        await consumer.commit()
        return [record.value for records in batches.values() for record in records if record.value]
    finally:
        await consumer.stop()


async def test_a_team_reads_its_topic_with_its_own_group(
    secured_broker: SecuredBroker, loan_record: bytes
) -> None:
    values = await _consume(secured_broker.team(), "loan.events.v1", "risk.scoring")
    assert loan_record in values


async def test_the_platform_publisher_and_consumer_runner_work_as_the_team(
    secured_broker: SecuredBroker,
) -> None:
    subject = uuid.uuid4().hex
    event = CloudEvent(id=subject, source="/test", type="test.Thing", subject=subject, data=b"")
    writer = EventPublisher(bootstrap_servers=secured_broker.plaintext, client_id="test-loan")
    await writer.start(wait=True)
    try:
        await writer.publish("loan.events.v1", subject, event)
    finally:
        await writer.stop()
    seen = asyncio.Event()

    async def handle(consumed: ConsumedEvent) -> None:
        if consumed.event.subject == subject:
            seen.set()

    team = secured_broker.team()
    publisher = EventPublisher(bootstrap_servers=team, client_id="risk-scoring")
    await publisher.start(wait=True)
    runner = ConsumerRunner(
        bootstrap_servers=team,
        topics=["loan.events.v1"],
        group_id="risk.runner",
        handler=handle,
        publisher=publisher,
    )
    await runner.start()
    try:
        await asyncio.wait_for(seen.wait(), 30)
        written = await publisher.publish("signals.risk.v1", subject, event)
        assert written.topic == "signals.risk.v1"
    finally:
        await runner.stop()
        await publisher.stop()


async def test_a_team_cannot_produce_to_a_topic_it_only_reads(
    secured_broker: SecuredBroker,
) -> None:
    producer = AIOKafkaProducer(**secured_broker.team().client_kwargs(), acks="all")
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait("loan.events.v1", b"forged")
    finally:
        await producer.stop()


async def test_a_team_cannot_read_a_topic_it_was_not_given(
    secured_broker: SecuredBroker,
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await _consume(secured_broker.team(), "identity.events.v1", "risk.identity")


async def test_a_team_cannot_join_another_teams_group(
    secured_broker: SecuredBroker, loan_record: bytes
) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await _consume(secured_broker.team(), "loan.events.v1", "loan.projection")


async def test_a_wrong_password_is_refused(
    secured_broker: SecuredBroker, caplog: pytest.LogCaptureFixture
) -> None:
    producer = AIOKafkaProducer(
        **secured_broker.team(password="not-the-password").client_kwargs(),
        request_timeout_ms=5_000,
    )
    try:
        # The client's own level, whatever another module set it to for its session.
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()
    # aiokafka gives up with "Unable to bootstrap"; the broker's reason is in its log line.
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


async def test_a_client_without_tls_is_refused(secured_broker: SecuredBroker) -> None:
    producer = AIOKafkaProducer(
        **secured_broker.team(security_protocol="SASL_PLAINTEXT").client_kwargs(),
        request_timeout_ms=5_000,
    )
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()


def test_deleting_the_team_removes_its_acls(secured_broker: SecuredBroker) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        "KAFKA_BOOTSTRAP_SERVERS": secured_broker.plaintext,
    }
    made = _cli(env, "kafka", "users", "create", "scratch", "--read", "loan.events.v1")
    assert made.returncode == 0, made.stderr
    assert "password, shown once: " in made.stdout
    deleted = _cli(env, "kafka", "users", "delete", "scratch")
    assert deleted.returncode == 0, deleted.stderr
    assert "scratch: 3 ACLs and its SCRAM-SHA-512 credential removed" in deleted.stdout
