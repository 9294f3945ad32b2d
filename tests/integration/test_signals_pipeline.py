"""The signals worker on the real broker: events in, risk signals out on the output topic.

The worker runs as a subprocess (``python -m zerocontact.signals worker``) with an app id and
topics of this run, so consumer groups, changelog and repartition topics are unique. Inputs
are real protobuf CloudEvents produced with aiokafka; outputs are read back from the risk
topic; the party's feature values are read over real HTTP from the worker's Faust web page.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.catalog_keys import check_record
from tests.integration.harness import (
    RUN_ID,
    Engines,
    eventually,
    free_port,
    start_signals_worker,
    stop_process,
)
from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.outbox import protobuf_event
from zerocontact.signals.v1 import risk_pb2

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 6


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def application(party: str, *, device: str, address: str, ce_id: str | None = None) -> CloudEvent:
    """A LoanApplicationSubmitted CloudEvent."""
    event = loan_pb.LoanEvent(
        loan_application_submitted=loan_pb.LoanApplicationSubmitted(
            application_id=_id("app"),
            party_id=party,
            product_id="merchant-310",
            term_months=6,
            device_id=device,
            source_address=address,
        )
    )
    return CloudEvent(
        id=ce_id or str(uuid.uuid4()),
        source="zerocontact.loan",
        type="zerocontact.loan.v1.LoanApplicationSubmitted",
        subject=party,
        data=event.SerializeToString(),
    )


def repayment(party: str, *, days_late: int, repayment_id: str | None = None) -> CloudEvent:
    """A RepaymentReceived CloudEvent."""
    event = loan_pb.LoanEvent(
        repayment_received=loan_pb.RepaymentReceived(
            loan_id=_id("loan"),
            party_id=party,
            repayment_id=repayment_id or _id("rep"),
            installment_number=1,
            days_late=days_late,
        )
    )
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="zerocontact.loan",
        type="zerocontact.loan.v1.RepaymentReceived",
        subject=party,
        data=event.SerializeToString(),
    )


def failed_login(party: str) -> CloudEvent:
    """An AuthenticationFailed CloudEvent."""
    event = identity_pb.IdentityEvent(
        authentication_failed=identity_pb.AuthenticationFailed(
            customer_id=party,
            factor=identity_pb.FACTOR_KIND_PASSWORD,
            consecutive_failures=1,
            device_id="dev-x",
            source_address="198.51.100.7",
        )
    )
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="zerocontact.identity",
        type="zerocontact.identity.v1.AuthenticationFailed",
        subject=party,
        data=event.SerializeToString(),
    )


@dataclass
class Topics:
    loan: str
    identity: str
    risk: str


@dataclass
class Worker:
    """One signals worker subprocess; ``restart`` kills it and starts a fresh one."""

    engines: Engines
    topics: Topics
    app_id: str
    data_root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # Short, so a killed worker's partitions move on quickly; the chaos suite runs with the
    # product's default instead (a loaded machine misses 6 s heartbeats).
    session_timeout_s: float = 6

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        # A fresh data directory on every start: whatever the tables hold afterwards came
        # from the changelog topics, as on a pod rescheduled to another node.
        data_dir = self.data_root / f"start-{self.starts}"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.engines.kafka_bootstrap,
            "ZC_SIGNALS_APP_ID": self.app_id,
            "ZC_SIGNALS_LOAN_TOPIC": self.topics.loan,
            "ZC_SIGNALS_IDENTITY_TOPIC": self.topics.identity,
            "ZC_SIGNALS_RISK_TOPIC": self.topics.risk,
            "ZC_SIGNALS_DATA_DIR": str(data_dir),
            "ZC_SIGNALS_HTTP_PORT": str(self.port),
            "ZC_SIGNALS_PRODUCER_LINGER_MS": "1",
            "ZC_SIGNALS_SESSION_TIMEOUT_S": str(self.session_timeout_s),
        }
        with (self.data_root / f"worker-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "zerocontact.signals", "worker", "-l", "warn"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def probe() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    response = await client.get(f"{self.url}/readyz")
            except httpx.TransportError:
                return False
            return response.status_code == 200

        # A worker starts in 5-10 s on a quiet machine, 30 s and more on a loaded one.
        await eventually(probe, within_s=120, interval=0.2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        log = self.data_root / f"worker-{self.starts}.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""


class RiskTopic:
    """Reads every record of the risk topic in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self._topic = topic
        self.records: list[Any] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        parts = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                self.records.extend(records)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with __import__("contextlib").suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def for_party(self, party: str, kind: str) -> list[Any]:
        found = []
        for record in self.records:
            check_record("signals.risk.v1", record.key, record.headers, record.value)
            if record.key != party.encode():
                continue
            event = risk_pb2.RiskEvent.FromString(record.value)
            if event.WhichOneof("event") == kind:
                found.append((record, getattr(event, kind)))
        return found

    async def wait_for(self, party: str, kind: str, count: int = 1) -> list[Any]:
        async def probe() -> list[Any]:
            found = self.for_party(party, kind)
            return found if len(found) >= count else []

        return list(await eventually(probe, within_s=20, interval=0.05))


