"""The assistant on real Kafka and FerretDB, with the real understanding and the real loan
service: each loan action with the customer's own token, a refusal for another party's loan,
step-up before a repayment, a hand-off answered by an operator on the customer's stream, an
unsafe answer blocked, bad input refused, and the events on the topic with masked data."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, RunningApp, eventually
from tests.integration.test_assistant_support import (
    AssistantTopicReader,
    Chat,
    assistant_settings,
    operator_headers,
    running_assistant,
)
from tests.integration.test_loan_support import (
    EventBus,
    LoanTopicReader,
    Tokens,
    apply_for_loan,
    create_loan_topics,
    loan_settings,
    running_loan,
    wait_state,
)
from zerocontact.assistant.understanding import Understander
from zerocontact.assistant.understanding.understander import KNOWLEDGE_DIR
from zerocontact.assistant.v1 import events_pb2 as pb
from zerocontact.identity.domain.authentication import Aal
from zerocontact.platform.auth import TokenVerifier
from zerocontact.platform.ids import new_id

PHONE = "13812345678"


@dataclass
class Env:
    loan: RunningApp
    assistant: RunningApp
    tokens: Tokens
    bus: EventBus
    loans: LoanTopicReader
    events: AssistantTopicReader
    engines: Engines
    topic: str
    db: Any


def verifier_of(tokens: Tokens) -> TokenVerifier:
    async def jwks() -> dict[str, Any]:
        return tokens.keys.jwks()

    return TokenVerifier(jwks, issuer="https://identity.test", audience="zerocontact")


@pytest.fixture(scope="module")
async def env(
    engines: Engines,
    kafka_admin: Any,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Env]:
    suffix = new_id()[-12:]
    topics = await create_loan_topics(kafka_admin, lambda p: f"t-asst-{p}-{suffix}")
    topic = f"t-asst-events-{suffix}"
    await kafka_admin.create_topics([NewTopic(topic, 6, 1)])
    loan_db, assistant_db = f"t_asst_loan_{suffix}", f"t_asst_{suffix}"
    tokens = Tokens()
    bus = EventBus(engines.kafka_bootstrap, topics)
    loans = LoanTopicReader(engines.kafka_bootstrap, topics.loan)
    events = AssistantTopicReader(engines.kafka_bootstrap, topic)
    await bus.start()
    await loans.start()
    await events.start()
    try:
        async with running_loan(
            loan_settings(engines, topics, loan_db, f"t-asst-loan-{suffix}"), tokens
        ) as loan:
            settings = assistant_settings(
                engines, database=assistant_db, topic=topic, loan_url=loan.url
            )
            async with running_assistant(settings, verifier_of(tokens)) as assistant:
                yield Env(
                    loan,
                    assistant,
                    tokens,
                    bus,
                    loans,
                    events,
                    engines,
                    topic,
                    mongo_client[assistant_db],
                )
    finally:
        await events.stop()
        await loans.stop()
        await bus.stop()
        await mongo_client.drop_database(loan_db)
        await mongo_client.drop_database(assistant_db)
    assert not events.off_catalog, events.off_catalog


async def disbursed_loan(env: Env, party: str) -> tuple[str, str]:
    """A loan paid out to ``party``: (application id, loan id)."""
    await env.bus.register_customer(party)

    async def applied() -> dict[str, Any] | None:
        r = await apply_for_loan(env.loan, env.tokens, party, amount="12000.00")
        if r.status_code == 403:
            return None
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    application = await eventually(applied)
    submitted = await env.loans.wait_for(
        "loan_application_submitted", application_id=application["application_id"]
    )
    await env.bus.assess(submitted[0].message, submitted[0].event_id)
    await wait_state(env.loan, env.tokens, application["application_id"], party, "APPROVED")
    accepted = await env.loan.client.post(
        f"/v1/applications/{application['application_id']}/acceptance",
        headers=env.tokens.headers(party, key=f"accept-{new_id()[-12:]}", aal=Aal.AAL2),
    )
    assert accepted.status_code == 200, accepted.text
    loan_id = accepted.json()["loan_id"]

    async def paid_out() -> bool:
        r = await env.loan.client.get(
            f"/v1/loans/{loan_id}", headers=env.tokens.headers(party, aal=Aal.AAL1)
        )
        return bool(r.json()["state"] == "DISBURSED")

    await eventually(paid_out)
    return application["application_id"], loan_id


async def loan_view(env: Env, party: str, loan_id: str) -> dict[str, Any]:
    r = await env.loan.client.get(
        f"/v1/loans/{loan_id}", headers=env.tokens.headers(party, aal=Aal.AAL1)
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def paid(loan: dict[str, Any]) -> Decimal:
    return sum(
        (Decimal(i["paid_principal"]) + Decimal(i["paid_interest"]) for i in loan["schedule"]),
        Decimal(0),
    )


async def test_the_loan_actions_with_the_customers_own_token(env: Env) -> None:
    party = new_id()
    application_id, loan_id = await disbursed_loan(env, party)
    chat = Chat(env.assistant, env.tokens.issue(party, aal=Aal.AAL1))
    await chat.start()

    # Application status: the id in the message fills the slot at once.
    status = await chat.turn(f"查询申请 {application_id} 的状态")
    assert status["reply"]["intent"] == "loan.application_status", status
    assert status["reply"]["kind"] == "action"
    assert "已接受" in status["reply"]["text"]

    # Next installment: the assistant asks which loan, the customer pastes its number.
    asked = await chat.turn("下一期还多少钱")
    assert asked["reply"]["kind"] == "ask"
    assert asked["pending"] == {
        "intent": "loan.next_installment",
        "awaiting": "slot",
        "slot": "loan_id",
        "options": [],
    }
    answered = await chat.turn(loan_id)
    first = (await loan_view(env, party, loan_id))["schedule"][0]
    due = Decimal(first["principal"]) + Decimal(first["interest"])
    assert answered["reply"]["kind"] == "action" and answered["pending"] is None
    assert f"{due} CNY" in answered["reply"]["text"], answered["reply"]["text"]
    assert first["due_date"] in answered["reply"]["text"]

    # The early-repayment quote is loan's own payoff figure.
    quote = await chat.turn(f"今天结清我的贷款要还多少钱 贷款号 {loan_id}")
    payoff = await env.loan.client.get(
        f"/v1/loans/{loan_id}/payoff", headers=env.tokens.headers(party, aal=Aal.AAL1)
    )
    assert quote["reply"]["intent"] == "loan.early_repayment_quote", quote
    assert f"{payoff.json()['amount']} CNY" in quote["reply"]["text"]

    # Repaying at AAL1: the assistant says to step up first and nothing moves.
    before = paid(await loan_view(env, party, loan_id))
    refused = await chat.turn(f"我要还款 贷款 {loan_id} 100元")
    assert refused["reply"]["kind"] == "action" and "二次验证" in refused["reply"]["text"]
    assert refused["pending"] is None
    await env.events.wait_for(
        "action_performed",
        party_id=party,
        kind=pb.ACTION_KIND_LOAN_REPAY,
        outcome=pb.ACTION_OUTCOME_STEP_UP_REQUIRED,
    )

    # Stepped up: a confirmation first, then the repayment through loan, once.
    aal2 = env.tokens.issue(party, aal=Aal.AAL2)
    confirm = await chat.turn(f"我要还款 贷款 {loan_id} 100元", token=aal2)
    assert confirm["reply"]["kind"] == "confirmation", confirm
    assert confirm["pending"]["awaiting"] == "confirmation"
    assert paid(await loan_view(env, party, loan_id)) == before
    yes = await chat.turn("确认", token=aal2, key="confirm-repayment-1")
    assert yes["reply"]["kind"] == "action" and "已还款" in yes["reply"]["text"], yes
    again = await chat.turn("确认", token=aal2, key="confirm-repayment-1")
    assert again == yes  # the same Idempotency-Key: the first answer, nothing new
    assert paid(await loan_view(env, party, loan_id)) == before + Decimal("100")
    repaid = await env.events.wait_for(
        "action_performed",
        party_id=party,
        kind=pb.ACTION_KIND_LOAN_REPAY,
        outcome=pb.ACTION_OUTCOME_SUCCEEDED,
    )
    assert len(repaid) == 1 and repaid[0].message.resource_id == loan_id

    answered_events = await env.events.wait_for("question_answered", party_id=party)
    assert {e.message.intent for e in answered_events} >= {
        "loan.application_status",
        "loan.next_installment",
        "loan.early_repayment_quote",
        "loan.repay",
        "confirm.yes",
    }
    assert all(e.message.contained and not e.message.blocked for e in answered_events)


async def test_another_partys_loan_and_conversation_are_refused(env: Env) -> None:
    owner, stranger = new_id(), new_id()
    _, loan_id = await disbursed_loan(env, owner)
    owner_chat = Chat(env.assistant, env.tokens.issue(owner, aal=Aal.AAL1))
    await owner_chat.start()
    chat = Chat(env.assistant, env.tokens.issue(stranger, aal=Aal.AAL1))
    await chat.start()

    r = await chat.turn(f"今天结清我的贷款要还多少钱 贷款号 {loan_id}")
    assert r["reply"]["kind"] == "action"
    assert "不属于您" in r["reply"]["text"]
    payoff = await env.loan.client.get(
        f"/v1/loans/{loan_id}/payoff", headers=env.tokens.headers(owner, aal=Aal.AAL1)
    )
    assert payoff.json()["amount"] not in r["reply"]["text"]
    refused = await env.events.wait_for(
        "action_performed", party_id=stranger, outcome=pb.ACTION_OUTCOME_REFUSED
    )
    assert refused[0].key == stranger and refused[0].message.refusal

    # The owner's conversation does not exist for anyone else.
    other = {"Authorization": f"Bearer {chat.token}", "Idempotency-Key": "k-other-party-1"}
    path = f"/v1/conversations/{owner_chat.conversation_id}"
    assert (await env.assistant.client.get(path, headers=other)).status_code == 404
    sent = await env.assistant.client.post(f"{path}/messages", json={"text": "你好"}, headers=other)
    assert sent.status_code == 404 and sent.json()["title"] == "conversation_not_found"


async def test_a_hand_off_is_answered_by_an_operator_on_the_customers_stream(env: Env) -> None:
    party = new_id()
    chat = Chat(env.assistant, env.tokens.issue(party, aal=Aal.AAL1))
    await chat.start()
    r = await chat.turn(f"我要投诉，我的手机号{PHONE}一直收到催收电话")
    assert r["with_person"] and r["handoff"]["state"] == "open", r
    assert r["reply"]["kind"] == "handoff"
    assert PHONE not in json.dumps(r) and "138****5678" in r["messages"][0]["text"]
    handoff_id = r["handoff"]["handoff_id"]

    queue = await env.assistant.client.get("/v1/handoffs", headers=operator_headers("op-ann"))
    assert queue.status_code == 200
    listed = {h["handoff_id"]: h for h in queue.json()["handoffs"]}
    assert listed[handoff_id]["reason"] == "complaint" and listed[handoff_id]["complaint"]
    assert PHONE not in queue.text and "138****5678" in queue.text

    # Two operators claim at once: exactly one wins.
    claims = await asyncio.gather(
        env.assistant.client.post(
            f"/v1/handoffs/{handoff_id}/claim", headers=operator_headers("op-ann")
        ),
        env.assistant.client.post(
            f"/v1/handoffs/{handoff_id}/claim", headers=operator_headers("op-bob")
        ),
    )
    assert sorted(c.status_code for c in claims) == [200, 409], [c.text for c in claims]
    holder = next(c.json()["operator_id"] for c in claims if c.status_code == 200)
    other = "op-bob" if holder == "op-ann" else "op-ann"
    not_theirs = await env.assistant.client.post(
        f"/v1/handoffs/{handoff_id}/replies",
        json={"text": "您好"},
        headers=operator_headers(other),
    )
    assert not_theirs.status_code == 403 and not_theirs.json()["title"] == "not_your_handoff"

    # While a person holds the conversation the assistant stays quiet.
    quiet = await chat.turn("还在吗")
    assert quiet["reply"] is None and quiet["with_person"]
    seen = quiet["messages"][-1]["seq"]

    # The customer waits on the long poll; the operator's reply ends the wait.
    waiting = asyncio.create_task(chat.poll(after=seen, wait_s=20))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    unsafe = await env.assistant.client.post(
        f"/v1/handoffs/{handoff_id}/replies",
        json={"text": "别担心，我们的理财产品保本保收益"},
        headers=operator_headers(holder),
    )
    assert unsafe.status_code == 422 and unsafe.json()["title"] == "unsafe_reply"
    assert "forbidden_claim" in unsafe.json()["rules"]
    reply_text = "您好，已为您登记投诉，催收电话会在24小时内停止。"
    replied = await env.assistant.client.post(
        f"/v1/handoffs/{handoff_id}/replies",
        json={"text": reply_text},
        headers=operator_headers(holder, key="reply-once-1"),
    )
    assert replied.status_code == 200, replied.text
    polled = await asyncio.wait_for(waiting, 20)
    assert polled.status_code == 200
    delivered = polled.json()["messages"]
    assert [(m["sender"], m["text"]) for m in delivered] == [("operator", reply_text)]
    assert "保本" not in json.dumps(
        (
            await env.assistant.client.get(
                f"/v1/conversations/{chat.conversation_id}",
                headers={"Authorization": f"Bearer {chat.token}"},
            )
        ).json()
    )

    # The event stream replays from a message number and ends when the conversation closes.
    async with env.assistant.client.stream(
        "GET",
        f"/v1/conversations/{chat.conversation_id}/stream",
        params={"after": seen},
        headers={"Authorization": f"Bearer {chat.token}"},
        timeout=30,
    ) as stream:
        lines = stream.aiter_lines()
        event = [await anext(lines) for _ in range(3)]
        assert event[0] == f"id: {seen + 1}" and event[1] == "event: message"
        assert json.loads(event[2].removeprefix("data: "))["text"] == reply_text

    closed = await env.assistant.client.post(
        f"/v1/handoffs/{handoff_id}/closure",
        json={"resolution": "resolved"},
        headers=operator_headers(holder),
    )
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    back = await chat.turn("下一期还多少钱")
    assert back["reply"] is not None and not back["with_person"]
    end = await env.assistant.client.post(
        f"/v1/conversations/{chat.conversation_id}/closure", headers=chat.headers()
    )
    assert end.status_code == 200 and end.json()["state"] == "closed"

    for kind in ("handoff_requested", "complaint_raised", "handoff_claimed", "handoff_replied"):
        await env.events.wait_for(kind, party_id=party)
    resolved = await env.events.wait_for("complaint_resolved", party_id=party)
    assert resolved[0].message.complaint_id == handoff_id
    ended = await env.events.wait_for("conversation_closed", party_id=party)
    assert not ended[0].message.contained and ended[0].message.handoffs == 1
    requested = env.events.of("handoff_requested", party_id=party)[0].message
    assert requested.reason == pb.HANDOFF_REASON_COMPLAINT
    # No record carries what anyone wrote, nor the phone number.
    for record in env.events.records:
        assert PHONE.encode() not in record.value and "催收".encode() not in record.value

    # At rest: the customer's words sealed, only the masked form readable.
    stored = await env.db["conversations"].find_one({"_id": chat.conversation_id})
    assert stored is not None and PHONE not in json.dumps(stored, default=str)
    sealed = [m for m in stored["messages"].values() if m["sender"] == "customer"]
    assert all(m["text_sealed"] and "138****5678" not in m["text_sealed"] for m in sealed)
    queued = await env.db["handoffs"].find_one({"_id": handoff_id})
    assert queued is not None and PHONE not in json.dumps(queued, default=str)


async def test_two_failed_turns_go_to_the_queue(env: Env) -> None:
    party = new_id()
    chat = Chat(env.assistant, env.tokens.issue(party, aal=Aal.AAL1))
    await chat.start()
    r = await chat.turn("我要还款")
    assert r["pending"]["slot"] == "loan_id"
    r = await chat.turn("嗯嗯嗯")
    assert r["reply"]["kind"] == "ask"
    r = await chat.turn("呃呃呃")
    assert r["with_person"] and r["reply"]["kind"] == "handoff"
    requested = await env.events.wait_for("handoff_requested", party_id=party)
    assert requested[0].message.reason == pb.HANDOFF_REASON_FAILED_TURNS


async def test_bad_input_is_refused_and_changes_nothing(env: Env) -> None:
    party = new_id()
    chat = Chat(env.assistant, env.tokens.issue(party, aal=Aal.AAL1))
    await chat.start()
    base = f"/v1/conversations/{chat.conversation_id}"
    client = env.assistant.client
    auth = {"Authorization": f"Bearer {chat.token}"}
    for body in ({"text": ""}, {"text": "x" * 1001}, {}, {"text": "你好", "extra": 1}):
        r = await client.post(f"{base}/messages", json=body, headers=chat.headers())
        assert r.status_code == 422, (body, r.text)
    assert (
        await client.post(f"{base}/messages", json={"text": "你好"}, headers=auth)
    ).status_code == 422
    r = await client.post(
        f"{base}/messages", json={"text": "你好"}, headers={"Idempotency-Key": "k-no-token-1"}
    )
    assert r.status_code == 401
    r = await client.post(
        "/v1/conversations/not-an-id/messages", json={"text": "hi"}, headers=chat.headers()
    )
    assert r.status_code == 422
    r = await client.post("/v1/conversations", json={"channel": "fax"}, headers=chat.headers())
    assert r.status_code == 422
    r = await client.get(f"{base}/messages", params={"wait_s": 600}, headers=auth)
    assert r.status_code == 422
    same = chat.headers(key="same-key-twice")
    assert (
        await client.post(f"{base}/messages", json={"text": "你好"}, headers=same)
    ).status_code == 200
    reused = await client.post(f"{base}/messages", json={"text": "谢谢"}, headers=same)
    assert reused.status_code == 422 and reused.json()["title"] == "idempotency_key_reused"
    # The back office: no key is a 403, a bad operator id a 422, an unknown hand-off a 404.
    assert (await client.get("/v1/handoffs", headers={"X-Operator-Id": "op-1"})).status_code == 403
    bad_operator = operator_headers("op 1; drop")
    assert (await client.get("/v1/handoffs", headers=bad_operator)).status_code == 422
    missing = await client.post(f"/v1/handoffs/{new_id()}/claim", headers=operator_headers("op-1"))
    assert missing.status_code == 404
    r = await client.post(
        f"/v1/handoffs/{new_id()}/closure",
        json={"resolution": "maybe"},
        headers=operator_headers("op-1"),
    )
    assert r.status_code == 422
    view = (await client.get(base, headers=auth)).json()
    assert [m["text"] for m in view["messages"] if m["sender"] == "customer"] == ["你好"]


def blocked_answers(metrics: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "zc_assistant_blocked_answers_total"
        and sample.labels["source"] == "answer"
    )


async def test_an_unsafe_knowledge_base_answer_is_blocked_and_counted(
    env: Env, tmp_path: Path, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A knowledge base whose repayment answer promises returns: the answer is replaced by a
    safe one, marked blocked, counted, and QuestionAnswered says so."""
    knowledge = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE_DIR, knowledge)
    repayment = knowledge / "repayment.md"
    text = repayment.read_text()
    marker = "中文: 还款日当天系统自动从您的还款账户扣款"
    assert marker in text
    repayment.write_text(
        text.replace(marker, "中文: 选我们稳赚不赔，还款日当天系统自动从您的还款账户扣款")
    )
    unsafe = Understander.load(knowledge_dir=knowledge)
    database = f"t_asst_unsafe_{new_id()[-12:]}"
    settings = assistant_settings(env.engines, database=database, topic=env.topic)
    try:
        async with running_assistant(
            settings, verifier_of(env.tokens), with_understander=unsafe
        ) as app:
            before = blocked_answers((await app.client.get("/metrics")).text)
            party = new_id()
            chat = Chat(app, env.tokens.issue(party, aal=Aal.AAL1))
            await chat.start()
            r = await chat.turn("怎么还款")
            assert r["reply"]["kind"] == "answer" and r["reply"]["blocked"], r
            assert "稳赚" not in r["reply"]["text"]
            after = blocked_answers((await app.client.get("/metrics")).text)
            assert after == before + 1
            answered = await env.events.wait_for("question_answered", party_id=party)
            assert answered[0].message.blocked and answered[0].message.contained
    finally:
        await mongo_client.drop_database(database)
