"""The assistant's payroll action through the real payroll service: an employer's
representative asks for a batch's state with its own token; anyone else is refused by payroll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, serve
from tests.integration.test_assistant_support import (
    AssistantTopicReader,
    Chat,
    assistant_settings,
    running_assistant,
)
from tests.integration.test_payroll_flow import cards, onboarded
from tests.integration.test_payroll_support import PayrollEnv, payroll_env  # noqa: F401
from zerocontact.assistant.v1 import events_pb2 as pb
from zerocontact.payroll.app import create_app
from zerocontact.platform.ids import new_id


@pytest.fixture
async def topic_reader(
    engines: Engines, kafka_admin: Any
) -> AsyncIterator[tuple[str, AssistantTopicReader]]:
    topic = f"t-asst-pay-{new_id()[-12:]}"
    await kafka_admin.create_topics([NewTopic(topic, 3, 1)])
    reader = AssistantTopicReader(engines.kafka_bootstrap, topic)
    await reader.start()
    try:
        yield topic, reader
    finally:
        await reader.stop()
    assert not reader.off_catalog, reader.off_catalog


async def test_a_representative_reads_its_batch_and_a_stranger_is_refused(
    payroll_env: PayrollEnv,  # noqa: F811  (the fixture imported above)
    topic_reader: tuple[str, AssistantTopicReader],
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> None:
    env = payroll_env
    topic, events = topic_reader
    database = f"t_asst_pay_{new_id()[-12:]}"
    async with serve(create_app(env.settings, verifier=env.tokens.verifier())) as payroll:
        # Maker-checker: the batch waits for a second person, so its state stays SUBMITTED.
        employer, rep = await onboarded(env, payroll.client, maker_checker=True)
        items = [{"payee_name": "张三", "card_number": c, "amount": "100.00"} for c in cards(2)]
        submitted = await payroll.client.post(
            f"/v1/employers/{employer}/batches",
            headers=env.tokens.headers(rep),
            json={"items": items, "item_count": 2, "control_sum": "200.00"},
        )
        assert submitted.status_code == 201, submitted.text
        batch_id = submitted.json()["batch_id"]
        settings = assistant_settings(
            env.engines, database=database, topic=topic, payroll_url=payroll.url
        )
        try:
            async with running_assistant(settings, env.tokens.verifier()) as assistant:
                chat = Chat(assistant, env.tokens.token(rep, aal="AAL1"))
                await chat.start()
                asked = await chat.turn("查一下工资批次的状态")
                assert asked["pending"]["slot"] == "batch_id", asked
                r = await chat.turn(batch_id)
                assert r["reply"]["kind"] == "action", r
                assert "已提交，待审批" in r["reply"]["text"] and "共 2 笔" in r["reply"]["text"]

                stranger = new_id()
                other = Chat(assistant, env.tokens.token(stranger, aal="AAL1"))
                await other.start()
                await other.turn("查一下工资批次的状态")
                refused = await other.turn(batch_id)
                assert "不属于您" in refused["reply"]["text"], refused
                assert "2" not in refused["reply"]["text"]

                done = await events.wait_for(
                    "action_performed",
                    party_id=rep,
                    kind=pb.ACTION_KIND_PAYROLL_BATCH_STATUS,
                )
                assert done[0].message.outcome == pb.ACTION_OUTCOME_SUCCEEDED
                assert done[0].message.resource_id == batch_id
                no = await events.wait_for("action_performed", party_id=stranger)
                assert no[0].message.outcome == pb.ACTION_OUTCOME_REFUSED
        finally:
            await mongo_client.drop_database(database)
