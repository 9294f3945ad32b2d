"""Identity on real engines: registration, KYC/KYB, MFA, lockout, tokens, events, PII scan.

One service per module (its own database, topics and consumer group); every test registers
its own customers, and the last test scans everything the others left for plaintext
personal data.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import jwt
import pyotp
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI
from pymongo import AsyncMongoClient
from stdnum.cn import ric, uscc

from tests.integration.catalog_keys import check_record
from tests.integration.harness import RUN_ID, Engines, RunningApp, eventually, random_key, serve
from zerocontact.common.v1 import party_pb2
from zerocontact.identity.app import create_app
from zerocontact.identity.notifier import SmsGatewaySimulator
from zerocontact.identity.settings import IdentitySettings
from zerocontact.identity.v1 import events_pb2, notifications_pb2
from zerocontact.platform.auth import InvalidToken, Principal, TokenVerifier
from zerocontact.platform.http import install_operational_routes
from zerocontact.platform.logging import configure_logging

PASSWORD = "correct horse battery staple"


def resident_id(birth: date) -> str:
    """A valid resident ID (Beijing Chaoyang) for ``birth`` with a random sequence number."""
    body = f"110105{birth:%Y%m%d}{random.randrange(1000):03d}"
    return body + ric.calc_check_digit(body + "0")  # it expects a placeholder digit


def mobile() -> str:
    """A valid Chinese mobile number in E.164."""
    return f"+86138{random.randrange(10**8):08d}"


def credit_code() -> str:
    """A valid unified social credit code (enterprise, Beijing)."""
    body = f"91110105{random.randrange(10**9):09d}"
    return body + uscc.calc_check_digit(body)


@dataclass
class Person:
    """A customer's registration data, plaintext (the scan looks for exactly these)."""

    name: str = "李小龙"
    birth: date = field(
        default_factory=lambda: date(1990, 3, 7) + timedelta(days=random.randrange(3000))
    )
    rid: str = ""
    phone: str = field(default_factory=mobile)
    address: str = "北京市朝阳区建国路88号"

    def __post_init__(self) -> None:
        self.rid = self.rid or resident_id(self.birth)

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "name": self.name,
            "resident_id": self.rid,
            "phone": self.phone,
            "date_of_birth": self.birth.isoformat(),
            "address": self.address,
            "password": PASSWORD,
        } | overrides


@dataclass
class Identity:
    """The running service and what the tests need around it."""

    app: RunningApp
    settings: IdentitySettings
    engines: Engines
    gateway: SmsGatewaySimulator
    logs: io.StringIO
    people: list[Person] = field(default_factory=list)
    counter: int = 0

    def key(self) -> str:
        self.counter += 1
        return f"key-{self.counter:08d}-{random.randrange(10**8):08d}"

    def headers(self, token: str | None = None, *, source: str = "203.0.113.7") -> dict[str, str]:
        h = {
            "Idempotency-Key": self.key(),
            "X-Device-Id": "device-test-1",
            "X-Forwarded-For": source,
        }
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    async def post(self, path: str, body: Any = None, token: str | None = None, **kw: Any) -> Any:
        headers = self.headers(token, **kw)
        return await self.app.client.post(path, json=body, headers=headers)

    async def register(self, person: Person | None = None) -> tuple[Person, dict[str, Any]]:
        person = person or Person()
        r = await self.post("/v1/customers", person.body())
        assert r.status_code == 201, r.text
        self.people.append(person)
        return person, r.json()

    async def login(self, person: Person, totp_code: str | None = None, **kw: Any) -> Any:
        body: dict[str, Any] = {"phone": person.phone, "password": PASSWORD}
        if totp_code:
            body["totp_code"] = totp_code
        return await self.post("/v1/sessions", body, **kw)

    async def enrol_totp(self, customer_id: str, token: str) -> tuple[pyotp.TOTP, list[str]]:
        r = await self.post(f"/v1/customers/{customer_id}/factors/totp", token=token)
        assert r.status_code == 201, r.text
        totp = pyotp.parse_uri(r.json()["otpauth_uri"])
        assert isinstance(totp, pyotp.TOTP)
        r = await self.post(
            f"/v1/customers/{customer_id}/factors/totp/confirmation",
            {"code": totp.now()},
            token=token,
        )
        assert r.status_code == 200, r.text
        return totp, r.json()["recovery_codes"]


async def make_topics(admin: AIOKafkaAdminClient, prefix: str) -> tuple[str, str]:
    """Fresh events and notifications topics (with DLQs) named after the catalog's."""
    events, notes = f"{prefix}-identity.events.v1", f"{prefix}-identity.notifications.v1"
    await admin.create_topics(
        [
            NewTopic(events, 3, 1),
            NewTopic(f"{events}.dlq", 1, 1),
            NewTopic(notes, 3, 1),
            NewTopic(f"{notes}.dlq", 1, 1),
        ]
    )
    return events, notes


