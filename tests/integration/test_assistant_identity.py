"""The assistant's identity actions through the real identity service, with the customer's own
access token (issued by identity's login, verified by the assistant against identity's key
set): lock a lost device chosen from the customer's devices, and sign out every other session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from tests.integration.harness import RUN_ID, Engines
from tests.integration.test_assistant_support import (
    AssistantTopicReader,
    Chat,
    assistant_settings,
    running_assistant,
)
from tests.integration.test_identity_service import (
    PASSWORD,
    Identity,
    make_topics,
    running_identity,
    settings_for,
)
from zerocontact.assistant.v1 import events_pb2 as pb
from zerocontact.identity.notifier import SmsGatewaySimulator
from zerocontact.platform.auth import TokenVerifier


@dataclass
class Both:
    identity: Identity
    assistant: Any
    events: AssistantTopicReader


@pytest.fixture(scope="module")
async def both(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Both]:
    prefix = f"t{RUN_ID}-{uuid.uuid4().hex[:10]}"
    events_topic, notes = await make_topics(kafka_admin, prefix)
    assistant_topic = f"{prefix}-assistant.events.v1"
    await kafka_admin.create_topics([NewTopic(assistant_topic, 3, 1)])
    identity_db, assistant_db = f"t_asid_{uuid.uuid4().hex[:12]}", f"t_asst_{uuid.uuid4().hex[:12]}"
    gateway = SmsGatewaySimulator()
    identity_settings = settings_for(
        engines,
        database=identity_db,
        events=events_topic,
        notes=notes,
        group=f"{prefix}-kyb",
        gateway=gateway,
    )
    reader = AssistantTopicReader(engines.kafka_bootstrap, assistant_topic)
    await reader.start()
    try:
        async for identity in running_identity(identity_settings, engines, gateway):
            verifier = TokenVerifier.remote(
                f"{identity.app.url}/.well-known/jwks.json",
                issuer=identity_settings.jwt_issuer,
                audience=identity_settings.jwt_audience,
            )
            settings = assistant_settings(
                engines,
                database=assistant_db,
                topic=assistant_topic,
                identity_url=identity.app.url,
                jwks_url=f"{identity.app.url}/.well-known/jwks.json",
            )
            async with running_assistant(settings, verifier) as assistant:
                yield Both(identity, assistant, reader)
    finally:
        await reader.stop()
        await mongo_client.drop_database(identity_db)
        await mongo_client.drop_database(assistant_db)
    assert not reader.off_catalog, reader.off_catalog


async def login_on(both: Both, phone: str, device: str) -> dict[str, Any]:
    headers = both.identity.headers() | {"X-Device-Id": device}
    r = await both.identity.app.client.post(
        "/v1/sessions", json={"phone": phone, "password": PASSWORD}, headers=headers
    )
    assert r.status_code == 200, r.text
    pair: dict[str, Any] = r.json()
    return pair


async def refreshes(both: Both, pair: dict[str, Any]) -> bool:
    r = await both.identity.post("/v1/tokens/refresh", {"refresh_token": pair["refresh_token"]})
    return bool(r.status_code == 200)


async def test_a_lost_device_is_locked_and_other_sessions_signed_out(both: Both) -> None:
    person, customer = await both.identity.register()
    lost = await login_on(both, person.phone, "phone-lost-7")
    tablet = await login_on(both, person.phone, "tablet-2")
    here = await login_on(both, person.phone, "phone-new-3")
    chat = Chat(both.assistant, here["access_token"])
    await chat.start()

    asked = await chat.turn("帮我锁定丢失的手机")
    assert asked["reply"]["kind"] == "ask" and asked["pending"]["slot"] == "device_id", asked
    offered = [o["value"] for o in asked["pending"]["options"]]
    assert sorted(offered) == ["phone-lost-7", "tablet-2"]  # never the device asking
    assert "phone-lost-7" in asked["reply"]["text"]
    number = offered.index("phone-lost-7") + 1
    locked = await chat.turn(str(number))
    assert locked["reply"]["kind"] == "action", locked
    assert "1" in locked["reply"]["text"]
    assert not await refreshes(both, lost)
    fresh_tablet = await both.identity.post(
        "/v1/tokens/refresh", {"refresh_token": tablet["refresh_token"]}
    )
    assert fresh_tablet.status_code == 200, fresh_tablet.text

    signed_out = await chat.turn("退出所有设备")
    assert signed_out["reply"]["kind"] == "action", signed_out
    assert not await refreshes(both, {"refresh_token": fresh_tablet.json()["refresh_token"]})
    assert await refreshes(both, here)  # the session asking stays

    party = customer["customer_id"]
    done = await both.events.wait_for(
        "action_performed", party_id=party, outcome=pb.ACTION_OUTCOME_SUCCEEDED
    )
    assert {e.message.kind for e in done} == {
        pb.ACTION_KIND_IDENTITY_LOCK_DEVICE,
        pb.ACTION_KIND_IDENTITY_REVOKE_SESSIONS,
    }
    lock = next(e for e in done if e.message.kind == pb.ACTION_KIND_IDENTITY_LOCK_DEVICE)
    assert lock.message.resource_id == "phone-lost-7" and lock.key == party