@dataclass
class Signals:
    worker: Worker
    topics: Topics
    producer: AIOKafkaProducer
    risk: RiskTopic
    http: httpx.AsyncClient

    async def send(self, topic: str, key: str, event: CloudEvent) -> None:
        await self.producer.send_and_wait(
            topic, event.data, key=key.encode(), headers=event.headers()
        )

    async def features(self, party: str) -> dict[str, str]:
        response = await self.http.get(f"{self.worker.url}/signals/v1/parties/{party}/features")
        assert response.status_code == 200, response.text
        return {f["name"]: f["value"] for f in response.json()["features"]}

    async def features_reach(self, party: str, expected: dict[str, str]) -> None:
        async def probe() -> bool:
            features = await self.features(party)
            return all(features.get(k) == v for k, v in expected.items())

        await eventually(probe, within_s=20, interval=0.1)


async def _topics(admin: AIOKafkaAdminClient) -> Topics:
    token = uuid.uuid4().hex[:10]
    topics = Topics(
        f"t{RUN_ID}-sig-loan-{token}",
        f"t{RUN_ID}-sig-identity-{token}",
        f"t{RUN_ID}-sig-risk-{token}",
    )
    names = [topics.loan, topics.identity, topics.risk]
    await admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in names]
        + [NewTopic(f"{n}.dlq", 1, 1) for n in (topics.loan, topics.identity)]
    )
    return topics


@pytest.fixture
def worker_factory(engines: Engines, tmp_path: Path) -> Iterator[Callable[[Topics], Worker]]:
    made: list[Worker] = []

    def make(topics: Topics) -> Worker:
        worker = Worker(engines, topics, _id(f"t{RUN_ID}-signals"), tmp_path)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


@pytest.fixture
async def signals(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    worker_factory: Callable[[Topics], Worker],
) -> AsyncIterator[Signals]:
    topics = await _topics(kafka_admin)
    worker = worker_factory(topics)
    worker.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=engines.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    risk = RiskTopic(engines.kafka_bootstrap, topics.risk)
    await producer.start()
    await risk.start()
    try:
        await worker.ready()
        async with httpx.AsyncClient(timeout=30) as http:
            yield Signals(worker, topics, producer, risk, http)
    finally:
        await risk.stop()
        await producer.stop()