def settings_for(engines: Engines, *, database: str, events: str, notes: str, group: str,
                 gateway: SmsGatewaySimulator, **overrides: Any) -> IdentitySettings:  # fmt: skip
    """Settings for a test service: cheap hashing and second-scale lockouts."""
    raw = gateway.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": engines.kafka_bootstrap,
        "mongodb_uri": engines.mongodb_uri,
        "mongodb_database": database,
        "events_topic": events,
        "notifications_topic": notes,
        "consumer_group": group,
        "outbox_sweep_interval_s": 0.5,
        "pii_key": random_key(),
        "pii_index_key": random_key(),
        "jwt_signing_seed": random_key(),
        "sms_gateway_public_key": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "sms_gateway_key": random_key(),
        "operator_key": random_key(),
        "password_time_cost": 1,
        "password_memory_kib": 1024,
        "password_parallelism": 1,
        "party_failure_threshold": 3,
        "source_failure_threshold": 4,
        "lockout_base_s": 1.0,
        "lockout_max_s": 4.0,
        "trusted_proxies": ["127.0.0.1"],
        "log_level": "INFO",
    }
    return IdentitySettings(**(values | overrides))


async def running_identity(settings: IdentitySettings, engines: Engines, gateway: SmsGatewaySimulator) -> AsyncIterator[Identity]:  # fmt: skip
    """Serve identity over real HTTP with its logs captured."""
    app = create_app(settings)
    logs = io.StringIO()
    configure_logging(settings.service_name, "INFO", stream=logs)
    async with serve(app) as running:
        yield Identity(running, settings, engines, gateway, logs)


