"""The 310 benchmark: loan applications at a steady rate through the real loan service and broker.

What runs (all real, on the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``):
* the loan service as a subprocess (``uvicorn --factory zerocontact.loan.app:create_app``) on
  a database and topics of this run, with its PaymentRailSimulator (``--rail-latency-ms``);
* the risk side: the signals app as a subprocess (``python -m zerocontact.signals worker``)
  when ``--risk signals`` (the default, if it imports), else a tiny in-bench RESPONDER that
  consumes LoanApplicationSubmitted and produces a LOW-band RiskAssessment on the real broker
  (the output says which one ran);
* identity's side: CustomerRegistered and KycLevelChanged events produced to the identity
  topic of the run (identity's protos), and AAL2 access tokens signed with identity's key code,
  whose key set an in-bench HTTP server publishes for the loan service's JWKS verifier.

For each application the bench times, on its own clock: the POST (apply), the LoanApproved /
LoanDeclined record arriving on the loan topic (apply→decision), the acceptance POST sent as
soon as the approval is seen, and the LoanDisbursed record (apply→disbursed; it includes the
client's acceptance round trip). A raw Kafka round trip (bench/kafka_roundtrip.py's function)
is measured in the same run and the p99s are given as ratios of it. Where the time goes: each
hop of apply -> disbursed (HOPS: the service's event times, the Kafka record timestamps of the
loan and risk topics, the signals stages' ``zc-sent-*`` headers read from the pipeline's last
internal topic) with its p50, p99 and its mean over the slowest 5 %. The last line is JSON.

Tracing (``--tracing``): ``off`` runs the processes with ``OTEL_SDK_DISABLED=true``; ``on``
samples every trace (ratio 1.0) and exports it over OTLP to ``--otlp-endpoint`` (the local
Jaeger of ``make up``; the bench refuses to start without it); ``compare`` runs the same load
in alternating off/on pairs (``--pairs``, default 2) in one invocation and prints the median
CPU per loan of each and their ratio: all processes, with the collector's own CPU, and the
processes that trace (loan service, signals app).

    .venv/bin/python bench/loan_310.py [--rate 50] [--seconds 20] [--risk signals|responder]
        [--tracing off|on|compare] [--pairs 2] [--otlp-endpoint http://127.0.0.1:4317]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from zerocontact.common.v1 import party_pb2
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.platform.kafka.cloudevents import CloudEvent
from zerocontact.platform.kafka.connection import KafkaConnection
from zerocontact.signals.v1 import risk_pb2

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://identity.bench"
AUDIENCE = "zerocontact"
PARTITIONS = 6


def _load(name: str, path: Path) -> Any:
    """A script of this repository (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50), 1),
        "p95_ms": round(percentile(ordered, 0.95), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "max_ms": round(ordered[-1], 1),
    }


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def cloud(message: Any, inner: Any, subject: str) -> CloudEvent:
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="/bench",
        type=inner.DESCRIPTOR.full_name,
        subject=subject,
        data=message.SerializeToString(),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by named processes between ``start`` and ``stop``: what one loan
    costs each part, and so how many loans a second the machine's cores could carry."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self._wall = 0.0

    def start(self) -> None:
        self._before = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.used = {n: cpu_seconds(p) - self._before[n] for n, p in self._pids.items()}
        self._wall = time.perf_counter() - self._wall

    def report(self, loans: int) -> dict[str, Any]:
        """CPU ms per loan by process, their sum, and the rate the cores could carry."""
        per_loan = {n: round(s * 1000 / max(loans, 1), 1) for n, s in self.used.items()}
        total = sum(per_loan.values())
        cores = os.cpu_count() or 1
        return {
            "window_s": round(self._wall, 1),
            "cpu_ms_per_loan": per_loan,
            "cpu_ms_per_loan_total": round(total, 1),
            "cores": cores,
            "loans_per_s_if_cores_fully_used": round(cores * 1000 / total, 1) if total else None,
        }


async def mongo_commands(client: httpx.AsyncClient) -> dict[str, float]:
    """The loan service's MongoDB commands so far, by command (its ``/metrics``): on the 310
    path it is the only process that talks to MongoDB, so these are all of the path's."""
    text = (await client.get("/metrics")).text
    return {
        f"{sample.labels['command']} {sample.labels['collection']}".strip(): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "zc_mongodb_commands"
        for sample in family.samples
        if sample.name == "zc_mongodb_commands_total"
    }


