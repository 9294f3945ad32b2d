"""The assistant through the partner gateway, end to end: real gRPC over mTLS in front of the
real assistant, identity, loan and payroll services and the real signals worker (risk and
engagement), with marketing consuming the assistant's events, on the real Kafka broker and
FerretDB. The party's own access token travels with every call; the back office answers a
hand-off through the assistant's HTTP API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from tests.integration.catalog_keys import check_record
from tests.integration.harness import RUN_ID, Engines, RunningApp, eventually, serve
from tests.integration.test_gateway_support import (
    ALL_SCOPES,
    OPERATOR_KEY,
    Customer,
    Suite,
    register_customer,
    start_suite,
)
from tests.integration.test_marketing_support import (
    MarketingTopics,
    marketing_settings,
    operator_headers,
)
from zerocontact.assistant.v1 import events_pb2 as assistant_pb
from zerocontact.gateway.v1 import assistant_pb2 as gw
from zerocontact.gateway.v1 import loan_pb2
from zerocontact.marketing.app import create_app as marketing_app
from zerocontact.partner_client import PartnerClient, cny, new_key
from zerocontact.signals.v1 import engagement_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
async def suite(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        s = await start_suite(
            engines,
            kafka_admin,
            mongo_client,
            tmp_path_factory.mktemp("assistant"),
            stack,
            with_assistant=True,
        )
        await s.add_partner("shop-a", ALL_SCOPES)
        await s.add_partner("bank-b", ALL_SCOPES)
        yield s


@pytest.fixture(scope="module")
async def marketing(suite: Suite, kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[RunningApp]:
    """Marketing on the suite's identity, loan, payroll and assistant topics."""
    t = suite.topics
    await kafka_admin.create_topics([NewTopic(f"{t.risk}-marketing-notes", 3, 1)])
    topics = MarketingTopics(
        identity=t.identity, loan=t.loan, payroll=t.payroll, marketing=f"{t.risk}-marketing",
        notifications=f"{t.risk}-marketing-notes", engagement=f"{t.risk}-engagement",
        assistant=t.assistant,
    )  # fmt: skip
    settings = marketing_settings(suite.engines, topics, lambda p: f"t{RUN_ID}-{p}-{new_key()[:8]}")
    async with serve(marketing_app(settings)) as running:
        running.client.headers.update(operator_headers("alice"))
        yield running


class AssistantEvents:
    """Every record of the suite's assistant topic so far, checked against the catalog."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.raw: list[bytes] = []

    async def read(self) -> list[assistant_pb.AssistantEvent]:
        consumer = AIOKafkaConsumer(
            self.suite.topics.assistant,
            bootstrap_servers=self.suite.engines.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            self.raw = []
            found = []
            for batch in (await consumer.getmany(timeout_ms=3000)).values():
                for record in batch:
                    check_record("assistant.events.v1", record.key, record.headers, record.value)
                    self.raw.append(record.value or b"")
                    found.append(assistant_pb.AssistantEvent.FromString(record.value or b""))
            return found
        finally:
            await consumer.stop()


async def disbursed_loan(zc: PartnerClient, customer: Customer) -> loan_pb2.Loan:
    """A 310 loan through the gateway, applied, accepted and disbursed."""
    application = await zc.apply_for_loan(
        loan_pb2.ApplyForLoanRequest(
            party_id=customer.party_id, product_id="merchant-310", amount=cny(3_000_000),
            term_months=12, purpose="inventory", device_id=customer.device_id,
        ),
        token=customer.token,
    )  # fmt: skip
    loan = None
    async for update in zc.watch_loan_application(
        application.application_id, token=customer.token, timeout_s=90
    ):
        if update.application.state == "APPROVED" and loan is None:
            loan = await zc.accept_loan_offer(application.application_id, token=customer.token)
        if update.terminal:
            assert update.loan.state == "DISBURSED", update
            break
    assert loan is not None
    return await zc.get_loan(loan.loan_id, token=customer.token)


def paid(loan: loan_pb2.Loan) -> int:
    """Minor units paid on the loan's schedule so far."""
    return sum(i.paid_principal.minor_units + i.paid_interest.minor_units for i in loan.schedule)


@dataclass
class Said:
    """What one customer request led to: the intent understood (the first reply's: a slot's
    answer is not a request of its own) and the last turn."""

    intent: str
    turn: gw.SendMessageResponse

    @property
    def reply(self) -> gw.AssistantMessage:
        return self.turn.reply

    @property
    def pending(self) -> gw.PendingTurn:
        return self.turn.pending