async def test_assessment_scores_the_party_features_with_reasons(signals: Signals) -> None:
    party = _id("party")
    for days_late in (0, 5, 12):
        await signals.send(signals.topics.loan, party, repayment(party, days_late=days_late))
    duplicate = repayment(party, days_late=9, repayment_id="rep-same")
    for _ in range(2):  # the same repayment twice counts once
        await signals.send(signals.topics.loan, party, duplicate)
    for _ in range(6):
        await signals.send(signals.topics.identity, party, failed_login(party))
    await signals.features_reach(
        party,
        {"repayments_on_time": "1", "repayments_late": "3", "failed_authentications_1h": "6"},
    )

    app_event = application(party, device=_id("dev"), address="203.0.113.5")
    await signals.send(signals.topics.loan, party, app_event)

    [(record, assessment)] = await signals.risk.wait_for(party, "risk_assessment")
    headers = dict(record.headers)
    assert headers["ce_type"] == b"zerocontact.signals.v1.RiskAssessment"
    assert headers["ce_id"].decode() == assessment.assessment_id
    assert assessment.application_event_id == app_event.id
    assert assessment.party_id == party
    # 100 base + 150 late repayments + 200 failed-login burst
    assert assessment.score == 450
    assert assessment.band == risk_pb2.RISK_BAND_MEDIUM
    fired = {r.name: r for r in assessment.rules if r.triggered}
    assert set(fired) == {"late_repayments", "failed_login_burst"}
    assert fired["failed_login_burst"].observed == "6"
    assert fired["failed_login_burst"].description == "6 failed authentications in 1 h (limit 4)"
    assert fired["late_repayments"].points == 150
    features = {f.name: (f.value, f.window) for f in assessment.features}
    assert features["applications_per_party_1h"] == ("1", "1h")
    assert features["applications_per_device_24h"] == ("1", "24h")
    assert features["repayments_late"] == ("3", "")
    # Six failures in the hour raise one failed-login-burst alert, not two.
    alerts = await signals.risk.wait_for(party, "risk_alert")
    await asyncio.sleep(0.5)
    alerts = signals.risk.for_party(party, "risk_alert")
    assert len(alerts) == 1
    assert alerts[0][1].kind == risk_pb2.RISK_ALERT_KIND_FAILED_LOGIN_BURST
    assert alerts[0][1].reasons[0].name == "failed_login_burst"


async def test_duplicate_applications_count_once_and_get_the_same_assessment_again(
    signals: Signals,
) -> None:
    party, device = _id("party"), _id("dev")
    first = application(party, device=device, address="203.0.113.9")
    for _ in range(3):  # an outbox republishing the same event
        await signals.send(signals.topics.loan, party, first)
    await signals.risk.wait_for(party, "risk_assessment")
    await signals.send(
        signals.topics.loan, party, application(party, device=device, address="203.0.113.9")
    )

    await signals.risk.wait_for(party, "risk_assessment", count=4)
    await asyncio.sleep(0.5)  # a fifth record would show up here
    assessments = signals.risk.for_party(party, "risk_assessment")
    assert len(assessments) == 4  # the first's record three times, the second's once
    again = [record for record, a in assessments if a.application_event_id == first.id]
    assert len(again) == 3
    assert len({(record.value, _cloudevent(record)) for record in again}) == 1  # byte for byte
    [second] = [a for _, a in assessments if a.application_event_id != first.id]
    features = {f.name: f.value for f in second.features}
    assert features["applications_per_party_1h"] == "2"
    assert features["applications_per_device_1h"] == "2"
    assert features["applications_per_source_address_1h"] == "2"