def per_loan(before: dict[str, float], after: dict[str, float], loans: int) -> dict[str, float]:
    """Commands per loan by command (most first), from two :func:`mongo_commands` readings."""
    used = {c: n - before.get(c, 0.0) for c, n in after.items()}
    return {
        c: round(n / max(loans, 1), 2)
        for c, n in sorted(used.items(), key=lambda item: -item[1])
        if n > 0
    }


def loadavg() -> str:
    """The 1/5/15-minute load averages (the machine may be shared: say how busy it was)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Run:
    bootstrap: str
    mongodb_uri: str
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def identity(self) -> str:
        return f"bench.identity.{self.token}"

    @property
    def risk(self) -> str:
        return f"bench.risk.{self.token}"

    @property
    def loan(self) -> str:
        return f"bench.loan.{self.token}"

    @property
    def database(self) -> str:
        return f"bench_loan_{self.token}"

    @property
    def signals_app(self) -> str:
        return f"bench-signals-{self.token}"

    @property
    def by_address(self) -> str:
        """The signals pipeline's last internal topic (its records carry each stage's time)."""
        return f"{self.signals_app}-applications-by-source-address"


@dataclass
class Timing:
    sent: float
    sent_wall: float = 0.0  # time.time() when the apply POST was sent
    submitted_wall: float = 0.0  # the service's submitted_at (wall clock, same host)
    decided: float | None = None
    approved: bool = False
    disbursed: float | None = None
    decided_wall: float = 0.0  # the service's decided_at
    decision_record_wall: float = 0.0  # the LoanApproved record's timestamp (relay send)
    decision_seen_wall: float = 0.0
    disbursed_wall: float = 0.0  # the service's disbursed_at
    disbursed_record_wall: float = 0.0
    disbursed_seen_wall: float = 0.0


# The hops of apply -> disbursed, in order: (name, from mark, to mark). Marks are wall clocks of
# one host (s): the bench's own, the service's event fields (submitted_at, decided_at, ...),
# the Kafka record timestamps (the producer's send time) and the signals stages' zc-sent-*
# headers. Their sum is apply -> disbursed seen by the client, less the client's reaction.
HOPS = (
    ("apply HTTP -> submitted_at (service)", "sent", "submitted"),
    ("submitted_at -> LoanApplicationSubmitted sent by the relay", "submitted", "submitted_record"),
    ("signals party stage (fetch + process)", "submitted_record", "party_sent"),
    ("signals device stage", "party_sent", "device_sent"),
    ("signals address stage -> RiskAssessment sent", "device_sent", "risk_record"),
    ("RiskAssessment -> decided_at (loan consumer)", "risk_record", "decided"),
    ("decided_at -> LoanApproved sent by the relay", "decided", "decision_record"),
    ("LoanApproved -> seen by the client", "decision_record", "decision_seen"),
    ("acceptance HTTP -> accepted_at (service)", "accept_sent", "accepted"),
    ("accepted_at -> disbursed_at (book, ledger, rail)", "accepted", "disbursed"),
    ("disbursed_at -> LoanDisbursed sent by the relay", "disbursed", "disbursed_record"),
    ("LoanDisbursed -> seen by the client", "disbursed_record", "disbursed_seen"),
)


# The signals stages' headers on the pipeline's last internal topic, and their marks.
STAGE_MARKS = {"zc-sent-party": "party_sent", "zc-sent-device": "device_sent"}


def hop_breakdown(
    marks: dict[str, dict[str, float]], totals: dict[str, float]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """p50/p99 of each hop over the applications that have both its marks, and the mean of
    each hop over the slowest 5 % of apply -> disbursed (``totals``: ms by application)."""
    per_hop: dict[str, dict[str, float]] = {}
    for name, start, end in HOPS:
        per_hop[name] = summary(
            [(m[end] - m[start]) * 1000 for m in marks.values() if m.get(start) and m.get(end)]
        )
    tail: dict[str, float] = {}
    if totals:
        ordered = sorted(totals.values())
        cut = percentile(ordered, 0.95)
        slow = [marks[a] for a, ms in totals.items() if ms >= cut and a in marks]
        for name, start, end in HOPS:
            spans = [(m[end] - m[start]) * 1000 for m in slow if m.get(start) and m.get(end)]
            if spans:
                tail[name] = round(sum(spans) / len(spans), 1)
        tail["apply -> disbursed (these applications)"] = round(
            sum(ms for ms in totals.values() if ms >= cut) / max(1, len(slow)), 1
        )
    return per_hop, tail


async def identity_events(producer: AIOKafkaProducer, run: Run, parties: list[str]) -> None:
    """Register every party and verify it (identity's events, identity's protos)."""
    now = datetime.now(UTC)
    futures = []
    for party in parties:
        reg = identity_pb2.IdentityEvent()
        reg.customer_registered.customer_id = party
        reg.customer_registered.birth_year = 1985
        reg.customer_registered.registered_at.CopyFrom(_ts(now))
        events: list[tuple[Any, Any]] = [(reg, reg.customer_registered)]
        level = identity_pb2.KYC_LEVEL_NONE
        for target in (identity_pb2.KYC_LEVEL_BASIC, identity_pb2.KYC_LEVEL_VERIFIED):
            change = identity_pb2.IdentityEvent()
            e = change.kyc_level_changed
            e.party.CopyFrom(
                party_pb2.PartyRef(kind=party_pb2.PartyRef.PARTY_KIND_CUSTOMER, party_id=party)
            )
            e.from_level, e.to_level, e.actor, e.reason = level, target, "system", "bench"
            e.changed_at.CopyFrom(_ts(now))
            events.append((change, e))
            level = target
        for message, inner in events:
            c = cloud(message, inner, party)
            futures.append(
                await producer.send(run.identity, c.data, key=party.encode(), headers=c.headers())
            )
    await asyncio.gather(*futures)


async def responder(run: Run, stop: asyncio.Event) -> None:
    """The stand-in for the signals app: every application gets a LOW-band assessment."""
    consumer = AIOKafkaConsumer(
        run.loan,
        bootstrap_servers=run.bootstrap,
        group_id=f"bench-responder-{run.token}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=run.bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=50)).values():
                for record in batch:
                    wrapper = loan_pb2.LoanEvent.FromString(record.value or b"")
                    if wrapper.WhichOneof("event") != "loan_application_submitted":
                        continue
                    app = wrapper.loan_application_submitted
                    out = risk_pb2.RiskEvent()
                    a = out.risk_assessment
                    a.assessment_id = str(uuid.uuid4())
                    a.application_id = app.application_id
                    a.party_id = app.party_id
                    a.application_event_id = dict(record.headers)["ce_id"].decode()
                    a.score, a.band = 100, risk_pb2.RISK_BAND_LOW
                    a.assessed_at.CopyFrom(_ts(datetime.now(UTC)))
                    a.scorecard_version = "bench-responder"
                    c = cloud(out, a, app.party_id)
                    await producer.send(
                        run.risk, c.data, key=app.party_id.encode(), headers=c.headers()
                    )
    finally:
        await producer.stop()
        await consumer.stop()


def tracing_env(service: str, tracing: str, endpoint: str) -> dict[str, str]:
    """The OpenTelemetry settings of a bench process: off, or every trace exported."""
    if tracing == "off":
        return {"OTEL_SDK_DISABLED": "true"}
    return {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        f"ZC_{service.upper()}_TRACE_SAMPLE_RATIO": "1.0",
    }


def start_loan(
    run: Run, port: int, jwks_port: int, rail_latency_ms: float, log: Path, tracing: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **tracing,
        "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap,
        "MONGODB_URI": run.mongodb_uri,
        "ZC_LOAN_MONGODB_DATABASE": run.database,
        "ZC_LOAN_CONSUMER_GROUP": f"bench-loan-{run.token}",
        "ZC_LOAN_EVENTS_TOPIC": run.loan,
        "ZC_LOAN_RISK_TOPIC": run.risk,
        "ZC_LOAN_IDENTITY_TOPIC": run.identity,
        "ZC_LOAN_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
        "ZC_LOAN_JWT_ISSUER": ISSUER,
        "ZC_LOAN_OPERATOR_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "ZC_LOAN_RAIL_LATENCY_MS": str(rail_latency_ms),
        "ZC_LOAN_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                *(
                    ["-m", "cProfile", "-o", os.environ["LOAN_BENCH_PROFILE"]]
                    if os.environ.get("LOAN_BENCH_PROFILE")
                    else []
                ),
                "-m",
                "uvicorn",
                "--factory",
                "zerocontact.loan.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_signals(
    run: Run, port: int, data_dir: Path, log: Path, tracing: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **tracing,
        "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap,
        "ZC_SIGNALS_APP_ID": run.signals_app,
        "ZC_SIGNALS_LOAN_TOPIC": run.loan,
        "ZC_SIGNALS_IDENTITY_TOPIC": run.identity,
        "ZC_SIGNALS_RISK_TOPIC": run.risk,
        "ZC_SIGNALS_DATA_DIR": str(data_dir),
        "ZC_SIGNALS_HTTP_PORT": str(port),
        "ZC_SIGNALS_PRODUCER_LINGER_MS": "1",
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zerocontact.signals", "worker", "-l", "warn"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_http(url: str, within_s: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"process exited early; its log is {log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready within {within_s} s")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


async def run_bench(args: argparse.Namespace, tracing: str) -> dict[str, Any]:
    run = Run(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
    )
    roundtrip = _load("kafka_roundtrip", ROOT / "bench" / "kafka_roundtrip.py")
    total = int(args.rate * args.seconds)
    parties = [str(uuid.uuid4()) for _ in range(total)]
    keys = SigningKeys.from_config(
        pem=None, seed=base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    )
    now = datetime.now(UTC)
    tokens = {
        p: keys.sign(
            access_claims(
                AccessGrant(p, str(uuid.uuid4()), Aal.AAL2, (Method.PASSWORD, Method.TOTP), now),
                issuer=ISSUER,
                audience=AUDIENCE,
                now=now,
                ttl=timedelta(minutes=30),
            )
        )
        for p in parties
    }
    risk_side = args.risk
    if risk_side == "signals" and importlib.util.find_spec("zerocontact.signals.app") is None:
        risk_side = "responder"

    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    topics = [run.identity, run.risk, run.loan]
    await admin.create_topics(
        [NewTopic(t, PARTITIONS, 1) for t in topics] + [NewTopic(f"{t}.dlq", 1, 1) for t in topics]
    )
    workdir = Path(tempfile.mkdtemp(prefix="loan310-"))
    jwks_app = FastAPI()
    jwks_app.get("/.well-known/jwks.json")(lambda: keys.jwks())
    jwks_port, loan_port, signals_port = free_port(), free_port(), free_port()
    jwks_server = uvicorn.Server(
        uvicorn.Config(jwks_app, host="127.0.0.1", port=jwks_port, log_level="warning")
    )
    jwks_task = asyncio.create_task(jwks_server.serve())
    loan_proc = signals_proc = None
    stop = asyncio.Event()
    responder_task = None
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(run.mongodb_uri)
    try:
        print(f"raw Kafka round trip ({args.roundtrip_samples} samples)...", flush=True)
        opts = roundtrip.Options(
            connection=KafkaConnection(run.bootstrap),
            samples=args.roundtrip_samples,
            warmup=50,
            messages=0,
            size=200,
            deadline_s=120,
        )
        rt_topic = f"bench.roundtrip.{run.token}"
        await admin.create_topics([NewTopic(rt_topic, 3, 1)])
        raw = await roundtrip.roundtrip_latency(opts, rt_topic, 3)
        topics.append(rt_topic)
        print(f"    p50 {raw['p50_ms']} ms  p99 {raw['p99_ms']} ms", flush=True)

        loan_proc = start_loan(
            run,
            loan_port,
            jwks_port,
            args.rail_latency_ms,
            workdir / "loan.log",
            tracing_env("loan", tracing, args.otlp_endpoint),
        )
        if risk_side == "signals":
            signals_proc = start_signals(
                run,
                signals_port,
                workdir / "signals-data",
                workdir / "signals.log",
                tracing_env("signals", tracing, args.otlp_endpoint),
            )
        else:
            responder_task = asyncio.create_task(responder(run, stop))
        await wait_http(
            f"http://127.0.0.1:{loan_port}/readyz", 300, loan_proc, workdir / "loan.log"
        )
        if signals_proc is not None:
            await wait_http(
                f"http://127.0.0.1:{signals_port}/healthz",
                300,
                signals_proc,
                workdir / "signals.log",
            )
        print(
            f"loan service up; risk side: {'the signals app (subprocess)' if signals_proc else 'IN-BENCH RESPONDER (signals app not used)'}",
            flush=True,
        )

        producer = AIOKafkaProducer(
            bootstrap_servers=run.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        await identity_events(producer, run, parties)
        await producer.stop()
        deadline = time.monotonic() + 120
        while (
            await mongo[run.database]["parties"].count_documents({"kyc_level": "VERIFIED"}) < total
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "the loan service did not learn every party from identity's events"
                )
            await asyncio.sleep(0.5)
        print(f"{total} verified parties known to the loan service", flush=True)

        timings: dict[str, Timing] = {}
        by_party: dict[str, str] = {}
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{loan_port}",
            timeout=30,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
        )
        accept_tasks: set[asyncio.Task[None]] = set()
        errors: list[str] = []
        # Each application's marks by name (HOPS), filled as records arrive (some before the
        # apply's response names the application).
        marks: dict[str, dict[str, float]] = {}

        def mark(app_id: str, name: str, wall: float) -> None:
            marks.setdefault(app_id, {}).setdefault(name, wall)

        async def accept(app_id: str, party: str) -> None:
            mark(app_id, "accept_sent", time.time())
            try:
                r = await client.post(
                    f"/v1/applications/{app_id}/acceptance",
                    headers={
                        "Authorization": f"Bearer {tokens[party]}",
                        "Idempotency-Key": f"acc-{app_id[-20:]}",
                    },
                )
            except httpx.HTTPError as exc:
                errors.append(f"accept failed: {exc!r}")
                return
            if r.status_code != 200:
                errors.append(f"accept {r.status_code} {r.text[:200]}")

        async def watch() -> None:
            consumer = AIOKafkaConsumer(
                run.loan,
                run.risk,
                *([run.by_address] if risk_side == "signals" else []),
                bootstrap_servers=run.bootstrap,
                auto_offset_reset="earliest",
                group_id=None,
                # The broker answers a waiting fetch as soon as a record arrives: a long wait
                # adds no latency, a short one only polls the broker (whose CPU is measured).
                fetch_max_wait_ms=args.watch_fetch_wait_ms,
            )
            await consumer.start()
            try:
                while True:
                    for tp, batch in (await consumer.getmany(timeout_ms=20)).items():
                        seen = time.perf_counter()
                        seen_wall = time.time()
                        if tp.topic == run.risk:
                            for record in batch:
                                r = risk_pb2.RiskEvent.FromString(record.value or b"")
                                if r.WhichOneof("event") == "risk_assessment":
                                    a_id = r.risk_assessment.application_id
                                    mark(a_id, "risk_record", record.timestamp / 1000)
                            continue
                        if tp.topic != run.loan:  # the signals' last internal topic
                            for record in batch:
                                w = loan_pb2.LoanEvent.FromString(record.value or b"")
                                a_id = w.loan_application_submitted.application_id
                                for name, value in record.headers:
                                    if name in STAGE_MARKS:
                                        mark(a_id, STAGE_MARKS[name], float(value))
                            continue
                        for record in batch:
                            w = loan_pb2.LoanEvent.FromString(record.value or b"")
                            kind = w.WhichOneof("event")
                            if kind == "loan_application_submitted":
                                a_id = w.loan_application_submitted.application_id
                                mark(a_id, "submitted_record", record.timestamp / 1000)
                            elif kind == "loan_offer_accepted":
                                m_acc = w.loan_offer_accepted
                                mark(
                                    m_acc.application_id,
                                    "accepted",
                                    m_acc.accepted_at.ToMicroseconds() / 1e6,
                                )
                            if kind in ("loan_approved", "loan_declined"):
                                m = getattr(w, kind)
                                t = timings.get(m.application_id)
                                if t and t.decided is None:
                                    t.decided, t.approved = seen, kind == "loan_approved"
                                    t.decided_wall = m.decided_at.ToMicroseconds() / 1e6
                                    t.decision_record_wall = record.timestamp / 1000
                                    t.decision_seen_wall = seen_wall
                                    if t.approved:
                                        task = asyncio.create_task(
                                            accept(m.application_id, m.party_id)
                                        )
                                        accept_tasks.add(task)
                                        task.add_done_callback(accept_tasks.discard)
                            elif kind == "loan_disbursed":
                                t = timings.get(w.loan_disbursed.application_id)
                                if t and t.disbursed is None:
                                    t.disbursed = seen
                                    t.disbursed_wall = (
                                        w.loan_disbursed.disbursed_at.ToMicroseconds() / 1e6
                                    )
                                    t.disbursed_record_wall = record.timestamp / 1000
                                    t.disbursed_seen_wall = seen_wall
            finally:
                await consumer.stop()

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1)

        async def apply(party: str) -> None:
            sent, sent_wall = time.perf_counter(), time.time()
            try:
                r = await client.post(
                    "/v1/applications",
                    json={
                        "party_id": party,
                        "product_id": "merchant-310",
                        "amount": "20000.00",
                        "currency": "CNY",
                        "term_months": 12,
                        "purpose": "inventory",
                        "device_id": f"dev-{party[:8]}",
                        "source_address": f"10.{hash(party) % 250}.{hash(party[1:]) % 250}.{hash(party[2:]) % 250}",
                    },
                    headers={
                        "Authorization": f"Bearer {tokens[party]}",
                        "Idempotency-Key": f"apply-{party[:30]}",
                    },
                )
            except httpx.HTTPError as exc:
                errors.append(f"apply failed: {exc!r}")
                return
            if r.status_code != 202:
                errors.append(f"apply {r.status_code} {r.text[:200]}")
                return
            body = r.json()
            app_id = body["application_id"]
            submitted = datetime.fromisoformat(body["submitted_at"].replace("Z", "+00:00"))
            timings[app_id] = Timing(
                sent, sent_wall=sent_wall, submitted_wall=submitted.timestamp()
            )
            by_party[party] = app_id

        # The engines' pids by their listening ports (engines.py's own look-up).
        port_owner = _load("engines", ROOT / "deploy" / "local" / "engines.py").port_owner
        meter = CpuMeter(
            {
                "loan service": loan_proc.pid,
                "bench (client + in-bench responder)"
                if responder_task is not None
                else "bench client": os.getpid(),
                "signals app": signals_proc.pid if signals_proc else None,
                "FerretDB": port_owner(urlsplit(run.mongodb_uri).port or 27017),
                "Kafka": port_owner(int(run.bootstrap.split(",")[0].rsplit(":", 1)[1])),
                "trace collector (Jaeger)": port_owner(_port_of(args.otlp_endpoint))
                if tracing == "on"
                else None,
            }
        )
        load_before = loadavg()
        commands_before = await mongo_commands(client)
        meter.start()
        print(f"driving {total} applications at {args.rate}/s...", flush=True)
        interval = 1.0 / args.rate
        started = time.perf_counter()
        applies = []
        for n, party in enumerate(parties):
            target = started + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            applies.append(asyncio.create_task(apply(party)))
        await asyncio.gather(*applies)
        offered_s = time.perf_counter() - started
        wait_until = time.monotonic() + 60
        # Polling: the watcher fills the timings; an Event per application buys nothing here.
        while time.monotonic() < wait_until and any(  # noqa: ASYNC110
            t.disbursed is None and (t.decided is None or t.approved) for t in timings.values()
        ):
            await asyncio.sleep(0.2)
        await asyncio.gather(*accept_tasks, return_exceptions=True)
        meter.stop()
        commands_after = await mongo_commands(client)
        load_after = loadavg()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await client.aclose()

        decision = [(t.decided - t.sent) * 1000 for t in timings.values() if t.decided]
        disbursed = [(t.disbursed - t.sent) * 1000 for t in timings.values() if t.disbursed]
        accept_to_disbursed = [
            (t.disbursed - t.decided) * 1000 for t in timings.values() if t.disbursed and t.decided
        ]
        d, b = summary(decision), summary(disbursed)
        decided = [t for t in timings.values() if t.decided_wall]
        paid = [t for t in timings.values() if t.disbursed_wall]
        # Where the time goes (wall clocks of one host; ms).
        breakdown = {
            "submitted_to_decided_in_service": summary(
                [(t.decided_wall - t.submitted_wall) * 1000 for t in decided]
            ),
            "decided_to_record_sent_by_relay": summary(
                [(t.decision_record_wall - t.decided_wall) * 1000 for t in decided]
            ),
            "record_to_seen_by_client": summary(
                [(t.decision_seen_wall - t.decision_record_wall) * 1000 for t in decided]
            ),
            "disbursed_to_record_sent_by_relay": summary(
                [(t.disbursed_record_wall - t.disbursed_wall) * 1000 for t in paid]
            ),
        }
        for name, figures in breakdown.items():
            print(f"    {name}: p50 {figures.get('p50_ms')} ms  p99 {figures.get('p99_ms')} ms")
        for app_id, t in timings.items():
            m = marks.setdefault(app_id, {})
            for name, wall in (
                ("sent", t.sent_wall),
                ("submitted", t.submitted_wall),
                ("decided", t.decided_wall),
                ("decision_record", t.decision_record_wall),
                ("decision_seen", t.decision_seen_wall),
                ("disbursed", t.disbursed_wall),
                ("disbursed_record", t.disbursed_record_wall),
                ("disbursed_seen", t.disbursed_seen_wall),
            ):
                if wall:
                    m[name] = wall
        hops, tail = hop_breakdown(
            {a: marks[a] for a in timings},
            {a: (t.disbursed - t.sent) * 1000 for a, t in timings.items() if t.disbursed},
        )
        print("  apply -> disbursed hop by hop (ms; p50 / p99 / mean over the slowest 5 %):")
        for name, figures in hops.items():
            print(
                f"    {name:<58} p50 {figures.get('p50_ms')}  p99 {figures.get('p99_ms')}"
                f"  slowest-5% {tail.get(name)}"
            )
        print(
            f"    {'(slowest 5 %: apply -> disbursed)':<58} "
            f"{tail.get('apply -> disbursed (these applications)')}"
        )
        result = {
            "bench": "loan_310",
            "tracing": tracing,
            "risk_side": "signals-app" if signals_proc else "in-bench-responder",
            "rate_per_s": args.rate,
            "applications": total,
            "achieved_rate_per_s": round(total / offered_s, 1),
            "approved": sum(1 for t in timings.values() if t.approved),
            "declined": sum(1 for t in timings.values() if t.decided and not t.approved),
            "undecided_at_end": sum(1 for t in timings.values() if t.decided is None),
            "approved_not_disbursed_at_end": sum(
                1 for t in timings.values() if t.approved and t.disbursed is None
            ),
            "errors": len(errors),
            "error_samples": errors[:3],
            "rail_latency_ms": args.rail_latency_ms,
            "kafka_roundtrip": raw,
            "apply_to_decision": d,
            "apply_to_disbursed": b,
            "decision_to_disbursed": summary(accept_to_disbursed),
            "breakdown": breakdown,
            "hops": hops,
            "hops_slowest_5pct_mean_ms": tail,
            "cpu": meter.report(sum(1 for t in timings.values() if t.disbursed)),
            "mongodb_commands_per_loan": per_loan(
                commands_before, commands_after, sum(1 for t in timings.values() if t.disbursed)
            ),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "decision_p99_over_kafka_p99": round(d["p99_ms"] / raw["p99_ms"], 1)
            if d.get("count")
            else None,
            "disbursed_p99_over_kafka_p99": round(b["p99_ms"] / raw["p99_ms"], 1)
            if b.get("count")
            else None,
        }
        print(
            f"completed within the run: {d.get('count', 0)} decisions and "
            f"{b.get('count', 0)} disbursements of {total} applications "
            "(percentiles below are over completed ones)"
        )
        print(
            f"apply->decision   p50 {d.get('p50_ms')} ms  p95 {d.get('p95_ms')} ms  p99 {d.get('p99_ms')} ms  (n={d.get('count')})"
        )
        print(
            f"apply->disbursed  p50 {b.get('p50_ms')} ms  p95 {b.get('p95_ms')} ms  p99 {b.get('p99_ms')} ms  (n={b.get('count')})"
        )
        print(
            f"p99 / raw Kafka round-trip p99 ({raw['p99_ms']} ms): decision x{result['decision_p99_over_kafka_p99']}, "
            f"disbursed x{result['disbursed_p99_over_kafka_p99']}"
        )
        cpu = result["cpu"]
        print(
            f"[tracing {tracing}] CPU per disbursed loan over {cpu['window_s']} s (ms): "
            + ", ".join(f"{n} {ms}" for n, ms in cpu["cpu_ms_per_loan"].items())
            + f"; total {cpu['cpu_ms_per_loan_total']} ms, so {cpu['cores']} cores fully busy "
            f"would carry {cpu['loans_per_s_if_cores_fully_used']} loans/s"
        )
        commands = result["mongodb_commands_per_loan"]
        print(
            f"MongoDB commands per disbursed loan: {round(sum(commands.values()), 1)} ("
            + ", ".join(f"{c} {n}" for c, n in commands.items())
            + ")"
        )
        print(f"load average (1/5/15 min) before {load_before}, after {load_after}")
        return result
    finally:
        stop.set()
        if responder_task is not None:
            with contextlib.suppress(Exception):
                await responder_task
        stop_process(loan_proc)
        stop_process(signals_proc)
        jwks_server.should_exit = True
        await jwks_task
        with contextlib.suppress(Exception):
            await admin.delete_topics(topics + [f"{t}.dlq" for t in topics[:3]])
        await admin.close()
        with contextlib.suppress(Exception):
            await mongo.drop_database(run.database)
        await mongo.close()
        print(f"logs: {workdir}", flush=True)


def _port_of(endpoint: str) -> int:
    return urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").port or 4317


def _collector_listens(endpoint: str) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", _port_of(endpoint))) == 0


def _without(per_loan: dict[str, float], name: str) -> float:
    return round(sum(ms for n, ms in per_loan.items() if n != name), 1)


TRACED = ("loan service", "signals app")


def compare(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU per loan with tracing on over off (medians of the runs): the suite's processes,
    with the collector, and the processes that trace (the broker and database do not)."""
    collector = "trace collector (Jaeger)"

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return round(ordered[middle], 1)
        return round((ordered[middle - 1] + ordered[middle]) / 2, 1)

    def traced(run: dict[str, Any]) -> float:
        per_loan = run["cpu"]["cpu_ms_per_loan"]
        return float(sum(per_loan.get(name, 0.0) for name in TRACED))

    off_ms = median([r["cpu"]["cpu_ms_per_loan_total"] for r in off])
    on_all = median([r["cpu"]["cpu_ms_per_loan_total"] for r in on])
    on_suite = median([_without(r["cpu"]["cpu_ms_per_loan"], collector) for r in on])
    traced_off, traced_on = median([traced(r) for r in off]), median([traced(r) for r in on])
    return {
        "pairs": len(off),
        "cpu_ms_per_loan_off": off_ms,
        "cpu_ms_per_loan_on_suite": on_suite,
        "cpu_ms_per_loan_on_with_collector": on_all,
        "on_over_off_suite": round(on_suite / off_ms, 3) if off_ms else None,
        "on_over_off_with_collector": round(on_all / off_ms, 3) if off_ms else None,
        "traced_processes_off": traced_off,
        "traced_processes_on": traced_on,
        "traced_processes_on_over_off": round(traced_on / traced_off, 3) if traced_off else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="applications per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--risk", choices=["signals", "responder"], default="signals")
    parser.add_argument("--rail-latency-ms", type=float, default=15.0)
    parser.add_argument("--roundtrip-samples", type=int, default=500)
    parser.add_argument("--tracing", choices=["off", "on", "compare"], default="off")
    parser.add_argument("--otlp-endpoint", default="http://127.0.0.1:4317")
    parser.add_argument(
        "--watch-fetch-wait-ms",
        type=int,
        default=500,
        help="the client's watcher's fetch wait (5 before: a busy poll of the broker)",
    )
    parser.add_argument(
        "--pairs", type=int, default=2, help="--tracing compare: off/on pairs, alternating order"
    )
    args = parser.parse_args()
    if args.tracing != "off" and not _collector_listens(args.otlp_endpoint):
        print(
            f"nothing listens on {args.otlp_endpoint}: start the local Jaeger (make up) or "
            "pass --otlp-endpoint",
            file=sys.stderr,
        )
        return 2
    if args.tracing != "compare":
        result = asyncio.run(run_bench(args, args.tracing))
        print(json.dumps(result, sort_keys=True))
        return 0 if result["errors"] == 0 else 1
    # Alternating pairs (off, on, on, off, ...): the broker's cost drifts between runs (topic
    # creation, JIT warm-up), so one pair can flatter either side; the medians are compared.
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for pair in range(args.pairs):
        for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
            runs[mode].append(asyncio.run(run_bench(args, mode)))
    ratio = compare(runs["off"], runs["on"])
    print(
        f"tracing CPU per disbursed loan over {args.pairs} pair(s), medians: off "
        f"{ratio['cpu_ms_per_loan_off']} ms, on {ratio['cpu_ms_per_loan_on_suite']} ms "
        f"(x{ratio['on_over_off_suite']}); with the collector's own CPU "
        f"{ratio['cpu_ms_per_loan_on_with_collector']} ms (x{ratio['on_over_off_with_collector']}); "
        f"the traced processes (loan service + signals app): off "
        f"{ratio['traced_processes_off']} ms, on {ratio['traced_processes_on']} ms "
        f"(x{ratio['traced_processes_on_over_off']})"
    )
    print(json.dumps({"bench": "loan_310", **runs, "tracing": ratio}, sort_keys=True))
    return 0 if all(r["errors"] == 0 for mode in runs.values() for r in mode) else 1


if __name__ == "__main__":
    sys.exit(main())
