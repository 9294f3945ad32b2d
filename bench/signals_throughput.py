"""Throughput and latency of the signals worker (Faust) on a real broker.

(a) Pre-produce ``--events`` protobuf CloudEvents to fresh loan/identity topics (6 partitions,
    keyed by party), in the mix below.
(b) Baseline: a plain aiokafka consumer (fresh group) reads the same records, decoding the
    CloudEvents headers and the protobuf value of each: the ceiling for one Python process.
(c) Pipeline: the signals worker (``python -m zerocontact.signals worker``, RocksDB store, a
    fresh app id) processes the same records; sustained events/s is measured from the moment
    its tables are recovered (``/readyz``) to the moment every application has its assessment
    and the group's committed offsets reach the end of both input topics.
(d) Latency: with the worker caught up, events are produced at ``--rate`` events/s for
    ``--latency-seconds``; each application's send time is matched with its assessment's
    arrival on the risk topic (by the application's ``ce_id``), p50/p90/p99/max.

CPU: for phases (c) and (d) the bench prints the CPU time each process spent (user + system,
read from /proc: the worker, the broker found by its listening port, this bench process) per
1,000 input events. Unlike events/s and latency, it hardly depends on what else the machine
runs, so it is the figure to compare changes by; the load average before and after is printed
with it.

Mix: 30 % LoanApplicationSubmitted (device and source address drawn from pools smaller than
the party pool, so devices are shared), 30 % AuthenticationFailed, 25 % RepaymentReceived,
15 % MerchantRevenueReported. Every application passes three stages (party, device, source
address) and so two internal Kafka hops inside the worker. The last stdout line is JSON.

    .venv/bin/python bench/signals_throughput.py [--events 100000] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.signals.v1 import risk_pb2

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
REST_SECONDS = 10.0
APPLICATION = "zerocontact.loan.v1.LoanApplicationSubmitted"


def _load(name: str, path: Path) -> Any:
    """A script of this repository (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0.0 when it is gone."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    """The 1-minute load average (what else the machine was doing)."""
    return Path("/proc/loadavg").read_text().split()[0]


class CpuMeter:
    """CPU seconds of named processes over a phase, per 1,000 events of that phase."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def per_thousand(self, events: int) -> dict[str, float]:
        """ms of CPU per 1,000 events since :meth:`start`, by process."""
        return {
            name: round((cpu_seconds(pid) - self._before[name]) * 1e6 / max(events, 1), 1)
            for name, pid in self._pids.items()
        }


def cpu_line(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:,.1f}" for name, ms in cpu.items())


@dataclass(frozen=True)
class Options:
    """Command-line options."""

    bootstrap: str
    events: int
    rate: int
    latency_seconds: float
    parties: int
    deadline_s: float
    keep_worker_log: bool


@dataclass(frozen=True)
class Record:
    """One event to produce."""

    topic: str
    key: bytes
    event: CloudEvent
    is_application: bool


class EventMaker:
    """Random events of the bench mix, reproducible from a seed."""

    def __init__(self, loan_topic: str, identity_topic: str, parties: int, seed: int) -> None:
        self._random = random.Random(seed)
        self._loan, self._identity, self._parties = loan_topic, identity_topic, parties

    def _party(self) -> str:
        return f"party-{self._random.randrange(self._parties)}"

    def make(self) -> Record:
        roll = self._random.random()
        party = self._party()
        if roll < 0.30:
            body = loan_pb.LoanEvent(
                loan_application_submitted=loan_pb.LoanApplicationSubmitted(
                    application_id=str(uuid.uuid4()),
                    party_id=party,
                    product_id="merchant-310",
                    term_months=6,
                    device_id=f"device-{self._random.randrange(self._parties // 2 or 1)}",
                    source_address=f"10.0.{self._random.randrange(64)}.{self._random.randrange(250)}",
                )
            )
            return self._record(self._loan, party, APPLICATION, body.SerializeToString(), True)
        if roll < 0.60:
            ident = identity_pb.IdentityEvent(
                authentication_failed=identity_pb.AuthenticationFailed(
                    customer_id=party,
                    factor=identity_pb.FACTOR_KIND_PASSWORD,
                    consecutive_failures=1,
                )
            )
            kind = "zerocontact.identity.v1.AuthenticationFailed"
            return self._record(self._identity, party, kind, ident.SerializeToString(), False)
        if roll < 0.85:
            body = loan_pb.LoanEvent(
                repayment_received=loan_pb.RepaymentReceived(
                    loan_id="loan-1",
                    party_id=party,
                    repayment_id=str(uuid.uuid4()),
                    days_late=self._random.choice((0, 0, 0, 3, 12)),
                )
            )
            kind = "zerocontact.loan.v1.RepaymentReceived"
            return self._record(self._loan, party, kind, body.SerializeToString(), False)
        body = loan_pb.LoanEvent(
            merchant_revenue_reported=loan_pb.MerchantRevenueReported(
                report_id=str(uuid.uuid4()), party_id=party, platform_id="shop-1"
            )
        )
        body.merchant_revenue_reported.revenue.currency_code = "CNY"
        body.merchant_revenue_reported.revenue.minor_units = self._random.randrange(10**6, 10**8)
        body.merchant_revenue_reported.period_start.seconds = (
            1_700_000_000 + self._random.randrange(12) * 2_592_000
        )
        kind = "zerocontact.loan.v1.MerchantRevenueReported"
        return self._record(self._loan, party, kind, body.SerializeToString(), False)

    def _record(self, topic: str, party: str, kind: str, data: bytes, app: bool) -> Record:
        event = CloudEvent(
            id=str(uuid.uuid4()), source="bench", type=kind, subject=party, data=data
        )
        return Record(topic, party.encode(), event, app)


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


async def produce(bootstrap: str, records: list[Record]) -> float:
    """Produce every record in large batches; returns records per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for first in range(0, len(records), 5000):
            futures = [
                await producer.send(r.topic, r.event.data, key=r.key, headers=r.event.headers())
                for r in records[first : first + 5000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def plain_consume(opts: Options, topics: list[str], expected: int) -> dict[str, float]:
    """A fresh group reads every record, decoding headers and protobuf; events/s after join."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=opts.bootstrap,
        group_id=f"bench-plain-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    count = 0
    first_at: float | None = None
    try:
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batches and first_at is None:
                first_at = time.perf_counter()
            for tp, batch in batches.items():
                for record in batch:
                    headers = dict(record.headers)
                    ce_type = headers["ce_type"].decode()
                    if tp.topic == topics[0]:
                        loan_pb.LoanEvent.FromString(record.value)
                    else:
                        identity_pb.IdentityEvent.FromString(record.value)
                    count += bool(ce_type)
        finished = time.perf_counter()
    finally:
        await consumer.stop()
    assert first_at is not None
    return {"records": count, "events_per_s": round(count / (finished - first_at))}


class RiskReader:
    """Reads the risk topic in the background; notes each assessment's arrival time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        self._topic = topic
        self.arrived: dict[str, float] = {}
        self.alerts = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        parts = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_beginning(*parts)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for batch in batches.values():
                for record in batch:
                    event = risk_pb2.RiskEvent.FromString(record.value)
                    if event.WhichOneof("event") == "risk_assessment":
                        self.arrived.setdefault(event.risk_assessment.application_event_id, now)
                    else:
                        self.alerts += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def caught_up(
    admin: AIOKafkaAdminClient, consumer: Any, group: str, topics: list[str]
) -> bool:
    """True when ``group`` has committed the end offset of every partition of ``topics``."""
    parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    ends = await consumer.end_offsets(parts)
    committed = await admin.list_consumer_group_offsets(group, partitions=parts)
    return all(committed.get(tp) is not None and committed[tp].offset >= ends[tp] for tp in parts)


async def wait_healthy(url: str, worker: subprocess.Popen[bytes], deadline: float) -> float:
    """Poll /readyz until the tables are recovered; returns that moment (perf_counter)."""
    async with httpx.AsyncClient(timeout=2) as client:
        while time.perf_counter() < deadline:
            if worker.poll() is not None:
                raise RuntimeError("the signals worker exited")
            with contextlib.suppress(httpx.TransportError):
                response = await client.get(f"{url}/readyz")
                if response.status_code == 200:
                    return time.perf_counter()
            await asyncio.sleep(0.05)
    raise TimeoutError("the signals worker did not become healthy")


async def run(opts: Options) -> dict[str, object]:
    token = uuid.uuid4().hex[:10]
    loan_topic, identity_topic, risk_topic = (
        f"bench.signals-loan.{token}",
        f"bench.signals-identity.{token}",
        f"bench.signals-risk.{token}",
    )
    app_id = f"bench-signals-{token}"
    admin = AIOKafkaAdminClient(bootstrap_servers=opts.bootstrap)
    await admin.start()
    await admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in (loan_topic, identity_topic, risk_topic)]
        + [NewTopic(f"{t}.dlq", 1, 1) for t in (loan_topic, identity_topic)]
    )
    maker = EventMaker(loan_topic, identity_topic, opts.parties, seed=4)
    records = [maker.make() for _ in range(opts.events)]
    applications = sum(r.is_application for r in records)
    print(f"(a) producing {opts.events:,} events ({applications:,} applications)", flush=True)
    produce_rate = await produce(opts.bootstrap, records)
    print(f"    produced at {produce_rate:,.0f} events/s", flush=True)

    plain = await plain_consume(opts, [loan_topic, identity_topic], opts.events)
    print(f"(b) plain aiokafka consumer: {plain['events_per_s']:,} events/s", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-signals-"))
    port = 16000 + random.randrange(2000)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": opts.bootstrap,
        "ZC_SIGNALS_APP_ID": app_id,
        "ZC_SIGNALS_LOAN_TOPIC": loan_topic,
        "ZC_SIGNALS_IDENTITY_TOPIC": identity_topic,
        "ZC_SIGNALS_RISK_TOPIC": risk_topic,
        "ZC_SIGNALS_DATA_DIR": str(workdir),
        "ZC_SIGNALS_HTTP_PORT": str(port),
    }
    log_path = workdir / "worker.log"
    reader = RiskReader(opts.bootstrap, risk_topic)
    await reader.start()
    offsets = AIOKafkaConsumer(bootstrap_servers=opts.bootstrap)
    await offsets.start()
    with log_path.open("wb") as log:
        worker = subprocess.Popen(  # noqa: ASYNC220  # started once, returns at once
            [sys.executable, "-m", "zerocontact.signals", "worker", "-l", "warn"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.perf_counter() + opts.deadline_s
    port_owner = _load("engines", ROOT / "deploy" / "local" / "engines.py").port_owner
    meter = CpuMeter(
        {
            "worker": worker.pid,
            "broker": port_owner(int(opts.bootstrap.split(",")[0].rsplit(":", 1)[1])),
            "bench": os.getpid(),
        }
    )
    loads: dict[str, str] = {"before": load_average()}
    try:
        print(f"(c) signals worker {app_id} (pid {worker.pid}) on the same events", flush=True)
        started = await wait_healthy(f"http://127.0.0.1:{port}", worker, deadline)
        meter.start()
        while True:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(reader.arrived)} of {applications} assessments")
            if len(reader.arrived) >= applications and await caught_up(
                admin, offsets, app_id, [loan_topic, identity_topic]
            ):
                break
            await asyncio.sleep(0.1)
        finished = time.perf_counter()
        cpu_throughput = meter.per_thousand(opts.events)
        pipeline_rate = opts.events / (finished - started)
        print(
            f"    {opts.events:,} events in {finished - started:.2f} s: {pipeline_rate:,.0f} "
            f"events/s = {pipeline_rate / plain['events_per_s']:.2f}x the plain consumer "
            f"({reader.alerts:,} alerts)",
            flush=True,
        )
        print(f"    CPU ms per 1,000 events: {cpu_line(cpu_throughput)}", flush=True)
        # The worker's cost at rest (timers, commits, metadata refreshes) is paid per second,
        # not per event: on a loaded machine the phase lasts longer and it inflates the above.
        meter.start()
        await asyncio.sleep(REST_SECONDS)
        rest = {k: round(v / 1e3 / REST_SECONDS, 1) for k, v in meter.per_thousand(1).items()}
        rest_pct = {k: round(v / 10, 1) for k, v in rest.items()}
        net = {
            k: round(v - rest[k] * (finished - started) * 1000 / opts.events, 1)
            for k, v in cpu_throughput.items()
        }
        print(f"    at rest ({REST_SECONDS:.0f} s after): % of a core: {cpu_line(rest_pct)}")
        print(f"    CPU ms per 1,000 events less the cost at rest: {cpu_line(net)}", flush=True)

        print(f"(d) latency at {opts.rate} events/s for {opts.latency_seconds:.0f} s", flush=True)
        meter.start()
        latency = await paced_latency(opts, maker, reader)
        cpu_latency = meter.per_thousand(int(opts.rate * opts.latency_seconds))
        loads["after"] = load_average()
        print(
            "    event -> assessment: p50 {p50_ms} ms  p90 {p90_ms} ms  p99 {p99_ms} ms  "
            "max {max_ms} ms ({samples} applications)".format(**latency),
            flush=True,
        )
        if latency["unanswered"]:
            print(f"    NOT CAUGHT UP: {latency['unanswered']:,} applications unanswered")
        print(f"    CPU ms per 1,000 events: {cpu_line(cpu_latency)}", flush=True)
        print(f"    load average (1 min): {loads['before']} before, {loads['after']} after")
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        await offsets.stop()
        await reader.stop()
        topics = [
            loan_topic,
            identity_topic,
            risk_topic,
            f"{loan_topic}.dlq",
            f"{identity_topic}.dlq",
        ]
        internal = [t for t in await admin.list_topics() if t.startswith(app_id)]
        await admin.delete_topics(topics + internal)
        await admin.close()
        if opts.keep_worker_log:
            print(f"    worker log: {log_path}")
    return {
        "bench": "signals_throughput",
        "events": opts.events,
        "applications": applications,
        "produce_events_per_s": round(produce_rate),
        "plain_consumer_events_per_s": plain["events_per_s"],
        "pipeline_events_per_s": round(pipeline_rate),
        "ratio_to_plain": round(pipeline_rate / plain["events_per_s"], 3),
        "latency_at_rate": {"rate_events_per_s": opts.rate, **latency},
        "cpu_ms_per_1000_events": {
            "throughput": cpu_throughput,
            "throughput_less_rest": net,
            "at_rate": cpu_latency,
        },
        "cpu_percent_at_rest": rest_pct,
        "load_average": loads,
    }


async def paced_latency(opts: Options, maker: EventMaker, reader: RiskReader) -> dict[str, Any]:
    """Produce at ``opts.rate`` events/s; match applications with their assessments."""
    producer = AIOKafkaProducer(
        bootstrap_servers=opts.bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()
    sent: dict[str, float] = {}
    total = int(opts.rate * opts.latency_seconds)
    began = time.perf_counter()
    try:
        for n in range(total):
            due = began + n / opts.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = maker.make()
            if record.is_application:
                sent[record.event.id] = time.time()
            await producer.send(
                record.topic, record.event.data, key=record.key, headers=record.event.headers()
            )
        await producer.flush()
    finally:
        await producer.stop()
    settle = time.perf_counter() + 15
    while time.perf_counter() < settle and not all(k in reader.arrived for k in sent):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    samples = sorted((reader.arrived[k] - t) * 1000 for k, t in sent.items() if k in reader.arrived)
    # Not caught up 15 s after the last send: the percentiles are of the answered ones only,
    # so they understate; the count says so (the worker did not sustain the rate).
    unanswered = len(sent) - len(samples)
    if not samples:
        raise RuntimeError(f"none of {len(sent)} applications had an assessment")
    return {
        "unanswered": unanswered,
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 1),
        "p90_ms": round(percentile(samples, 0.90), 1),
        "p99_ms": round(percentile(samples, 0.99), 1),
        "max_ms": round(samples[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=500, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--parties", type=int, default=20_000)
    parser.add_argument("--deadline", type=float, default=600.0, help="pipeline phase, seconds")
    parser.add_argument("--keep-worker-log", action="store_true")
    args = parser.parse_args()
    opts = Options(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        events=args.events,
        rate=args.rate,
        latency_seconds=args.latency_seconds,
        parties=args.parties,
        deadline_s=args.deadline,
        keep_worker_log=args.keep_worker_log,
    )
    try:
        result = asyncio.run(run(opts))
    except TimeoutError as exc:
        print(f"signals_throughput: not finished in time: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