async def read_topic(
    bootstrap: str, topic: str, *, at_least: int = 1, within_s: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` so far (waits until ``at_least`` arrived)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within_s):
            while len(records) < at_least:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    records.extend(batch)
        for batch in (await consumer.getmany(timeout_ms=300)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def identity_events(
    records: list[ConsumerRecord[bytes, bytes]], key: str
) -> list[events_pb2.IdentityEvent]:
    """Decoded events of one party, in order (every record checked against the catalog)."""
    out = []
    for r in records:
        check_record("identity.events.v1", r.key, r.headers, r.value)
        if r.key == key.encode():
            event = events_pb2.IdentityEvent.FromString(r.value)
            kind = event.WhichOneof("event")
            assert (
                kind
                and dict(r.headers)["ce_type"] == getattr(event, kind).DESCRIPTOR.full_name.encode()
            )
            out.append(event)
    return out


def notifications(
    records: list[ConsumerRecord[bytes, bytes]],
) -> list[notifications_pb2.IdentityNotification]:
    """Decoded notifications."""
    return [notifications_pb2.IdentityNotification.FromString(r.value) for r in records]


# ---------------------------------------------------------------- the service under test


@pytest.fixture(scope="module")
async def identity(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Identity]:
    prefix = f"t{RUN_ID}-{uuid.uuid4().hex[:10]}"
    events, notes = await make_topics(kafka_admin, prefix)
    database = f"t_identity_{uuid.uuid4().hex[:12]}"
    gateway = SmsGatewaySimulator()
    settings = settings_for(
        engines,
        database=database,
        events=events,
        notes=notes,
        group=f"{prefix}-kyb",
        gateway=gateway,
    )
    try:
        async for running in running_identity(settings, engines, gateway):
            yield running
    finally:
        await mongo_client.drop_database(database)


def problem_code(response: Any) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    code: str = response.json()["title"]
    return code


# ---------------------------------------------------------------- registration


async def test_registration_stores_encrypted_returns_masked_and_emits_events(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    person, customer = await identity.register()
    assert customer["resident_id"] == f"110{'*' * 11}{person.rid[-4:]}"
    assert customer["phone"] == f"+86*******{person.phone[-4:]}"
    assert customer["address"] == "北京市朝阳区****"
    assert customer["kyc_level"] == "BASIC"
    assert customer["kyc_history"][0] | {"at": None} == {
        "from_level": "NONE", "to_level": "BASIC", "actor": "system",
        "reason": "identity data validated at registration",
        "evidence": "resident ID checksum and birth date, mobile number plan, no duplicate",
        "at": None,
    }  # fmt: skip

    doc = await mongo_client[identity.settings.mongodb_database]["customers"].find_one(
        {"_id": customer["customer_id"]}
    )
    assert doc is not None
    for field_name in ("id_number", "phone", "birth_date", "address"):
        assert doc[f"{field_name}_encrypted"].startswith("v1:")
    assert len(doc["id_number_index"]) == 64 and len(doc["phone_index"]) == 64
    assert doc["credentials"]["password_hash"].startswith("$argon2id$")
    assert person.rid not in str(doc) and person.phone[3:] not in str(doc)

    records = await read_topic(
        identity.engines.kafka_bootstrap, identity.settings.events_topic, at_least=2
    )
    mine = identity_events(records, customer["customer_id"])
    assert [e.WhichOneof("event") for e in mine[:2]] == ["customer_registered", "kyc_level_changed"]
    registered = mine[0].customer_registered
    assert registered.id_number_masked == customer["resident_id"]
    assert registered.phone_masked == customer["phone"]
    assert registered.birth_year == person.birth.year
    changed = mine[1].kyc_level_changed
    assert (changed.from_level, changed.to_level) == (
        events_pb2.KYC_LEVEL_NONE,
        events_pb2.KYC_LEVEL_BASIC,
    )
    assert changed.party.party_id == customer["customer_id"]
    record = next(r for r in records if r.key == customer["customer_id"].encode())
    headers = dict(record.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"/zerocontact/identity"
    assert headers["ce_subject"] == customer["customer_id"].encode()
    assert headers["content-type"] == b"application/protobuf"


async def test_duplicates_are_refused_and_idempotency_keys_replay(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    person = Person()
    headers = identity.headers()
    first = await identity.app.client.post("/v1/customers", json=person.body(), headers=headers)
    assert first.status_code == 201, first.text
    identity.people.append(person)
    replay = await identity.app.client.post("/v1/customers", json=person.body(), headers=headers)
    assert replay.status_code == 201
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = await identity.app.client.post(
        "/v1/customers", json=person.body(name="王五"), headers=headers
    )
    assert other.status_code == 409 and problem_code(other) == "idempotency_conflict"

    same_id = await identity.post("/v1/customers", person.body(phone=mobile()))
    assert same_id.status_code == 409 and problem_code(same_id) == "duplicate_party"
    assert same_id.json()["field"] == "id_number"
    assert person.rid not in same_id.text
    same_phone = await identity.post("/v1/customers", Person(phone=person.phone).body())
    assert same_phone.status_code == 409 and same_phone.json()["field"] == "phone"

    customers = mongo_client[identity.settings.mongodb_database]["customers"]
    assert await customers.count_documents({"phone_masked": first.json()["phone"]}) == 1


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"resident_id": "110105199003070010"}, "resident_id"),  # wrong check digit
        ({"resident_id": "110105199002300011"}, "resident_id"),  # 30 February
        ({"phone": "+8612345678901"}, "phone"),  # no such Chinese number range
        ({"phone": "+86 10 6552 9988"}, "phone"),  # a landline cannot receive codes
        ({"date_of_birth": "1980-01-01"}, "date_of_birth"),  # not the date in the ID
        ({"password": "pw1234"}, "password"),
    ],
)
async def test_malformed_registration_is_422_and_stores_nothing(
    identity: Identity,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    overrides: dict[str, str],
    field_name: str,
) -> None:
    customers = mongo_client[identity.settings.mongodb_database]["customers"]
    before = await customers.count_documents({})
    person = Person()
    r = await identity.post("/v1/customers", person.body(**overrides))
    assert r.status_code == 422, r.text
    assert problem_code(r) == "invalid_request"
    fields = {e["field"] for e in r.json()["errors"]}
    assert f"body.{field_name}" in fields
    for value in overrides.values():
        assert value not in r.text  # never echoed
    assert await customers.count_documents({}) == before


async def test_enterprise_with_malformed_credit_code_is_422(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    person, customer = await identity.register()
    token = (await identity.login(person)).json()["access_token"]
    good = credit_code()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    body = {
        "name": "北京零接触科技有限公司",
        "credit_code": bad,
        "legal_representative_id": customer["customer_id"],
        "business_category": "I",
        "registered_capital": {"amount": "1000000.00", "currency": "CNY"},
    }
    r = await identity.post("/v1/enterprises", body, token=token)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.credit_code"
    r = await identity.post(
        "/v1/enterprises", body | {"credit_code": good, "business_category": "Z"}, token=token
    )
    assert r.status_code == 422
    r = await identity.post(
        "/v1/enterprises",
        body | {"credit_code": good, "registered_capital": {"amount": "1.001", "currency": "CNY"}},
        token=token,
    )
    assert r.status_code == 422
    enterprises = mongo_client[identity.settings.mongodb_database]["enterprises"]
    assert await enterprises.count_documents({"representative_id": customer["customer_id"]}) == 0


# ---------------------------------------------------------------- factors and login


async def test_totp_enrolment_and_login_with_a_real_code(identity: Identity) -> None:
    person, customer = await identity.register()
    login = await identity.login(person)
    assert login.status_code == 200, login.text
    assert login.json()["aal"] == "AAL1" and login.json()["amr"] == ["pwd"]
    totp, recovery = await identity.enrol_totp(
        customer["customer_id"], login.json()["access_token"]
    )
    assert len(recovery) == 10 and len(set(recovery)) == 10

    # The code just used for the confirmation cannot be used again (replay protection) ...
    replay = await identity.login(person, totp.now())
    assert replay.status_code == 401 and problem_code(replay) == "authentication_failed"
    # ... the next step's code (accepted within the drift window) logs in at AAL2.
    second = await identity.login(person, totp.at(datetime.now(UTC), counter_offset=1))
    assert second.status_code == 200, second.text
    assert second.json()["aal"] == "AAL2" and second.json()["amr"] == ["pwd", "otp"]

    # A recovery code steps an AAL1 session up, once.
    aal1 = (await identity.login(person)).json()["access_token"]
    body = {"method": "recovery_code", "code": recovery[0].upper()}
    up = await identity.post("/v1/sessions/step-up", body, token=aal1)
    assert up.status_code == 200 and up.json()["aal"] == "AAL2", up.text
    aal1 = (await identity.login(person)).json()["access_token"]
    again = await identity.post("/v1/sessions/step-up", body, token=aal1)
    assert again.status_code == 401

    records = await read_topic(
        identity.engines.kafka_bootstrap, identity.settings.events_topic, at_least=1
    )
    enrolled = [
        e.factor_enrolled.factor
        for e in identity_events(records, customer["customer_id"])
        if e.WhichOneof("event") == "factor_enrolled"
    ]
    assert enrolled == [events_pb2.FACTOR_KIND_TOTP, events_pb2.FACTOR_KIND_RECOVERY_CODE]
    succeeded = [
        e.authentication_succeeded
        for e in identity_events(records, customer["customer_id"])
        if e.WhichOneof("event") == "authentication_succeeded"
    ]
    assert succeeded[0].device_id == "device-test-1"
    assert succeeded[0].source_address == "203.0.113.7"
    assert any(s.assurance_level == events_pb2.ASSURANCE_LEVEL_AAL2 for s in succeeded)


async def test_sms_code_flow_notification_carries_a_reference_never_the_code(
    identity: Identity,
) -> None:
    person, customer = await identity.register()
    token = (await identity.login(person)).json()["access_token"]
    started = await identity.post("/v1/sessions/sms-challenges", token=token)
    assert started.status_code == 201, started.text
    challenge_id = started.json()["challenge_id"]

    async def my_notification() -> Any:
        records = await read_topic(
            identity.engines.kafka_bootstrap, identity.settings.notifications_topic, at_least=1
        )
        return next((r for r in records if r.key == customer["customer_id"].encode()), None)

    record = await eventually(my_notification)
    check_record("identity.notifications.v1", record.key, record.headers, record.value)
    assert dict(record.headers)["ce_type"] == b"zerocontact.identity.v1.SmsCodeRequested"
    note = notifications_pb2.IdentityNotification.FromString(record.value).sms_code_requested
    assert note.customer_id == customer["customer_id"]
    assert note.phone_masked == customer["phone"]
    assert note.template == "step_up_code"

    # The SMS gateway redeems the reference once and opens the sealed message with its key.
    wrong = await identity.app.client.post(
        f"/v1/sms-deliveries/{note.delivery_id}/claim",
        headers={"Idempotency-Key": identity.key(), "X-Gateway-Key": random_key()},
    )
    assert wrong.status_code == 403
    gateway_headers = {"X-Gateway-Key": identity.settings.sms_gateway_key.get_secret_value()}
    claim = await identity.app.client.post(
        f"/v1/sms-deliveries/{note.delivery_id}/claim",
        headers={"Idempotency-Key": identity.key(), **gateway_headers},
    )
    assert claim.status_code == 200, claim.text
    sealed = base64.urlsafe_b64decode(claim.json()["sealed"] + "==")
    message = identity.gateway.open(sealed, delivery_id=note.delivery_id)
    assert message.to == person.phone and len(message.code) == 6
    again = await identity.app.client.post(
        f"/v1/sms-deliveries/{note.delivery_id}/claim",
        headers={"Idempotency-Key": identity.key(), **gateway_headers},
    )
    assert again.status_code == 404

    # The code is nowhere in the notification: not in the value, not in a header.
    assert message.code.encode() not in record.value
    assert all(message.code.encode() not in v for _, v in record.headers)
    assert person.phone.encode() not in record.value

    wrong_code = f"{(int(message.code) + 1) % 10**6:06d}"
    body = {"method": "sms", "code": wrong_code, "challenge_id": challenge_id}
    refused = await identity.post("/v1/sessions/step-up", body, token=token)
    assert refused.status_code == 401
    body["code"] = message.code
    up = await identity.post("/v1/sessions/step-up", body, token=token)
    assert up.status_code == 200, up.text
    assert up.json()["aal"] == "AAL2" and up.json()["amr"] == ["pwd", "sms"]
    # The session stepped up from is replaced; the code is single use.
    reused = await identity.post("/v1/sessions/step-up", body, token=up.json()["access_token"])
    assert reused.status_code == 401


# ---------------------------------------------------------------- brute force


async def test_lockout_after_repeated_failures_and_unlock_after_back_off(
    identity: Identity,
) -> None:
    person, customer = await identity.register()
    source = "192.0.2.50"  # its own source: this test is about the per-customer lock
    wrong = {"phone": person.phone, "password": "not the password"}
    for _ in range(3):
        r = await identity.post("/v1/sessions", wrong, source=source)
        assert r.status_code == 401
    locked = await identity.login(person, source=source)
    assert locked.status_code == 429 and problem_code(locked) == "account_locked"
    assert locked.json()["retry_after_s"] == 1

    await asyncio.sleep(1.2)  # lockout_base_s = 1: the first lock lasts 1 s
    source = "192.0.2.51"  # the attacker moves on (the first source is near its own limit)
    for _ in range(3):  # no success in between: the second lock doubles
        assert (await identity.post("/v1/sessions", wrong, source=source)).status_code == 401
    locked = await identity.login(person, source=source)
    assert locked.status_code == 429 and problem_code(locked) == "account_locked"
    assert locked.json()["retry_after_s"] in (1, 2)  # 2 s from the third failure

    await asyncio.sleep(2.2)
    unlocked = await identity.login(person, source=source)
    assert unlocked.status_code == 200, unlocked.text

    records = await read_topic(
        identity.engines.kafka_bootstrap, identity.settings.events_topic, at_least=1
    )
    mine = identity_events(records, customer["customer_id"])
    locks = [e.account_locked for e in mine if e.WhichOneof("event") == "account_locked"]
    assert len(locks) == 2 and locks[0].consecutive_failures == 3
    durations = [lk.locked_until.ToDatetime() - lk.locked_at.ToDatetime() for lk in locks]
    assert durations == [timedelta(seconds=1), timedelta(seconds=2)]  # exponential back-off
    assert locks[0].source_address == "192.0.2.50"
    failures = [
        e.authentication_failed for e in mine if e.WhichOneof("event") == "authentication_failed"
    ]
    assert [f.consecutive_failures for f in failures] == [1, 2, 3, 1, 2, 3]
    assert failures[0].factor == events_pb2.FACTOR_KIND_PASSWORD
    assert failures[0].device_id == "device-test-1"


async def test_a_source_spraying_passwords_is_throttled(identity: Identity) -> None:
    person, _ = await identity.register()
    for _ in range(4):  # source_failure_threshold = 4, over different (unknown) accounts
        r = await identity.post(
            "/v1/sessions", {"phone": mobile(), "password": "guess"}, source="198.51.100.9"
        )
        assert r.status_code == 401
    throttled = await identity.login(person, source="198.51.100.9")
    assert throttled.status_code == 429 and problem_code(throttled) == "source_throttled"
    elsewhere = await identity.login(person, source="198.51.100.10")
    assert elsewhere.status_code == 200


# ---------------------------------------------------------------- tokens and step-up


async def test_tokens_verify_through_jwks_refresh_rotates_and_reuse_revokes(
    identity: Identity,
) -> None:
    person, customer = await identity.register()
    pair = (await identity.login(person)).json()
    verifier = TokenVerifier.remote(
        f"{identity.app.url}/.well-known/jwks.json",
        issuer=identity.settings.jwt_issuer,
        audience=identity.settings.jwt_audience,
    )
    principal = await verifier.verify(pair["access_token"])
    assert principal.subject == customer["customer_id"]
    assert principal.aal == "AAL1" and principal.methods == ("pwd",)
    assert principal.session_id == pair["session_id"]
    header = jwt.get_unverified_header(pair["access_token"])
    jwks = (await identity.app.client.get("/.well-known/jwks.json")).json()
    assert header["alg"] == "EdDSA" and header["kid"] == jwks["keys"][0]["kid"]

    forged = pair["access_token"][:-4] + (
        "AAAA" if not pair["access_token"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(InvalidToken):
        await verifier.verify(forged)
    other_key = TokenVerifier.remote(
        f"{identity.app.url}/.well-known/jwks.json",
        issuer=identity.settings.jwt_issuer,
        audience="someone-else",
    )
    with pytest.raises(InvalidToken):
        await other_key.verify(pair["access_token"])

    rotated = await identity.post("/v1/tokens/refresh", {"refresh_token": pair["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["refresh_token"] != pair["refresh_token"] and new["session_id"] == pair["session_id"]
    again = await verifier.verify(new["access_token"])
    assert again.auth_time == principal.auth_time  # refreshing never makes a login recent

    reused = await identity.post("/v1/tokens/refresh", {"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401 and problem_code(reused) == "refresh_token_reused"
    family = await identity.post("/v1/tokens/refresh", {"refresh_token": new["refresh_token"]})
    assert family.status_code == 401 and problem_code(family) == "invalid_token"

    fresh = (await identity.login(person)).json()
    revoked = await identity.post("/v1/tokens/revoke", {"refresh_token": fresh["refresh_token"]})
    assert revoked.status_code == 200
    after = await identity.post("/v1/tokens/refresh", {"refresh_token": fresh["refresh_token"]})
    assert after.status_code == 401


async def test_a_customer_lists_its_sessions_and_ends_those_of_a_lost_device(
    identity: Identity,
) -> None:
    person, _ = await identity.register()
    body = {"phone": person.phone, "password": PASSWORD}

    async def login_on(device: str) -> dict[str, Any]:
        headers = identity.headers() | {"X-Device-Id": device}
        r = await identity.app.client.post("/v1/sessions", json=body, headers=headers)
        assert r.status_code == 200, r.text
        pair: dict[str, Any] = r.json()
        return pair

    lost = await login_on("phone-lost")
    tablet = await login_on("tablet-1")
    here = await login_on("phone-new")
    mine = await identity.app.client.get(
        "/v1/me/sessions", headers={"Authorization": f"Bearer {here['access_token']}"}
    )
    assert mine.status_code == 200, mine.text
    listed = mine.json()
    assert {s["session_id"] for s in listed["sessions"]} == {
        p["session_id"] for p in (lost, tablet, here)
    }
    assert {(d["device_id"], d["sessions"], d["current"]) for d in listed["devices"]} == {
        ("phone-lost", 1, False),
        ("tablet-1", 1, False),
        ("phone-new", 1, True),
    }

    # Bad input changes nothing; no token is a 401.
    for bad in ({"device_id": ""}, {"device_id": "x", "all": True}):
        r = await identity.post("/v1/me/sessions/revocation", bad, token=here["access_token"])
        assert r.status_code == 422, r.text
    r = await identity.post("/v1/me/sessions/revocation", {"device_id": "phone-lost"})
    assert r.status_code == 401

    headers = identity.headers(here["access_token"])
    locked = await identity.app.client.post(
        "/v1/me/sessions/revocation", json={"device_id": "phone-lost"}, headers=headers
    )
    assert locked.status_code == 200 and locked.json() == {"revoked": 1}, locked.text
    replayed = await identity.app.client.post(
        "/v1/me/sessions/revocation", json={"device_id": "phone-lost"}, headers=headers
    )
    assert replayed.json() == {"revoked": 1}
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    gone = await identity.post("/v1/tokens/refresh", {"refresh_token": lost["refresh_token"]})
    assert gone.status_code == 401
    still = await identity.post("/v1/tokens/refresh", {"refresh_token": tablet["refresh_token"]})
    assert still.status_code == 200, still.text

    # Everything else: the tablet goes, the session asking stays.
    others = await identity.post("/v1/me/sessions/revocation", {}, token=here["access_token"])
    assert others.status_code == 200 and others.json() == {"revoked": 1}
    left = await identity.app.client.get(
        "/v1/me/sessions", headers={"Authorization": f"Bearer {here['access_token']}"}
    )
    assert [s["session_id"] for s in left.json()["sessions"]] == [here["session_id"]]


async def test_step_up_is_refused_at_aal1_and_granted_after_a_second_factor(
    identity: Identity,
) -> None:
    person, customer = await identity.register()
    cid = customer["customer_id"]
    aal1 = (await identity.login(person)).json()["access_token"]
    totp, _ = await identity.enrol_totp(cid, aal1)

    new_phone = mobile()
    refused = await identity.app.client.put(
        f"/v1/customers/{cid}/phone", json={"phone": new_phone}, headers=identity.headers(aal1)
    )
    assert refused.status_code == 403 and problem_code(refused) == "step_up_required"
    assert refused.json()["required_aal"] == "AAL2" and refused.json()["current_aal"] == "AAL1"
    # Replacing the enrolled authenticator is sensitive too.
    assert (await identity.post(f"/v1/customers/{cid}/factors/totp", token=aal1)).status_code == 403

    # Another service guards its own sensitive route with the verifier over real HTTP.
    verifier = TokenVerifier.remote(
        f"{identity.app.url}/.well-known/jwks.json",
        issuer=identity.settings.jwt_issuer,
        audience=identity.settings.jwt_audience,
    )
    loans = FastAPI()
    install_operational_routes(loans, checks={})

    step_up_required = Depends(verifier.require_step_up(300))

    @loans.post("/v1/loans/{loan_id}/acceptance")
    async def accept(loan_id: str, who: Principal = step_up_required) -> dict[str, str]:
        return {"loan_id": loan_id, "accepted_by": who.subject}

    async with serve(loans) as loan_service:
        no_token = await loan_service.client.post("/v1/loans/l1/acceptance")
        assert no_token.status_code == 401 and problem_code(no_token) == "invalid_token"
        auth = {"Authorization": f"Bearer {aal1}"}
        at_aal1 = await loan_service.client.post("/v1/loans/l1/acceptance", headers=auth)
        assert at_aal1.status_code == 403 and problem_code(at_aal1) == "step_up_required"

        step = {"method": "totp", "code": totp.at(datetime.now(UTC), counter_offset=1)}
        up = await identity.post("/v1/sessions/step-up", step, token=aal1)
        assert up.status_code == 200, up.text
        aal2 = up.json()["access_token"]
        auth = {"Authorization": f"Bearer {aal2}"}
        accepted = await loan_service.client.post("/v1/loans/l1/acceptance", headers=auth)
        assert accepted.status_code == 200 and accepted.json()["accepted_by"] == cid

    changed = await identity.app.client.put(
        f"/v1/customers/{cid}/phone", json={"phone": new_phone}, headers=identity.headers(aal2)
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["phone"] == f"+86*******{new_phone[-4:]}"
    identity.people.append(Person(rid=person.rid, phone=new_phone))
    # The old session was replaced by the step-up: its tokens no longer act.
    stale = await identity.post("/v1/sessions/sms-challenges", token=aal1)
    assert stale.status_code == 401


# ---------------------------------------------------------------- KYC / KYB


async def test_kyc_transitions_are_audited_and_the_enterprise_follows_its_representative(
    identity: Identity,
) -> None:
    person, customer = await identity.register()
    cid = customer["customer_id"]
    aal1 = (await identity.login(person)).json()["access_token"]
    enterprise = await identity.post(
        "/v1/enterprises",
        {
            "name": "北京零接触科技有限公司",
            "credit_code": credit_code(),
            "legal_representative_id": cid,
            "business_category": "I",
            "registered_capital": {"amount": "5000000.00", "currency": "CNY"},
        },
        token=aal1,
    )
    assert enterprise.status_code == 201, enterprise.text
    eid = enterprise.json()["enterprise_id"]
    assert enterprise.json()["kyc_level"] == "BASIC"
    assert enterprise.json()["registered_capital_minor"] == 500_000_000

    operator = {
        "X-Operator-Key": identity.settings.operator_key.get_secret_value(),
        "X-Operator-Id": "reviewer-7",
    }
    body = {"target_level": "VERIFIED", "reason": "documents checked", "evidence": "case-1"}
    too_early = await identity.app.client.post(
        f"/v1/parties/{eid}/kyc/transitions", json=body, headers=identity.headers() | operator
    )
    assert too_early.status_code == 409 and problem_code(too_early) == "kyc_transition_refused"
    assert too_early.json()["representative_level"] == "BASIC"
    skip = await identity.app.client.post(
        f"/v1/parties/{cid}/kyc/transitions",
        json=body | {"target_level": "ENHANCED"},
        headers=identity.headers() | operator,
    )
    assert skip.status_code == 409
    no_key = await identity.app.client.post(
        f"/v1/parties/{cid}/kyc/transitions", json=body, headers=identity.headers()
    )
    assert no_key.status_code == 403

    at_aal1 = await identity.post(f"/v1/customers/{cid}/kyc/verification", token=aal1)
    assert at_aal1.status_code == 403 and problem_code(at_aal1) == "step_up_required"
    totp, _ = await identity.enrol_totp(cid, aal1)
    aal2 = (await identity.login(person, totp.at(datetime.now(UTC), counter_offset=1))).json()
    verified = await identity.post(
        f"/v1/customers/{cid}/kyc/verification", token=aal2["access_token"]
    )
    assert verified.status_code == 200, verified.text
    step = verified.json()["kyc_history"][-1]
    assert (step["from_level"], step["to_level"], step["actor"]) == (
        "BASIC",
        "VERIFIED",
        f"party:{cid}",
    )
    assert "amr=pwd,otp" in step["evidence"]

    async def enterprise_verified() -> Any:
        r = await identity.app.client.get(
            f"/v1/enterprises/{eid}", headers={"Authorization": f"Bearer {aal2['access_token']}"}
        )
        return r.json() if r.json()["kyc_level"] == "VERIFIED" else None

    kyb = await eventually(enterprise_verified)
    assert kyb["kyc_history"][-1]["actor"] == "system"
    assert kyb["kyc_history"][-1]["evidence"] == f"representative={cid}"

    enhanced = await identity.app.client.post(
        f"/v1/parties/{cid}/kyc/transitions",
        json=body | {"target_level": "ENHANCED", "reason": "enhanced due diligence"},
        headers=identity.headers() | operator,
    )
    assert enhanced.status_code == 200, enhanced.text
    assert enhanced.json()["kyc_history"][-1]["actor"] == "operator:reviewer-7"

    async def kyc_events() -> Any:
        records = await read_topic(identity.engines.kafka_bootstrap, identity.settings.events_topic)
        customer_changes = [
            e.kyc_level_changed
            for e in identity_events(records, cid)
            if e.WhichOneof("event") == "kyc_level_changed"
        ]
        enterprise_changes = [
            e.kyc_level_changed
            for e in identity_events(records, eid)
            if e.WhichOneof("event") == "kyc_level_changed"
        ]
        return (
            (customer_changes, enterprise_changes)
            if len(customer_changes) == 3 and len(enterprise_changes) == 2
            else None
        )

    customer_changes, enterprise_changes = await eventually(kyc_events)
    assert [(c.from_level, c.to_level) for c in customer_changes] == [
        (events_pb2.KYC_LEVEL_NONE, events_pb2.KYC_LEVEL_BASIC),
        (events_pb2.KYC_LEVEL_BASIC, events_pb2.KYC_LEVEL_VERIFIED),
        (events_pb2.KYC_LEVEL_VERIFIED, events_pb2.KYC_LEVEL_ENHANCED),
    ]
    assert [c.actor for c in customer_changes] == ["system", f"party:{cid}", "operator:reviewer-7"]
    assert (
        customer_changes[2].reason == "enhanced due diligence"
        and customer_changes[2].evidence == "case-1"
    )
    assert enterprise_changes[1].party.kind == party_pb2.PartyRef.PARTY_KIND_ENTERPRISE
    assert enterprise_changes[1].to_level == events_pb2.KYC_LEVEL_VERIFIED
    records = await read_topic(identity.engines.kafka_bootstrap, identity.settings.events_topic)
    registered = [
        e for e in identity_events(records, eid) if e.WhichOneof("event") == "enterprise_registered"
    ]
    capital = registered[0].enterprise_registered.registered_capital
    assert (capital.currency_code, capital.minor_units) == ("CNY", 500_000_000)


# ---------------------------------------------------------------- personal data, last


async def test_no_plaintext_id_or_phone_number_in_the_database_topics_or_logs(
    identity: Identity,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    kafka_admin: AIOKafkaAdminClient,
) -> None:
    assert len(identity.people) >= 8, "runs after the tests that exercise the service"
    needles: set[str] = set()
    for person in identity.people:
        needles |= {person.rid, person.rid.lower(), person.phone, person.phone[3:]}
        needles.add(f"{person.phone[3:6]} {person.phone[6:10]} {person.phone[10:]}")
    db = mongo_client[identity.settings.mongodb_database]
    scanned_docs = 0
    for name in await db.list_collection_names():
        async for doc in db[name].find({}):
            scanned_docs += 1
            text = repr(doc)
            leaked = [n for n in needles if n in text]
            assert not leaked, f"{name} holds plaintext personal data"
    topics = [
        identity.settings.events_topic, identity.settings.notifications_topic,
        f"{identity.settings.events_topic}.dlq", f"{identity.settings.notifications_topic}.dlq",
    ]  # fmt: skip
    scanned_records = 0
    for topic in topics:
        for record in await read_topic(identity.engines.kafka_bootstrap, topic, at_least=0):
            scanned_records += 1
            blob = (
                (record.value or b"") + b"".join(v for _, v in record.headers) + (record.key or b"")
            )
            assert not [n for n in needles if n.encode() in blob], (
                f"{topic} holds plaintext personal data"
            )
    logs = identity.logs.getvalue()
    assert not [n for n in needles if n in logs], "the logs hold plaintext personal data"
    assert scanned_docs > 20 and scanned_records > 30 and logs.count("\n") > 20
