"""Shared pieces of the marketing integration tests: topics, settings, a settable clock, an
event producer for the upstream topics and a reader of marketing.events.v1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.integration.catalog_keys import check_record
from tests.integration.harness import Engines, RunningApp, serve
from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.marketing.app import create_app
from zerocontact.marketing.domain.contact import Caps
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.payroll.v1 import events_pb2 as payroll_pb
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.money import Money

# The back office's shared credential in these tests (a setting; 32+ characters).
OPERATOR_KEY = "test-operator-key-0123456789abcdef"
# 12:00 in Shanghai: outside the default quiet hours (21:00-08:00).
NOON_SHANGHAI = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
DISCLOSURE = "理财非存款，产品有风险，投资须谨慎。"


@dataclass
class Clock:
    """A clock the test sets; the service reads it for quiet hours and cap days."""

    now: datetime = NOON_SHANGHAI

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class MarketingTopics:
    identity: str
    loan: str
    payroll: str
    marketing: str
    notifications: str
    engagement: str
    # The test's own: the default assistant.events.v1 exists only where another test or
    # `make up` created it, and a consumer of a missing topic never joins.
    assistant: str


async def create_marketing_topics(create_topic: Callable[..., Awaitable[str]]) -> MarketingTopics:
    names = await asyncio.gather(
        *(
            create_topic(p)
            for p in ("identity", "loan", "payroll", "mkt", "mktnotif", "engage", "assistant")
        )
    )
    return MarketingTopics(*names)


def marketing_settings(
    engines: Engines, topics: MarketingTopics, unique_name: Callable[[str], str]
) -> MarketingSettings:
    """The service's settings on this test's own topics, database and consumer group."""
    return MarketingSettings(
        kafka_bootstrap_servers=engines.kafka_bootstrap,
        mongodb_uri=engines.mongodb_uri,
        mongodb_database=unique_name("mkt").replace("-", "_")[:60],
        consumer_group=unique_name("grp"),
        topic=topics.marketing,
        notifications_topic=topics.notifications,
        identity_topic=topics.identity,
        loan_topic=topics.loan,
        payroll_topic=topics.payroll,
        engagement_topic=topics.engagement,
        assistant_topic=topics.assistant,
        cache_seconds=0.5,
        simulator_latency_ms=10,
        outbox_sweep_interval_s=1.0,
        operator_key=OPERATOR_KEY,
        schedule_poll_s=0.2,
    )


@asynccontextmanager
async def running_marketing(
    settings: MarketingSettings, clock: Clock, caps: Caps | None = None
) -> AsyncIterator[RunningApp]:
    async with serve(create_app(settings, clock=clock, caps=caps)) as running:
        # The back office's credential on every call; the operator is "alice" unless a
        # request names another (httpx merges per-request headers over these).
        running.client.headers.update(operator_headers("alice"))
        yield running


class Upstream:
    """Produces identity, loan and payroll events as the other services would."""

    def __init__(self, bootstrap: str, topics: MarketingTopics) -> None:
        self.topics = topics
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, topic: str, key: str, wrapper: Any, *, event_id: str | None = None) -> str:
        inner = getattr(wrapper, wrapper.WhichOneof("event"))
        cloud = CloudEvent(
            id=event_id or new_id(),
            source="/tests",
            type=inner.DESCRIPTOR.full_name,
            subject=key,
            data=wrapper.SerializeToString(),
        )
        await self.producer.send_and_wait(
            topic, cloud.data, key=key.encode(), headers=cloud.headers()
        )
        return cloud.id

    async def customer_registered(self, party_id: str, birth_year: int = 1990) -> str:
        w = identity_pb.IdentityEvent()
        w.customer_registered.customer_id = party_id
        w.customer_registered.birth_year = birth_year
        w.customer_registered.registered_at.FromDatetime(NOON_SHANGHAI)
        return await self.send(self.topics.identity, party_id, w)

    async def salary_paid(
        self,
        employer_id: str,
        card_masked: str,
        amount: Money,
        paid_at: datetime,
        *,
        event_id: str | None = None,
        payee_party_id: str = "",
    ) -> str:
        w = payroll_pb.PayrollEvent()
        p = w.salary_paid
        p.payee_party_id = payee_party_id
        p.batch_id, p.employer_id, p.end_to_end_id = new_id(), employer_id, new_id()[:35]
        p.card_masked, p.bank = card_masked, "ICBC"
        p.amount.CopyFrom(amount.to_proto())
        p.rail_reference, p.attempts = new_id(), 1
        p.paid_at.FromDatetime(paid_at)
        return await self.send(self.topics.payroll, employer_id, w, event_id=event_id)


@dataclass
class Seen:
    kind: str
    event: Any
    at: float  # time.monotonic() when the reader got it


@dataclass
class MarketingReader:
    """Follows marketing.events.v1 from the beginning, once per ce_id."""

    bootstrap: str
    topic: str
    records: list[Seen] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    off_catalog: list[str] = field(default_factory=list)  # records not keyed as cataloged
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            fetch_max_wait_ms=10,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=20)).values():
                for r in batch:
                    try:
                        check_record("marketing.events.v1", r.key, r.headers, r.value)
                    except AssertionError as exc:  # a task's failure would go unseen
                        self.off_catalog.append(str(exc))
                    ce_id = dict(r.headers)["ce_id"].decode()
                    if ce_id in self._seen:
                        continue
                    self._seen.add(ce_id)
                    w = marketing_pb.MarketingEvent.FromString(r.value or b"")
                    kind = w.WhichOneof("event") or ""
                    self.records.append(Seen(kind, getattr(w, kind), time.monotonic()))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()

    def of(self, kind: str, **match: Any) -> list[Seen]:
        assert not self.off_catalog, self.off_catalog
        return [
            s
            for s in self.records
            if s.kind == kind and all(getattr(s.event, k) == v for k, v in match.items())
        ]


def operator_headers(operator: str, key: str = OPERATOR_KEY) -> dict[str, str]:
    """The back office's credential and the operator it acts for."""
    return {"X-Operator-Key": key, "X-Operator-Id": operator}


def headers(key: str, operator: str | None = None) -> dict[str, str]:
    out = {"Idempotency-Key": key}
    if operator is not None:
        out["X-Operator-Id"] = operator
    return out


def new_key() -> str:
    return new_id().replace("-", "")[:32]


async def put(client: Any, url: str, body: Any, key: str | None = None) -> Any:
    r = await client.put(url, json=body, headers=headers(key or new_key()))
    assert r.status_code in (200, 201), r.text
    return r.json()


async def post(
    client: Any, url: str, body: Any = None, key: str | None = None, *, operator: str | None = None
) -> Any:
    r = await client.post(url, json=body, headers=headers(key or new_key(), operator))
    return r