async def say(
    zc: PartnerClient,
    conversation_id: str,
    text: str,
    token: str,
    **slots: str,
) -> Said:
    """Send ``text``; while the assistant asks for a slot, answer with ``slots[slot]`` (an id of
    the party's own: the choice whose value it is, or the id itself when none are offered)."""
    turn = await zc.send_message(conversation_id, text, token=token)
    intent = turn.reply.intent
    for _ in range(4):
        pending = turn.pending if turn.HasField("pending") else None
        if pending is None or pending.awaiting != gw.AWAITING_SLOT:
            break
        assert pending.slot in slots, (pending.slot, turn)
        value = slots[pending.slot]
        if pending.options:
            values = [o.value for o in pending.options]
            assert value in values, (value, values, turn)
        turn = await zc.send_message(conversation_id, value, token=token)
    return Said(intent, turn)


async def test_the_assistant_acts_for_the_party_with_its_own_token(suite: Suite) -> None:
    async with suite.client("shop-a") as zc:
        customer = await register_customer(suite, zc)
        loan = await disbursed_loan(zc, customer)
        token = customer.token
        conversation = await zc.start_conversation(customer.party_id, token=token)
        assert conversation.state == gw.CONVERSATION_STATE_OPEN
        assert conversation.party_id == customer.party_id
        cid = conversation.conversation_id

        # what is due next, and its amount as the loan service has it
        turn = await say(zc, cid, "我的贷款下一期要还多少钱?", token, loan_id=loan.loan_id)
        assert turn.intent == "loan.next_installment", turn
        assert turn.reply.kind == gw.MESSAGE_KIND_ACTION, turn
        first = loan.schedule[0]
        due = Decimal(first.principal.minor_units + first.interest.minor_units) / 100
        assert f"{due:.2f}" in turn.reply.text, (due, turn.reply.text)
        assert loan.loan_id[-8:] in turn.reply.text

        # the early-repayment (payoff) quote
        turn = await say(zc, cid, "帮我算一下现在提前还清要多少", token, loan_id=loan.loan_id)
        assert turn.intent == "loan.early_repayment_quote", turn
        assert turn.reply.kind == gw.MESSAGE_KIND_ACTION, turn

        # a repayment: asked to confirm before money moves, done with the stepped-up token
        turn = await say(zc, cid, "我要还款", token, loan_id=loan.loan_id, amount="100")
        assert turn.pending.awaiting == gw.AWAITING_CONFIRMATION, turn
        assert turn.reply.kind == gw.MESSAGE_KIND_CONFIRMATION
        before = await zc.get_loan(loan.loan_id, token=token)
        # a second factor once more (identity refuses a TOTP step it has accepted before)
        await asyncio.sleep(30.5 - time.time() % 30)
        stepped_up = await customer.aal2(zc)
        turn = await zc.send_message(cid, "是的，确认还款", token=stepped_up)
        assert turn.reply.kind == gw.MESSAGE_KIND_ACTION, turn
        after = await zc.get_loan(loan.loan_id, token=stepped_up)
        paid_before = paid(before)
        paid_after = paid(after)
        assert paid_after - paid_before == 10_000, (paid_before, paid_after)
        # the same confirmation again (a retried message with a new key) moves nothing more
        again = await zc.send_message(cid, "是的，确认还款", token=stepped_up)
        assert again.reply.kind != gw.MESSAGE_KIND_ACTION, again
        assert paid(await zc.get_loan(loan.loan_id, token=stepped_up)) == paid_after

        # sign out of every other session: identity keeps only the session asking
        live = await suite.identity.client.get(
            "/v1/me/sessions", headers={"Authorization": f"Bearer {stepped_up}"}
        )
        assert live.status_code == 200 and len(live.json()["sessions"]) > 1, live.text
        turn = await say(zc, cid, "把其他设备都踢下线", stepped_up)
        assert turn.intent == "identity.revoke_sessions", turn
        assert turn.reply.kind == gw.MESSAGE_KIND_ACTION, turn
        live = await suite.identity.client.get(
            "/v1/me/sessions", headers={"Authorization": f"Bearer {stepped_up}"}
        )
        assert [s["current"] for s in live.json()["sessions"]] == [True], live.text

        # the application's status
        turn = await say(
            zc, cid, "我的贷款申请审批到哪一步了", stepped_up, application_id=loan.application_id
        )
        assert turn.intent == "loan.application_status", turn
        assert turn.reply.kind == gw.MESSAGE_KIND_ACTION, turn

        closed = await zc.assistant.CloseConversation(
            gw.CloseConversationRequest(conversation_id=cid),
            metadata=zc.metadata(token=stepped_up, key=new_key()),
        )
        assert closed.conversation.state == gw.CONVERSATION_STATE_CLOSED

    events = AssistantEvents(suite)

    async def actions() -> list[assistant_pb.ActionPerformed] | None:
        found = [
            e.action_performed
            for e in await events.read()
            if e.WhichOneof("event") == "action_performed"
            and e.action_performed.party_id == customer.party_id
        ]
        return found if len(found) >= 5 else None

    performed = await eventually(actions, within_s=30)
    kinds = {(a.kind, a.outcome) for a in performed}
    succeeded = assistant_pb.ACTION_OUTCOME_SUCCEEDED
    for kind in (
        assistant_pb.ACTION_KIND_LOAN_NEXT_INSTALLMENT,
        assistant_pb.ACTION_KIND_LOAN_EARLY_REPAYMENT_QUOTE,
        assistant_pb.ACTION_KIND_LOAN_REPAY,
        assistant_pb.ACTION_KIND_IDENTITY_REVOKE_SESSIONS,
    ):
        assert (kind, succeeded) in kinds, kinds
    repaid = [a for a in performed if a.kind == assistant_pb.ACTION_KIND_LOAN_REPAY]
    assert len([a for a in repaid if a.outcome == succeeded]) == 1, repaid
    # no personal data on the topic: the customer's phone and ID numbers appear nowhere
    for raw in events.raw:
        assert customer.person.phone.encode() not in raw
        assert customer.person.rid.encode() not in raw


