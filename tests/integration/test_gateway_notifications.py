"""Durable notifications through the gateway: signed webhooks delivered from the topics with
retries (a real HTTP receiver, killed for a real minute) and resumable watch streams.

One suite per module (the real identity, loan and payroll services, the signals worker and the
gateway over mTLS on the real Kafka broker and FerretDB), with webhook retry timings short
enough that several attempts fall inside the outage.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, free_port
from tests.integration.test_gateway_support import ALL_SCOPES, Suite, start_suite
from tests.integration.test_identity_service import PASSWORD, Person
from zerocontact.gateway.v1 import identity_pb2, loan_pb2, webhooks_pb2
from zerocontact.gateway.webhooks.events import EVENT_TYPES
from zerocontact.partner_client import (
    PartnerClient,
    Resume,
    WebhookSignatureError,
    cny,
    error_details,
    new_key,
    verify_webhook,
)
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.signals import records
from zerocontact.signals.scorecard import RULES, score
from zerocontact.signals.v1 import risk_pb2

pytestmark = pytest.mark.asyncio(loop_scope="session")
ROOT = Path(__file__).resolve().parents[2]
SCOPES = [*ALL_SCOPES, "webhooks:read", "webhooks:write"]
OUTAGE_S = 60.0  # the minute, for real
PARTS = range(6)  # partitions of the suite's topics (test_gateway_support.make_topics)


@pytest.fixture(scope="module")
async def suite(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        s = await start_suite(
            engines, kafka_admin, mongo_client, tmp_path_factory.mktemp("notify"), stack,
            gateway_overrides={
                "webhook_allow_http": True, "webhook_tick_s": 0.3, "webhook_retry_base_s": 0.5,
                "webhook_retry_max_s": 4.0, "webhook_max_age_s": 900.0, "webhook_timeout_s": 3.0,
                "webhook_lease_s": 10.0, "webhook_endpoint_cache_s": 1.0,
            },
        )  # fmt: skip
        await s.add_partner("hook-a", SCOPES)
        await s.add_partner("hook-b", SCOPES)
        yield s


class Receiver:
    """A partner's webhook receiver: a real aiohttp server that keeps every POST."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[bytes, str]] = []  # (body, signature header)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), request.headers["Zerocontact-Signature"]))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self) -> Counter[str]:
        return Counter(json.loads(body)["id"] for body, _ in self.received)


async def _apply(zc: PartnerClient, device: str) -> tuple[str, str]:
    """A new customer of the partner applies from ``device``: (party id, application id)."""
    person = Person()
    party = await zc.register_customer(
        identity_pb2.RegisterCustomerRequest(**person.body(date_of_birth=person.birth.isoformat()))
    )
    started = await zc.start_authentication(person.phone, PASSWORD, device_id=device)
    request = loan_pb2.ApplyForLoanRequest(
        party_id=party.party_id, product_id="own-interest-first", amount=cny(100_000),
        term_months=6, purpose="stock", device_id=device,
    )  # fmt: skip
    for _ in range(100):
        try:
            application = await zc.apply_for_loan(request, token=started.access_token)
            return party.party_id, application.application_id
        except grpc.aio.AioRpcError as exc:  # loan learns of the party from identity's events
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
            await asyncio.sleep(0.3)
    raise AssertionError("the application was never accepted")