async def test_an_assessment_that_never_reached_the_broker_is_sent_on_redelivery(
    signals: Signals, kafka_admin: AIOKafkaAdminClient
) -> None:
    """A kill after the last stage's guard reached its changelog and before the assessment
    reached the broker: the redelivered record was dropped as a duplicate and the application
    was never assessed (tests/chaos/faust_state.py lost 1 of 610). The broker losing the
    record is played by deleting the risk topic's records."""
    party = _id("party")
    await signals.send(
        signals.topics.loan,
        party,
        application(party, device=_id("dev"), address="203.0.113.41"),
    )
    [(original, _)] = await signals.risk.wait_for(party, "risk_assessment")
    parts = [TopicPartition(signals.topics.risk, n) for n in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=signals.worker.engines.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    await kafka_admin.delete_records({tp: RecordsToDelete(end) for tp, end in ends.items()})
    signals.risk.records.clear()
    await _redeliver(signals, "applications-by-source-address")

    [(sent, _)] = await signals.risk.wait_for(party, "risk_assessment")
    assert (sent.value, _cloudevent(sent)) == (original.value, _cloudevent(original))


async def test_a_copy_marked_duplicate_upstream_is_counted_where_it_never_was(
    signals: Signals,
) -> None:
    """A kill after the party and device stages' writes reached their changelogs and before
    the device stage's forward reached the broker: the redelivered copy, marked duplicate by
    the party stage, was the only one to reach the address stage, which skipped counting a
    marked copy (tests/chaos/faust_state.py: 47 of 582 applications one short). Played here by
    giving the address stage a marked copy of an application it never saw."""
    party, device, address = _id("party"), _id("dev"), "203.0.113.58"
    await signals.send(
        signals.topics.loan, party, application(party, device=device, address=address)
    )
    await signals.risk.wait_for(party, "risk_assessment")
    stage = f"{signals.worker.app_id}-applications-by-source-address"
    [record] = await _records(signals.worker.engines, stage, 1)
    unseen = str(uuid.uuid4())
    headers = [(k, unseen.encode() if k == "ce_id" else v) for k, v in record.headers]
    await signals.producer.send_and_wait(
        record.topic,
        record.value,
        key=record.key,
        partition=record.partition,
        headers=[*headers, ("zc-duplicate", b"1")],
    )

    async def assessed() -> list[Any]:
        return [
            a for _, a in signals.risk.for_party(party, "risk_assessment")
            if a.application_event_id == unseen
        ]  # fmt: skip

    [copy] = await eventually(assessed, within_s=20, interval=0.05)
    features = {f.name: f.value for f in copy.features}
    assert features["applications_per_source_address_1h"] == "2"


async def test_a_redelivered_failed_login_counts_once(signals: Signals) -> None:
    # A failed login delivered again (an outbox republishing it after a crash, a redelivery
    # after a rebalance, a DLQ replay) was counted again: 4 here before the fix.
    party = _id("party")
    again = failed_login(party)
    for event in (again, again, failed_login(party), again):
        await signals.send(signals.topics.identity, party, event)
    await signals.features_reach(party, {"failed_authentications_1h": "2"})
    await asyncio.sleep(1)  # a late second count would show up here
    assert (await signals.features(party))["failed_authentications_1h"] == "2"


async def test_a_redelivered_repartition_record_counts_once(signals: Signals) -> None:
    # A record of a re-keyed stage's topic delivered again (a kill or a rebalance after its
    # bucket write reached the changelog, before its offset was committed): the device stage
    # counted it again (tests/chaos/faust_state.py, 3 here before the fix).
    party, device, address = _id("party"), _id("dev"), "203.0.113.77"
    await signals.send(
        signals.topics.loan, party, application(party, device=device, address=address)
    )
    await signals.risk.wait_for(party, "risk_assessment")
    for stage in ("applications-by-device", "applications-by-source-address"):
        await _redeliver(signals, stage)
    # The next application reaches both topics' partitions behind the copies (same keys).
    await signals.send(
        signals.topics.loan, party, application(party, device=device, address=address)
    )

    # The first application's record, then again for each copy (the same bytes), the second's.
    assessments = await signals.risk.wait_for(party, "risk_assessment", count=4)
    await asyncio.sleep(0.5)  # a redelivery assessed again would show up here
    assessments = signals.risk.for_party(party, "risk_assessment")
    assert len({a.assessment_id for _, a in assessments}) == 2
    first = assessments[0][1].application_event_id
    again = [record for record, a in assessments if a.application_event_id == first]
    assert len(again) == 3 and len({record.value for record in again}) == 1
    second = {f.name: f.value for f in assessments[-1][1].features}
    assert second["applications_per_party_1h"] == "2"
    for name in (
        "applications_per_device_1h",
        "applications_per_device_24h",
        "applications_per_source_address_1h",
        "applications_per_source_address_24h",
    ):
        assert second[name] == "2", (name, second)
    assert second["parties_per_device_24h"] == "1"


async def test_device_shared_by_many_parties_raises_one_alert_and_rejects(signals: Signals) -> None:
    device = _id("dev")
    parties = [_id("party") for _ in range(4)]
    assessed = []
    for party in parties:  # one at a time, so each sees the parties before it
        await signals.send(
            signals.topics.loan, party, application(party, device=device, address=_id("addr"))
        )
        [(_, assessment)] = await signals.risk.wait_for(party, "risk_assessment")
        assessed.append(assessment)

    seen = [{f.name: f.value for f in a.features}["parties_per_device_24h"] for a in assessed]
    assert seen == ["1", "2", "3", "4"]
    assert [a.band for a in assessed] == [
        risk_pb2.RISK_BAND_LOW,
        risk_pb2.RISK_BAND_LOW,
        risk_pb2.RISK_BAND_REJECT,
        risk_pb2.RISK_BAND_REJECT,
    ]
    rule = next(r for r in assessed[2].rules if r.name == "device_shared_by_many_parties")
    assert rule.triggered and rule.description == "device used by 3 parties in 24 h (limit 2)"
    alerts = [a for p in parties for _, a in signals.risk.for_party(p, "risk_alert")]
    assert len(alerts) == 1
    assert alerts[0].kind == risk_pb2.RISK_ALERT_KIND_DEVICE_SHARED
    assert alerts[0].device_id == device and alerts[0].party_id == parties[2]


async def test_features_page_rejects_a_bad_party_id_without_echoing_it(signals: Signals) -> None:
    bad = "110101199003077777 x"
    response = await signals.http.get(f"{signals.worker.url}/signals/v1/parties/{bad}/features")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "110101199003077777" not in response.text
    assert response.json()["errors"][0]["field"] == "path.party_id"
    unknown = await signals.features(_id("nobody"))
    assert unknown["applications_per_party_24h"] == "0"
    assert unknown["repayments_late"] == "0"


async def test_unreadable_record_goes_to_the_dead_letter_topic(
    signals: Signals, engines: Engines
) -> None:
    party = _id("party")
    await signals.producer.send_and_wait(
        signals.topics.loan, b"\xff\xfe not protobuf", key=party.encode(), headers=[]
    )
    await signals.send(signals.topics.loan, party, application(party, device=_id("d"), address="a"))
    await signals.risk.wait_for(party, "risk_assessment")  # the stream went on

    consumer = AIOKafkaConsumer(
        f"{signals.topics.loan}.dlq",
        bootstrap_servers=engines.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert record.key == party.encode()
    assert dict(record.headers)["dlq_original_topic"] == signals.topics.loan.encode()
    metrics = await signals.http.get(f"{signals.worker.url}/metrics")
    labels = {"group": signals.worker.app_id, "topic": signals.topics.loan}
    assert _sample(metrics.text, "zc_dead_letters_total", labels) == 1
    assert _sample(metrics.text, "zc_signals_events_total", {"agent": "party-events", "outcome": "dead_lettered"}) == 1  # fmt: skip


async def test_metrics_page_counts_the_agents_events(signals: Signals) -> None:
    party = _id("party")
    await signals.send(signals.topics.loan, party, application(party, device=_id("d"), address="b"))
    await signals.risk.wait_for(party, "risk_assessment")

    response = await signals.http.get(f"{signals.worker.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    text = response.text
    for agent, outcome in [
        ("party-events", "forwarded"),
        ("applications-by-device", "forwarded"),
        ("applications-by-source-address", "assessed"),
    ]:
        assert _sample(text, "zc_signals_events_total", {"agent": agent, "outcome": outcome}) == 1
    stage = {"agent": "applications-by-source-address"}
    assert _sample(text, "zc_signals_processing_seconds_count", stage) == 1
    assert _sample(text, "zc_signals_processing_seconds_bucket", {**stage, "le": "+Inf"}) == 1
    assert _sample(text, "process_cpu_seconds_total", {}) is not None  # the process defaults


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of the sample ``name{labels}`` in a Prometheus exposition, if present."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def test_readyz_answers_503_until_the_tables_are_recovered(
    kafka_admin: AIOKafkaAdminClient, worker_factory: Callable[[Topics], Worker]
) -> None:
    worker = worker_factory(await _topics(kafka_admin))
    worker.start()
    seen: list[tuple[int, str, bool]] = []  # (/readyz status, its state, /healthz recovering)
    async with httpx.AsyncClient(timeout=2) as client:

        async def probe() -> bool:
            assert worker.process is not None and worker.process.poll() is None, worker.log_tail()
            try:
                ready = await client.get(f"{worker.url}/readyz")
                health = await client.get(f"{worker.url}/healthz")
            except httpx.TransportError:
                return False  # the web server is not up yet
            assert health.status_code == 200  # liveness holds while not ready
            seen.append((ready.status_code, ready.json()["status"], health.json()["recovering"]))
            return ready.status_code == 200

        await eventually(probe, within_s=90, interval=0.02)
        # The group join and the table recovery take seconds: the web server answers before.
        not_ready = [s for s in seen if s[0] != 200]
        assert not_ready, seen
        assert {code for code, _, _ in not_ready} == {503}
        assert {state for _, state, _ in not_ready} <= {"starting", "recovering"}
        assert seen[-1][:2] == (200, "ready") and seen[-1][2] is False
        # Once ready it stays ready (no rebalance happens here).
        for _ in range(5):
            again = await client.get(f"{worker.url}/readyz")
            assert again.status_code == 200
            await asyncio.sleep(0.1)


async def test_first_assignment_covers_every_topic_of_the_app(
    kafka_admin: AIOKafkaAdminClient, worker_factory: Callable[[Topics], Worker]
) -> None:
    """The worker creates its repartition and changelog topics before its consumer joins: the
    first assignment has them all, and no second rebalance recovers the tables again."""
    worker = worker_factory(await _topics(kafka_admin))
    worker.start()
    await worker.ready()
    made = [
        f"{worker.app_id}-applications-by-device",
        f"{worker.app_id}-applications-by-source-address",
        f"{worker.app_id}-party_activity-changelog",
        f"{worker.app_id}-engagement-session-changelog",
    ]
    described = await kafka_admin.describe_topics(made)
    assert {t["topic"]: len(t["partitions"]) for t in described} == dict.fromkeys(made, PARTITIONS)
    # Past the consumer's metadata refresh (10 s), when a skipped topic made the group rejoin.
    await asyncio.sleep(12)
    log = (worker.data_root / f"worker-{worker.starts}.log").read_text(errors="replace")
    skipped = [
        line
        for line in log.splitlines()
        if "Ignoring missing topic" in line and worker.app_id in line
    ]
    assert skipped == []
    assert "rebalancing again" not in log


async def test_restarted_worker_recovers_its_tables_from_the_changelog(signals: Signals) -> None:
    party, device = _id("party"), _id("dev")
    for _ in range(2):
        await signals.send(
            signals.topics.loan, party, application(party, device=device, address="192.0.2.1")
        )
    await signals.risk.wait_for(party, "risk_assessment", count=2)
    await signals.send(signals.topics.loan, party, repayment(party, days_late=3))
    await signals.features_reach(party, {"repayments_late": "1", "applications_per_party_1h": "2"})
    await asyncio.sleep(1.5)  # past a commit interval: the offsets and changelog are flushed

    signals.worker.kill()  # no clean shutdown
    signals.worker.start()  # and a new, empty data directory
    await signals.worker.ready()
    await signals.features_reach(party, {"repayments_late": "1", "applications_per_party_1h": "2"})

    await signals.send(
        signals.topics.loan, party, application(party, device=device, address="192.0.2.1")
    )
    assessments = await signals.risk.wait_for(party, "risk_assessment", count=3)
    latest = {f.name: f.value for f in assessments[-1][1].features}
    assert latest["applications_per_party_1h"] == "3"
    assert latest["applications_per_device_24h"] == "3"
    assert latest["applications_per_source_address_24h"] == "3"
    assert latest["repayments_late"] == "1"


async def test_every_table_store_has_bounded_memtables_and_files(signals: Signals) -> None:
    """Each table partition is a RocksDB database of its own; with Faust's defaults (three
    64 MiB write buffers each) the worker's memory grew by every write until a memtable
    filled: +10.9 % in the 30-minute soak (docs/reliability.md). Every store of both pipelines
    opens with the worker's bounds and compaction (SignalsSettings.rocksdb_*)."""
    party = _id("party")
    await signals.send(
        signals.topics.loan, party, application(party, device=_id("dev"), address="192.0.2.7")
    )
    await signals.risk.wait_for(party, "risk_assessment")
    tables = signals.worker.data_root / f"start-{signals.worker.starts}" / signals.worker.app_id
    options: dict[str, str] = {}
    compaction: dict[str, set[str]] = {}
    for path in sorted(tables.glob("v1/tables/*.db/OPTIONS-*")):
        for line in path.read_text().splitlines():
            name, _, value = line.strip().partition("=")
            if name in ("write_buffer_size", "max_write_buffer_number"):
                options[f"{path.parent.name}:{name}"] = value
            if name in ("compaction_style", "level0_file_num_compaction_trigger"):
                compaction.setdefault(path.parent.name, set()).add(value)
    # Universal compaction (zerocontact.signals.store; docs/signals.md "Files"): Faust's own
    # store dropped both options, and time-ordered keys kept one open file per flush.
    assert compaction and set(map(frozenset, compaction.values())) == {
        frozenset({"kCompactionStyleUniversal", "2"})
    }, compaction
    stores = {key.split(":")[0].rsplit("-", 1)[0] for key in options}
    assert stores >= {
        "party_activity",
        "device_activity",
        "source_address_activity",
        "repayment_history",
        "engagement-party",
    }, stores
    assert set(options.values()) <= {str(1 << 20), "2"}, options
    assert sum(1 for key in options if key.endswith(":write_buffer_size")) == len(options) // 2


async def test_unreadable_engagement_input_goes_to_its_dead_letter_topic(
    engines: Engines, kafka_admin: AIOKafkaAdminClient, tmp_path: Path
) -> None:
    """Found by tests/chaos/poison.py: the engagement agents logged an unreadable marketing or
    assistant record and skipped it, so it reached no ``<topic>.dlq`` and no replay could put
    it back. Now it is dead-lettered like the risk pipeline's input, and the stream goes on."""
    token = uuid.uuid4().hex[:10]
    names = {
        role: f"t{RUN_ID}-eng-{role}-{token}"
        for role in ("loan", "identity", "risk", "marketing", "assistant", "engagement")
    }
    await kafka_admin.create_topics(
        [NewTopic(n, PARTITIONS, 1) for n in names.values()]
        + [NewTopic(f"{names[r]}.dlq", 1, 1) for r in ("marketing", "assistant")]
    )
    app_id = _id(f"t{RUN_ID}-signals")
    process, port = start_signals_worker(
        engines, app_id=app_id, data_dir=tmp_path / "data", log=tmp_path / "worker.log",
        topics=names, session_timeout_s=30,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=engines.kafka_bootstrap, acks="all")
    await producer.start()
    party = _id("party")
    try:
        async with httpx.AsyncClient(timeout=10) as http:

            async def ready() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within_s=120, interval=0.2)
            good = protobuf_event(
                marketing_pb.MarketingEvent(
                    offer_interaction=marketing_pb.OfferInteraction(
                        delivery_id=_id("delivery"), party_id=party, campaign_id=_id("campaign"),
                        stage="clicked",
                    )
                ),
                topic="marketing", key=party, source="/test/marketing",
            ).event  # fmt: skip
            await producer.send_and_wait(  # a truncated protobuf value
                names["marketing"], good.data[: len(good.data) // 2], key=party.encode(),
                headers=good.headers(),
            )  # fmt: skip
            await producer.send_and_wait(  # no CloudEvents headers at all
                names["assistant"], b"\xff\xfe not protobuf", key=party.encode(), headers=[]
            )
            await producer.send_and_wait(
                names["marketing"], good.data, key=party.encode(), headers=good.headers()
            )
            # The party's score and the campaign's funnel: the stream went on past the poison.
            engagement = await _records(engines, names["engagement"], 2)
            assert party.encode() in {r.key for r in engagement}
            for role in ("marketing", "assistant"):
                (dead,) = await _records(engines, f"{names[role]}.dlq", 1)
                headers = dict(dead.headers)
                assert dead.key == party.encode()
                assert headers["dlq_original_topic"] == names[role].encode()
                assert headers["dlq_consumer_group"] == app_id.encode()
                assert headers["dlq_error_type"] in (b"DecodeError", b"MalformedEvent")
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for role in ("marketing", "assistant"):
                labels = {"group": app_id, "topic": names[role]}
                assert _sample(metrics, "zc_dead_letters_total", labels) == 1
    finally:
        await producer.stop()
        stop_process(process)


async def _redeliver(signals: Signals, stage: str) -> None:
    """The first record of the worker's internal topic ``stage`` once more, as it was (what a
    kill or a rebalance before its offset was committed delivers again)."""
    [record] = await _records(signals.worker.engines, f"{signals.worker.app_id}-{stage}", 1)
    await signals.producer.send_and_wait(
        record.topic,
        record.value,
        key=record.key,
        partition=record.partition,
        timestamp_ms=record.timestamp,
        headers=list(record.headers),
    )


def _cloudevent(record: Any) -> tuple[tuple[str, bytes], ...]:
    """A record's headers but its trace context (each send has a publish span of its own)."""
    return tuple((k, v) for k, v in record.headers if k != "traceparent")


async def _records(engines: Engines, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (waits up to 60 s for them)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=engines.kafka_bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
    finally:
        await consumer.stop()
    assert len(found) >= count, f"{len(found)} records on {topic}, expected {count}"
    return found[:count]