async def test_another_party_s_loan_and_conversation_are_refused(suite: Suite) -> None:
    async with suite.client("shop-a") as zc:
        owner = await register_customer(suite, zc)
        loan = await disbursed_loan(zc, owner)
        other = await register_customer(suite, zc)
        conversation = await zc.start_conversation(other.party_id, token=other.token)
        cid = conversation.conversation_id
        turn = await zc.send_message(cid, f"贷款 {loan.loan_id} 下一期还多少", token=other.token)
        # refused or not offered: never the owner's figures
        texts = " ".join(m.text for m in turn.messages)
        first = loan.schedule[0]
        owner_due = Decimal(first.principal.minor_units + first.interest.minor_units) / 100
        assert f"{owner_due:.2f}" not in texts, texts
        assert (
            turn.reply.kind != gw.MESSAGE_KIND_ACTION
            or "…" not in turn.reply.text
            or (loan.loan_id[-8:] not in turn.reply.text)
        )
        # a conversation for another party, with this party's token: refused, nothing opened
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await zc.start_conversation(owner.party_id, token=other.token)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
        # the owner's token cannot read the other's conversation (the assistant says 404)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await zc.assistant.GetConversation(
                gw.GetConversationRequest(conversation_id=cid),
                metadata=zc.metadata(token=owner.token),
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    async with suite.client("bank-b") as zb:
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await zb.assistant.GetConversation(
                gw.GetConversationRequest(conversation_id=cid),
                metadata=zb.metadata(token=other.token),
            )
        assert foreign.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
            await zb.start_conversation(other.party_id, token=other.token)
        assert not_theirs.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_person_answers_a_hand_off_on_the_party_s_watch(suite: Suite) -> None:
    assert suite.assistant is not None
    back_office = {"X-Operator-Key": OPERATOR_KEY, "X-Operator-Id": "op-wang"}
    async with suite.client("shop-a") as zc:
        customer = await register_customer(suite, zc)
        conversation = await zc.start_conversation(customer.party_id, token=customer.token)
        cid = conversation.conversation_id
        turn = await zc.send_message(cid, "转人工", token=customer.token)
        assert turn.reply.kind == gw.MESSAGE_KIND_HANDOFF, turn
        assert turn.handoff.state == gw.HANDOFF_STATE_OPEN
        handoff_id = turn.handoff.handoff_id
        seen: list[gw.WatchConversationResponse] = []

        async def watch() -> None:
            async for update in zc.watch_conversation(
                cid, token=customer.token, after_seq=max(m.seq for m in turn.messages)
            ):
                seen.append(update)
                if update.closed:
                    return

        watching = asyncio.create_task(watch())
        http = suite.assistant.client
        queue = await http.get("/v1/handoffs", params={"state": "open"}, headers=back_office)
        assert queue.status_code == 200, queue.text
        assert handoff_id in {h["handoff_id"] for h in queue.json()["handoffs"]}
        claimed = await http.post(
            f"/v1/handoffs/{handoff_id}/claim",
            headers={**back_office, "Idempotency-Key": new_key()},
        )
        assert claimed.status_code == 200, claimed.text
        # a second operator cannot take it
        taken = await http.post(
            f"/v1/handoffs/{handoff_id}/claim",
            headers={**back_office, "X-Operator-Id": "op-li", "Idempotency-Key": new_key()},
        )
        assert taken.status_code == 409, taken.text
        replied = await http.post(
            f"/v1/handoffs/{handoff_id}/replies",
            json={"text": "您好，我是客服小王，请问有什么可以帮您?"},
            headers={**back_office, "Idempotency-Key": new_key()},
        )
        assert replied.status_code in (200, 201), replied.text

        async def operator_reply() -> gw.WatchConversationResponse | None:
            for u in seen:
                if u.message.sender == gw.MESSAGE_SENDER_OPERATOR:
                    return u
            return None

        reply = await eventually(operator_reply, within_s=30)
        assert "客服小王" in reply.message.text
        assert reply.message.kind == gw.MESSAGE_KIND_OPERATOR
        # an unsafe reply from a person is refused (red lines apply to people too)
        unsafe = await http.post(
            f"/v1/handoffs/{handoff_id}/replies",
            json={"text": "这款理财保本保收益，稳赚不赔"},
            headers={**back_office, "Idempotency-Key": new_key()},
        )
        assert unsafe.status_code == 422, unsafe.text
        await zc.assistant.CloseConversation(
            gw.CloseConversationRequest(conversation_id=cid),
            metadata=zc.metadata(token=customer.token, key=new_key()),
        )
        await asyncio.wait_for(watching, timeout=30)
        assert seen[-1].closed
        assert not any("保本" in u.message.text for u in seen)