async def _events_of(suite: Suite, parties: set[str], apps: set[str]) -> dict[str, str]:
    """Every deliverable event (id → type) about these parties or applications, read from the
    topics themselves: what the receiver must get, each once."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=suite.engines.kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    found: dict[str, str] = {}
    try:
        tps = [TopicPartition(t, p) for t in (suite.topics.loan, suite.topics.risk) for p in PARTS]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                for record in batch:
                    event = CloudEvent.from_record(record.headers, record.value)
                    if tp.topic == suite.topics.risk:
                        wrapper: Any = risk_pb2.RiskEvent.FromString(event.data)
                    else:
                        from zerocontact.loan.v1 import events_pb2

                        wrapper = events_pb2.LoanEvent.FromString(event.data)
                    kind = wrapper.WhichOneof("event")
                    if kind not in EVENT_TYPES:
                        continue
                    inner = getattr(wrapper, kind)
                    if (getattr(inner, "party_id", "") in parties) or (
                        getattr(inner, "application_id", "") in apps
                    ):
                        found[event.id] = EVENT_TYPES[kind].name
    finally:
        await consumer.stop()
    return found


async def _deliveries(zc: PartnerClient) -> list[webhooks_pb2.WebhookDelivery]:
    out: list[webhooks_pb2.WebhookDelivery] = []
    token = ""
    while True:
        page = await zc.webhooks.ListWebhookDeliveries(
            webhooks_pb2.ListWebhookDeliveriesRequest(page_size=20, page_token=token),
            metadata=zc.metadata(),
        )
        out.extend(page.deliveries)
        token = page.next_page_token
        if not token:
            return out


async def test_webhooks_survive_a_one_minute_receiver_outage_exactly_once(suite: Suite) -> None:
    """The receiver is down for a real minute while the partner's customers apply (loan
    events, risk decisions, a device-shared alert); afterwards every event reaches it exactly
    once by id, signed, and the delivery log tells the story."""
    started = time.monotonic()
    receiver = Receiver(free_port())
    await receiver.start()
    device = f"shared-{uuid.uuid4().hex[:8]}"
    async with suite.client("hook-a") as zc:
        created = await zc.webhooks.CreateWebhookEndpoint(
            webhooks_pb2.CreateWebhookEndpointRequest(url=receiver.url, event_types=["*"]),
            metadata=zc.metadata(key=new_key()),
        )
        secret = created.signing_secret
        assert secret.startswith("whsec_") and created.endpoint.active
        listed = await zc.webhooks.ListWebhookEndpoints(
            webhooks_pb2.ListWebhookEndpointsRequest(), metadata=zc.metadata()
        )
        assert secret not in str(listed) and len(listed.endpoints) == 1

        parties, apps = set(), set()
        party, app = await _apply(zc, device)  # delivered while the receiver is up
        parties.add(party), apps.add(app)
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.1)
        assert receiver.received, "no delivery while the receiver was up"

        await receiver.stop()
        down_at = time.monotonic()
        for _ in range(3):  # the third party on the device raises a DEVICE_SHARED alert
            party, app = await _apply(zc, device)
            parties.add(party), apps.add(app)
        # every application's decision and the alert are on the topics (the signals worker)
        for _ in range(300):
            expected = await _events_of(suite, parties, apps)
            types = Counter(expected.values())
            decided = types["loan.application.approved"] + types["loan.application.declined"]
            if decided == len(apps) and types["risk.alert.raised"] >= 1:
                break
            await asyncio.sleep(0.3)
        assert types["risk.alert.raised"] >= 1 and decided == len(apps), types
        produced_during_outage = time.monotonic() - down_at
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        log = await _deliveries(zc)
        waiting = [d for d in log if d.status != webhooks_pb2.WEBHOOK_DELIVERY_STATUS_SUCCEEDED]
        assert waiting, "nothing was waiting during the outage"
        assert all(d.attempts >= 2 and d.last_error for d in waiting), waiting[0]
        assert {d.status for d in waiting} <= {
            webhooks_pb2.WEBHOOK_DELIVERY_STATUS_PENDING,
            webhooks_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERING,
        }

        await receiver.start()
        restarted = time.monotonic()
        expected = await _events_of(suite, parties, apps)
        for _ in range(300):
            if set(receiver.ids()) >= set(expected):
                break
            await asyncio.sleep(0.1)
        caught_up_s = time.monotonic() - restarted
        await asyncio.sleep(2.0)  # nothing more arrives late
        counts = receiver.ids()
        assert set(counts) == set(expected), (
            set(expected) - set(counts),
            set(counts) - set(expected),
        )
        assert all(n == 1 for n in counts.values()), [i for i, n in counts.items() if n > 1]
        for body, header in receiver.received:  # every one signed with the endpoint's secret
            event = verify_webhook(body, header, secret)
            assert event["type"] == expected[str(event["id"])]
        log = await _deliveries(zc)
        assert {d.event_id for d in log} == set(expected)
        assert all(d.status == webhooks_pb2.WEBHOOK_DELIVERY_STATUS_SUCCEEDED for d in log)
        assert max(d.attempts for d in log) >= 3
        # no personal data in the bodies: no device, no address, amounts as strings
        raw = b"".join(body for body, _ in receiver.received)
        assert device.encode() not in raw and b"127.0.0.1" not in raw
        submitted = next(
            json.loads(b) for b, _ in receiver.received
            if json.loads(b)["type"] == "loan.application.submitted"
        )  # fmt: skip
        assert submitted["data"]["amount"] == {"currency_code": "CNY", "minor_units": "100000"}
        suite.shared["hooks"] = (receiver, secret, expected)
    print(
        f"\nwebhook outage: {len(expected)} events, produced in {produced_during_outage:.1f} s, "
        f"outage {restarted - down_at:.1f} s, all delivered {caught_up_s:.1f} s after the "
        f"restart, max attempts {max(d.attempts for d in log)}; test {time.monotonic() - started:.1f} s"
    )


async def test_signature_verifies_tampering_fails_and_the_documented_snippet_agrees(
    suite: Suite,
) -> None:
    receiver, secret, _ = suite.shared["hooks"]
    body, header = receiver.received[0]
    verify_webhook(body, header, secret)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body.replace(b'"type"', b'"typo"'), header, secret)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body, header, "whsec_another")
    with pytest.raises(WebhookSignatureError):  # an old delivery replayed by an attacker
        verify_webhook(body, header, secret, now=time.time() + 3600)
    # the receiver's snippet in docs/gateway.md, run as written
    doc = (ROOT / "docs/gateway.md").read_text()
    snippet = re.search(r"<!-- webhook-verify -->\n```python\n(.*?)```", doc, re.S)
    assert snippet, "docs/gateway.md lost its verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(snippet.group(1), "docs/gateway.md", "exec"), namespace)
    event = namespace["verify"](body, header, secret)
    assert event["id"] == json.loads(body)["id"]
    with pytest.raises(ValueError):
        namespace["verify"](body + b" ", header, secret)


async def test_replay_resends_with_the_same_event_ids(suite: Suite) -> None:
    receiver, _, expected = suite.shared["hooks"]
    some = sorted(expected)[:2]
    before = receiver.ids()
    async with suite.client("hook-a") as zc:
        replayed = await zc.webhooks.ReplayWebhooks(
            webhooks_pb2.ReplayWebhooksRequest(event_ids=some), metadata=zc.metadata(key=new_key())
        )
        assert replayed.replayed == 2
        for _ in range(100):
            if all(receiver.ids()[i] == before[i] + 1 for i in some):
                break
            await asyncio.sleep(0.1)
        assert all(receiver.ids()[i] == before[i] + 1 for i in some)
        # another partner sees none of it and replays nothing of it
    async with suite.client("hook-b") as zb:
        assert not await _deliveries(zb)
        other = await zb.webhooks.ReplayWebhooks(
            webhooks_pb2.ReplayWebhooksRequest(event_ids=some), metadata=zb.metadata(key=new_key())
        )
        assert other.replayed == 0
    await receiver.stop()


async def _publish_alerts(suite: Suite, party_id: str, n: int) -> list[str]:
    """``n`` DEVICE_SHARED alerts about ``party_id``, written as the signals worker writes
    them (its own record builder)."""
    triggered = score({"parties_per_device_24h": Decimal(5)}, RULES).triggered
    producer = AIOKafkaProducer(bootstrap_servers=suite.engines.kafka_bootstrap)
    await producer.start()
    ids = []
    try:
        for _ in range(n):
            value, headers, alert_id = records.alert_record(
                kind=risk_pb2.RISK_ALERT_KIND_DEVICE_SHARED, party_id=party_id,
                window_key=uuid.uuid4().hex, reasons=triggered, device_id="dev-x",
            )  # fmt: skip
            await producer.send_and_wait(
                suite.topics.risk, value, key=party_id.encode(), headers=headers
            )
            ids.append(alert_id)
    finally:
        await producer.stop()
    return ids


def _reason(err: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    from google.rpc import error_details_pb2

    reason, fields = "", []
    for d in error_details(err):
        if isinstance(d, error_details_pb2.ErrorInfo):
            reason = d.reason
        elif isinstance(d, error_details_pb2.BadRequest):
            fields = [v.field for v in d.field_violations]
    return reason, fields


async def test_resume_token_replays_the_missed_alerts_then_goes_on_live(suite: Suite) -> None:
    async with suite.client("hook-a") as zc, suite.client("hook-b") as zb:
        mine = (await zc.register_customer(
            identity_pb2.RegisterCustomerRequest(**Person().body())
        )).party_id  # fmt: skip
        theirs = (await zb.register_customer(
            identity_pb2.RegisterCustomerRequest(**Person().body())
        )).party_id  # fmt: skip
        resume = Resume()
        seen: list[str] = []

        async def read(n: int) -> None:
            async for alert in zc.watch_risk_alerts(timeout_s=60, resume=resume):
                assert alert.alert_id == alert.event_id  # the alert id is its event's id
                seen.append(alert.event_id)
                if len(seen) >= n:
                    return

        first = asyncio.create_task(read(2))
        for _ in range(50):  # the stream is open: its start position came first
            if resume.token:
                break
            await asyncio.sleep(0.1)
        assert resume.token, "no x-resume-token in the stream's initial metadata"
        sent = await _publish_alerts(suite, mine, 2)
        await _publish_alerts(suite, theirs, 1)
        await asyncio.wait_for(first, 30)  # read some, then disconnect
        assert seen == sent
        token_after_two = resume.token

        missed = await _publish_alerts(suite, mine, 2)  # while disconnected
        await _publish_alerts(suite, theirs, 1)
        second = asyncio.create_task(read(5))
        for _ in range(100):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.1)
        assert seen == sent + missed  # exactly the missed ones, in order, no duplicate
        live = await _publish_alerts(suite, mine, 1)
        await asyncio.wait_for(second, 30)
        assert seen == sent + missed + live and len(set(seen)) == 5

        # a forged token, or another partner's, is INVALID_ARGUMENT naming resume_token
        forged = token_after_two[:-3] + ("AAA" if token_after_two[-3:] != "AAA" else "BBB")
        for client, token in ((zc, forged), (zc, "zrt1.e30.AAAA"), (zb, token_after_two)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in client.watch_risk_alerts(timeout_s=10, resume=Resume(token)):
                    pass
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert _reason(caught.value) == ("INVALID_RESUME_TOKEN", ["resume_token"])

        # once the topic no longer holds the position: OUT_OF_RANGE, re-sync with Get*
        admin = AIOKafkaAdminClient(bootstrap_servers=suite.engines.kafka_bootstrap)
        await admin.start()
        try:
            probe = AIOKafkaConsumer(bootstrap_servers=suite.engines.kafka_bootstrap)
            await probe.start()
            tps = [TopicPartition(suite.topics.risk, p) for p in PARTS]
            ends = await probe.end_offsets(tps)
            await probe.stop()
            await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in tps if ends[tp]})
        finally:
            await admin.close()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in zc.watch_risk_alerts(timeout_s=10, resume=Resume(token_after_two)):
                pass
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert _reason(caught.value)[0] == "RESUME_POSITION_EXPIRED"
        assert "Get" in (caught.value.details() or "")


async def test_another_partner_s_endpoint_is_not_found_in_deliveries_and_replays(
    suite: Suite,
) -> None:
    """Found by tests/chaos/attacks.py (BOLA): naming another partner's endpoint answered an
    empty page and 0 replayed instead of NOT_FOUND like any other partner's object."""
    async with suite.client("hook-a") as za:
        created = await za.webhooks.CreateWebhookEndpoint(
            webhooks_pb2.CreateWebhookEndpointRequest(
                url="https://partner-a.example/hooks", event_types=["*"]
            ),
            metadata=za.metadata(key=new_key()),
        )
        endpoint_id = created.endpoint.endpoint_id
        async with suite.client("hook-b") as zb:
            calls = [
                zb.webhooks.ListWebhookDeliveries(
                    webhooks_pb2.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id),
                    metadata=zb.metadata(),
                ),
                zb.webhooks.ReplayWebhooks(
                    webhooks_pb2.ReplayWebhooksRequest(endpoint_id=endpoint_id, event_ids=["e-1"]),
                    metadata=zb.metadata(key=new_key()),
                ),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await call
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND
                assert "WEBHOOK_ENDPOINT_NOT_FOUND" in str(refused.value.debug_error_string()) or (
                    refused.value.details() == "no such webhook_endpoint"
                )
        # the owner still reads and replays by its endpoint
        page = await za.webhooks.ListWebhookDeliveries(
            webhooks_pb2.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id),
            metadata=za.metadata(),
        )
        assert list(page.deliveries) == []
        await za.webhooks.DeleteWebhookEndpoint(
            webhooks_pb2.DeleteWebhookEndpointRequest(endpoint_id=endpoint_id),
            metadata=za.metadata(key=new_key()),
        )


async def test_generated_webhook_requests_that_failed_inside_the_gateway_name_their_field(
    suite: Suite,
) -> None:
    """Found by tests/chaos/fuzz.py once its generated requests really reached the gateway:
    an enum number the proto does not define and a Timestamp outside its range answered
    INTERNAL instead of INVALID_ARGUMENT naming the field."""
    async with suite.client("hook-a") as za:
        calls = {
            "status": za.webhooks.ListWebhookDeliveries(
                webhooks_pb2.ListWebhookDeliveriesRequest(status=339),  # type: ignore[arg-type]
                metadata=za.metadata(),
            ),
            "start_time": za.webhooks.ReplayWebhooks(
                webhooks_pb2.ReplayWebhooksRequest(start_time=Timestamp(seconds=1, nanos=-7822)),
                metadata=za.metadata(key=new_key()),
            ),
        }
        for field_name, call in calls.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field_name
            violations = [
                v.field
                for d in error_details(refused.value)
                if isinstance(d, error_details_pb2.BadRequest)
                for v in d.field_violations
            ]
            assert violations == [field_name], (field_name, violations)