async def test_engagement_and_marketing_consume_the_assistant_s_events(
    suite: Suite, marketing: RunningApp
) -> None:
    assert suite.assistant is not None
    back_office = {"X-Operator-Key": OPERATOR_KEY, "X-Operator-Id": "op-zhao"}
    async with suite.client("shop-a") as zc:
        customer = await register_customer(suite, zc)
        conversation = await zc.start_conversation(customer.party_id, token=customer.token)
        cid = conversation.conversation_id
        answered = await zc.send_message(cid, "提前还款有没有手续费?", token=customer.token)
        assert answered.reply.kind == gw.MESSAGE_KIND_ANSWER, answered
        assert answered.reply.article_id, answered
        complaint = await zc.send_message(cid, "我要投诉，你们乱扣费", token=customer.token)
        assert complaint.HasField("handoff"), complaint

    # engagement: the signals worker scores the party from the assistant's events
    engagement = AIOKafkaConsumer(
        f"{suite.topics.risk}-engagement",
        bootstrap_servers=suite.engines.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await engagement.start()
    try:

        async def scored() -> engagement_pb2.EngagementScore | None:
            for batch in (await engagement.getmany(timeout_ms=500)).values():
                for record in batch:
                    e = engagement_pb2.EngagementEvent.FromString(record.value or b"")
                    if e.WhichOneof("event") == "engagement_score" and (
                        e.engagement_score.party_id == customer.party_id
                    ):
                        return e.engagement_score
            return None

        score = await eventually(scored, within_s=60)
        assert score.score_milli > 0
    finally:
        await engagement.stop()

    # marketing: outreach to the party is paused while its complaint is open
    async def paused() -> datetime | None:
        r = await marketing.client.get(f"/v1/parties/{customer.party_id}/profile")
        if r.status_code != 200:
            return None
        until = r.json().get("outreach_paused_until")
        return datetime.fromisoformat(until) if until else None

    until = await eventually(paused, within_s=30)
    assert until.astimezone(UTC) > datetime.now(UTC)
    http = suite.assistant.client
    handoff_id = complaint.handoff.handoff_id
    for step, body in (("claim", None), ("closure", {"resolution": "resolved"})):
        r = await http.post(
            f"/v1/handoffs/{handoff_id}/{step}",
            json=body,
            headers={**back_office, "Idempotency-Key": new_key()},
        )
        assert r.status_code == 200, r.text

    async def resumed() -> bool:
        r = await marketing.client.get(f"/v1/parties/{customer.party_id}/profile")
        return r.status_code == 200 and r.json().get("outreach_paused_until") is None

    await eventually(resumed, within_s=30)
