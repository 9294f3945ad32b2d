"""What the chaos scenarios share: rows, engines, the suite as real subprocesses, load, checks.

A scenario runs the real services (identity, loan, payroll, the signals worker) as
subprocesses on free ports, with databases, topics and consumer groups of its own, on the
engines named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI`` (``bench/chaos.py`` provides
them) or on a private embedded pair it may kill (:class:`PrivateEngines`). The load is a
customer's journey (login at identity, apply, accept when approved, disbursed) and an
employer's payroll batch; the checks read the databases, the topics, the rail simulators'
records and the consumer groups' committed offsets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pymongo import AsyncMongoClient

from tests.chaos.scenario import Row
from tests.integration.harness import free_port, random_key
from tests.integration.test_identity_service import credit_code, resident_id
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.payroll.domain.cards import luhn_complete
from zerocontact.payroll.v1 import events_pb2 as payroll_pb2
from zerocontact.platform.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / "deploy" / "local" / "engines.py"
ISSUER, AUDIENCE = "https://identity.zerocontact.internal", "zerocontact"
PASSWORD = "chaos horse battery staple"
LOAN_AMOUNT_MINOR = 2_000_000  # 20,000.00 CNY per application
SALARY_MINOR = 888_888  # 8,888.88 CNY per payroll item


def quiet_reconnect_logs() -> None:
    """Silence the Kafka client's logs in a scenario's process: its probes and readers
    reconnect on purpose while an engine is down, and the client's "Unable connect" lines
    would bury the scenario's own output. Called by the scenarios' ``main``, never at import:
    pytest imports this module too (tests/integration/test_soak.py), and a logger silenced
    for the whole session hid the broker's refusal that test_kafka_access reads."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


# ---------------------------------------------------------------------------------------------
# Rows and exit status


def report(rows: Iterable[Row], failures: list[str]) -> int:
    """Print every row as ``CHAOS-ROW {json}`` and each failed invariant on stderr; the exit
    status: 1 when a row lost or duplicated anything or an invariant failed."""
    rows = list(rows)
    for row in rows:
        row.print()
    for failure in failures:
        print(f"invariant failed: {failure}", file=sys.stderr, flush=True)
    return 0 if rows and not failures and all(r.passed for r in rows) else 1


def conclude(workdir: Path, rows: list[Row], failures: list[str]) -> int:
    """:func:`report` the scenario's rows; its working directory (logs) kept and named on
    stderr when something failed, removed otherwise."""
    if failures:
        print(f"logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(rows, failures)


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


@dataclass(frozen=True)
class EngineUrls:
    kafka: str
    mongodb: str


def engine_urls() -> EngineUrls:
    """The engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``; one clear line without them."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if not kafka or not mongo:
        sys.exit("chaos: set KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI (bench/chaos.py sets them)")
    return EngineUrls(kafka, mongo)


# ---------------------------------------------------------------------------------------------
# Processes


class PrivateEngines:
    """A Kafka + FerretDB pair of the scenario's own under its own supervisord, on free ports,
    from the shared engine cache (as tests/integration/test_engine_outage.py does), so that
    killing them disturbs nobody else. supervisord restarts a killed engine (autorestart)."""

    def __init__(self) -> None:
        cache = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache").resolve()
        self.home = Path(tempfile.mkdtemp(prefix="zc-chaos-engines-"))
        (self.home / "kafka").mkdir(parents=True)
        (self.home / "kafka" / "libs").symlink_to(cache / "kafka" / "libs")
        (self.home / "bin").symlink_to(cache / "bin")
        self.kafka_port, self.mongo_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "ZC_LOCAL_HOME": str(self.home),
            "ZC_KAFKA_PORT": str(self.kafka_port),
            "ZC_KAFKA_CONTROLLER_PORT": str(free_port()),
            "ZC_KAFKA_SASL_PORT": str(free_port()),
            "ZC_MONGODB_PORT": str(self.mongo_port),
        }
        self.urls = EngineUrls(
            f"127.0.0.1:{self.kafka_port}", f"mongodb://127.0.0.1:{self.mongo_port}/"
        )

    def start(self) -> None:
        started = subprocess.run(
            [sys.executable, str(ENGINES), "start", "--engines-only"],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if started.returncode != 0:
            sys.exit(f"chaos: private engines did not start: {started.stderr.strip()}")

    def stop(self) -> None:
        subprocess.run(
            [sys.executable, str(ENGINES), "stop"], env=self.env, capture_output=True, check=False
        )

    def _ctl(self, *args: str) -> str:
        ctl = Path(sys.executable).with_name("supervisorctl")
        conf = self.home / "run" / "supervisord.conf"
        done = subprocess.run(
            [str(ctl), "-c", str(conf), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    def pid(self, program: str) -> int:
        out = self._ctl("pid", program)
        return int(out) if out.isdigit() else 0

    def kill9(self, program: str) -> None:
        """SIGKILL the engine; supervisord starts it again as it would after any crash."""
        pid = self.pid(program)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def ensure_running(self, program: str) -> None:
        """Start it if supervisord gave up (FATAL after its start retries)."""
        if "RUNNING" not in self._ctl("status", program) and "STARTING" not in self._ctl(
            "status", program
        ):
            self._ctl("start", program)


@dataclass
class Service:
    """A service as a subprocess (its own session, so SIGKILL takes all of it), restartable on
    the same port with the same environment, as a supervisor or Kubernetes would."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    health: str = "/readyz"
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sink = self.log.open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        sink.close()

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(self.url + self.health)).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_ready(self, within_s: float = 120) -> None:
        deadline = time.monotonic() + within_s
        while not await self.ready():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; its log is {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready within {within_s} s ({self.log})")
            await asyncio.sleep(0.2)


def uvicorn_argv(factory: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
        "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The suite


@dataclass
class Suite:
    """identity, loan, payroll and the signals worker on topics and databases of one run."""

    urls: EngineUrls
    workdir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    services: dict[str, Service] = field(default_factory=dict)
    signing_seed: str = field(default_factory=random_key)
    operator_key: str = field(default_factory=random_key)

    def topic(self, name: str) -> str:
        return f"chaos-{self.tag}-{name}"

    def db(self, name: str) -> str:
        return f"chaos_{self.tag}_{name}"

    def group(self, name: str) -> str:
        return f"chaos-{self.tag}-{name}"

    @property
    def topics(self) -> list[str]:
        return [self.topic(t) for t in ("identity", "notes", "loan", "risk", "payroll")]

    @property
    def groups(self) -> dict[str, str]:
        """Consumer group → the service that owns it (the signals worker's is its app id)."""
        return {
            self.group("identity"): "identity",
            self.group("loan"): "loan",
            self.group("payroll"): "payroll",
            self.group("signals"): "signals",
        }

    async def create_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.urls.kafka)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(t, 6, 1) for t in self.topics]
                + [NewTopic(f"{t}.dlq", 1, 1) for t in self.topics]
                + [NewTopic(self.topic(t), 6, 1) for t in ("marketing", "engagement")]
            )
        finally:
            await admin.close()

    def build(self) -> None:
        """Declare the four processes (not started)."""
        base = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.urls.kafka,
            "MONGODB_URI": self.urls.mongodb,
            "OTEL_SDK_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
        sms = X25519PrivateKey.generate().public_key()
        raw = sms.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ports = {name: free_port() for name in ("identity", "loan", "payroll", "signals")}
        jwks = f"http://127.0.0.1:{ports['identity']}/.well-known/jwks.json"
        envs: dict[str, dict[str, str]] = {
            "identity": {
                "ZC_IDENTITY_MONGODB_DATABASE": self.db("identity"),
                "ZC_IDENTITY_EVENTS_TOPIC": self.topic("identity"),
                "ZC_IDENTITY_NOTIFICATIONS_TOPIC": self.topic("notes"),
                "ZC_IDENTITY_CONSUMER_GROUP": self.group("identity"),
                "ZC_IDENTITY_OUTBOX_SWEEP_INTERVAL_S": "0.5",
                "ZC_IDENTITY_PII_KEY": random_key(),
                "ZC_IDENTITY_PII_INDEX_KEY": random_key(),
                "ZC_IDENTITY_JWT_SIGNING_SEED": self.signing_seed,
                "ZC_IDENTITY_SMS_GATEWAY_PUBLIC_KEY": base64.urlsafe_b64encode(raw)
                .decode()
                .rstrip("="),
                "ZC_IDENTITY_SMS_GATEWAY_KEY": random_key(),
                "ZC_IDENTITY_OPERATOR_KEY": self.operator_key,
                "ZC_IDENTITY_PASSWORD_TIME_COST": "1",
                "ZC_IDENTITY_PASSWORD_MEMORY_KIB": "1024",
                "ZC_IDENTITY_PASSWORD_PARALLELISM": "1",
                "ZC_IDENTITY_LOG_LEVEL": "WARNING",
            },
            "loan": {
                "ZC_LOAN_MONGODB_DATABASE": self.db("loan"),
                "ZC_LOAN_CONSUMER_GROUP": self.group("loan"),
                "ZC_LOAN_EVENTS_TOPIC": self.topic("loan"),
                "ZC_LOAN_RISK_TOPIC": self.topic("risk"),
                "ZC_LOAN_IDENTITY_TOPIC": self.topic("identity"),
                "ZC_LOAN_JWKS_URL": jwks,
                "ZC_LOAN_OPERATOR_KEY": random_key(),
                "ZC_LOAN_RAIL_LATENCY_MS": "15",
                "ZC_LOAN_OUTBOX_SWEEP_INTERVAL_S": "0.5",
                "ZC_LOAN_RECOVERY_INTERVAL_S": "1",
                "ZC_LOAN_RECOVERY_MIN_AGE_S": "1",
                "ZC_LOAN_PARTY_WAIT_S": "5",
                "ZC_LOAN_LOG_LEVEL": "WARNING",
            },
            "payroll": {
                "ZC_PAYROLL_MONGODB_DATABASE": self.db("payroll"),
                "ZC_PAYROLL_RAIL_SIMULATOR_DATABASE": self.db("rail"),
                "ZC_PAYROLL_IDENTITY_TOPIC": self.topic("identity"),
                "ZC_PAYROLL_EVENTS_TOPIC": self.topic("payroll"),
                "ZC_PAYROLL_CONSUMER_GROUP": self.group("payroll"),
                "ZC_PAYROLL_IDENTITY_JWKS_URL": jwks,
                "ZC_PAYROLL_OUTBOX_SWEEP_INTERVAL_S": "0.5",
                "ZC_PAYROLL_SCHEDULER_INTERVAL_S": "1",
                "ZC_PAYROLL_BATCH_LEASE_S": "6",
                "ZC_PAYROLL_PARTY_WAIT_S": "5",
                "ZC_PAYROLL_PII_KEY": random_key(),
                "ZC_PAYROLL_PII_INDEX_KEY": random_key(),
                "ZC_PAYROLL_LOG_LEVEL": "WARNING",
            },
            "signals": {
                "ZC_SIGNALS_APP_ID": self.group("signals"),
                "ZC_SIGNALS_DATA_DIR": str(self.workdir / "signals-data"),
                "ZC_SIGNALS_HTTP_PORT": str(ports["signals"]),
                "ZC_SIGNALS_PRODUCER_LINGER_MS": "1",
                "ZC_SIGNALS_LOAN_TOPIC": self.topic("loan"),
                "ZC_SIGNALS_IDENTITY_TOPIC": self.topic("identity"),
                "ZC_SIGNALS_RISK_TOPIC": self.topic("risk"),
                "ZC_SIGNALS_MARKETING_TOPIC": self.topic("marketing"),
                "ZC_SIGNALS_ENGAGEMENT_TOPIC": self.topic("engagement"),
            },
        }
        argv = {
            "identity": uvicorn_argv("zerocontact.identity.app:create_app", ports["identity"]),
            "loan": uvicorn_argv("zerocontact.loan.app:create_app", ports["loan"]),
            "payroll": uvicorn_argv("zerocontact.payroll.app:create_app", ports["payroll"]),
            "signals": [sys.executable, "-m", "zerocontact.signals", "worker", "-l", "warn"],
        }
        for name in ("identity", "loan", "payroll", "signals"):
            self.services[name] = Service(
                name, argv[name], {**base, **envs[name]}, ports[name], self.workdir / f"{name}.log"
            )

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        await self.create_topics()
        self.build()
        for service in self.services.values():
            service.start()
        for service in self.services.values():
            await service.wait_ready()

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    async def drop(self) -> None:
        """Remove the run's topics and databases (keeps a long-lived engine pair small)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.urls.kafka)
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.urls.mongodb, serverSelectionTimeoutMS=5000
        )
        with contextlib.suppress(Exception):
            await admin.start()
            ours = [t for t in await admin.list_topics() if t.startswith(f"chaos-{self.tag}-")]
            if ours:
                await admin.delete_topics(ours)
        with contextlib.suppress(Exception):
            await admin.close()
        with contextlib.suppress(Exception):
            for name in await mongo.list_database_names():
                if name.startswith(f"chaos_{self.tag}_"):
                    await mongo.drop_database(name)
        await mongo.close()

    # -- tokens: identity's own key (the seed the identity process signs with)

    def token(self, subject: str) -> str:
        """An AAL2 access token for ``subject`` signed with identity's key, as identity issues
        after password + TOTP (the TOTP step is not part of the load)."""
        keys = SigningKeys.from_config(pem=None, seed=self.signing_seed)
        now = datetime.now(UTC)
        grant = AccessGrant(
            subject, str(uuid.uuid4()), Aal.AAL2, (Method.PASSWORD, Method.TOTP), now
        )
        return keys.sign(
            access_claims(
                grant, issuer=ISSUER, audience=AUDIENCE, now=now, ttl=timedelta(minutes=10)
            )
        )


# ---------------------------------------------------------------------------------------------
# Calls that survive faults


@dataclass
class CallStats:
    """What the load saw: answers by status, and transport errors, while faults happened."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, str, float]] = field(default_factory=list)  # (at, op, ms)

    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("5") and s != "503")


RETRYABLE = {500, 502, 503, 504}


def _retry_later(r: httpx.Response) -> bool:
    """A refusal the service marks as passing: 409 ``"retry": true`` (the first try with this
    key still runs) or a ``retry_after_s`` (e.g. a KYC change identity has published and this
    service has not read yet)."""
    if r.status_code not in (403, 409):
        return False
    try:
        body = r.json()
    except ValueError:
        return False
    return bool(body.get("retry")) or "retry_after_s" in body


async def call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    stats: CallStats,
    op: str,
    ok: set[int],
    within_s: float = 300,
    **kwargs: Any,
) -> httpx.Response:
    """One request, repeated with the same headers (so the same Idempotency-Key) while the
    service is down or answers 5xx, as a client with retries would; raises after ``within_s``."""
    deadline = time.monotonic() + within_s
    delay = 0.1
    while True:
        began = time.perf_counter()
        # Headers may be made per try: a retried step-up call needs a recent token.
        fresh = kwargs["headers"]() if callable(kwargs.get("headers")) else kwargs.get("headers")
        try:
            r = await client.request(method, url, **{**kwargs, "headers": fresh})
        except httpx.HTTPError as exc:
            stats.statuses[type(exc).__name__] += 1
        else:
            stats.statuses[str(r.status_code)] += 1
            if r.status_code in ok:
                stats.latencies.append((time.monotonic(), op, (time.perf_counter() - began) * 1000))
                return r
            if r.status_code not in RETRYABLE and not _retry_later(r):
                raise RuntimeError(f"{op}: {r.status_code} {r.text[:300]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{op}: no answer in {ok} within {within_s} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


# ---------------------------------------------------------------------------------------------
# Load: customers, applications, payroll


@dataclass
class Customer:
    party_id: str
    phone: str


class Load:
    """The customers' and employers' side, over HTTP, tolerant of faults."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.stats = CallStats()
        self.client = httpx.AsyncClient(
            timeout=120, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
        )
        # Each customer is a different person: 9,000 random resident IDs (9,000 birth days x
        # 1,000 sequence numbers) drew 3 that were taken, which identity rightly refused; the
        # phone numbers are kept apart the same way.
        self._resident_ids: set[str] = set()
        self._phones: set[str] = set()

    async def close(self) -> None:
        await self.client.aclose()

    def _url(self, service: str, path: str) -> str:
        return self.suite.services[service].url + path

    def _operator(self) -> dict[str, str]:
        return {"X-Operator-Key": self.suite.operator_key, "X-Operator-Id": "chaos-reviewer"}

    async def customer(self, *, verified: bool = True) -> Customer:
        """Register at identity; a KYC reviewer moves the customer to VERIFIED."""
        while True:
            birth = date(1980, 1, 1) + timedelta(days=random.randrange(9000))
            if (rid := resident_id(birth)) not in self._resident_ids:
                self._resident_ids.add(rid)
                break
        while (phone := f"+86139{random.randrange(10**8):08d}") in self._phones:
            pass
        self._phones.add(phone)
        body = {
            "name": "王小明", "resident_id": rid, "phone": phone,
            "date_of_birth": birth.isoformat(), "address": "北京市朝阳区建国路88号",
            "password": PASSWORD,
        }  # fmt: skip
        r = await call(
            self.client, "POST", self._url("identity", "/v1/customers"), json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex}, stats=self.stats, op="register",
            ok={201},
        )  # fmt: skip
        party = r.json()["customer_id"]
        if verified:
            await self.verify(party)
        return Customer(party, phone)

    async def verify(self, party: str) -> None:
        await call(
            self.client, "POST", self._url("identity", f"/v1/parties/{party}/kyc/transitions"),
            json={"target_level": "VERIFIED", "reason": "documents checked", "evidence": "chaos"},
            headers={"Idempotency-Key": uuid.uuid4().hex, **self._operator()},
            stats=self.stats, op="kyc", ok={200},
        )  # fmt: skip

    async def login(self, customer: Customer) -> str:
        r = await call(
            self.client, "POST", self._url("identity", "/v1/sessions"),
            json={"phone": customer.phone, "password": PASSWORD}, stats=self.stats, op="login",
            ok={200},
            headers={"X-Device-Id": f"dev-{customer.party_id[-12:]}", "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        return str(r.json()["access_token"])

    async def apply(self, customer: Customer) -> str:
        """Login, then apply for 20,000.00 over 12 months; the application id."""
        await self.login(customer)
        p = customer.party_id
        r = await call(
            self.client, "POST", self._url("loan", "/v1/applications"),
            json={
                "party_id": p, "product_id": "merchant-310", "amount": "20000.00",
                "currency": "CNY", "term_months": 12, "purpose": "inventory",
                "device_id": f"dev-{p[-12:]}",
                "source_address": f"10.{random.randrange(250)}.{random.randrange(250)}.{random.randrange(250)}",
            },
            headers=lambda: {
                "Authorization": f"Bearer {self.suite.token(p)}",
                "Idempotency-Key": f"apply-{p}",
            },
            stats=self.stats, op="apply", ok={202},
        )  # fmt: skip
        return str(r.json()["application_id"])

    async def accept(self, party: str, application_id: str) -> None:
        await call(
            self.client, "POST", self._url("loan", f"/v1/applications/{application_id}/acceptance"),
            headers=lambda: {
                "Authorization": f"Bearer {self.suite.token(party)}",
                "Idempotency-Key": f"accept-{application_id}",
            },
            stats=self.stats, op="accept", ok={200},
        )  # fmt: skip

    async def application(self, party: str, application_id: str) -> dict[str, Any]:
        r = await call(
            self.client, "GET", self._url("loan", f"/v1/applications/{application_id}"),
            headers={"Authorization": f"Bearer {self.suite.token(party)}"},
            stats=self.stats, op="get-application", ok={200},
        )  # fmt: skip
        body: dict[str, Any] = r.json()
        return body

    async def journey(self, customer: Customer, applied: dict[str, str]) -> None:
        """Apply; when the decision is an approval, accept (once the service says so)."""
        application_id = await self.apply(customer)
        applied[customer.party_id] = application_id
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = (await self.application(customer.party_id, application_id)).get("state")
            if state == "APPROVED":
                await self.accept(customer.party_id, application_id)
                return
            if state != "AWAITING_RISK":
                return
            await asyncio.sleep(1.0 + random.random())  # a phone polls; not in lock-step

    async def applications(
        self, customers: list[Customer], rate_per_s: float, applied: dict[str, str]
    ) -> list[BaseException]:
        """Every customer's journey, started at ``rate_per_s``; the failures."""
        tasks = []
        began = time.monotonic()
        for n, customer in enumerate(customers):
            delay = began + n / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.journey(customer, applied)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if isinstance(r, BaseException)]

    async def employer(self) -> tuple[str, str]:
        """A verified representative, a verified enterprise, its payroll wallet: (enterprise,
        representative)."""
        rep = await self.customer()
        r = await call(
            self.client, "POST", self._url("identity", "/v1/enterprises"),
            json={
                "name": "北京零接触科技有限公司", "credit_code": credit_code(),
                "legal_representative_id": rep.party_id, "business_category": "I",
                "registered_capital": {"amount": "5000000.00", "currency": "CNY"},
            },
            headers={
                "Authorization": f"Bearer {self.suite.token(rep.party_id)}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
            stats=self.stats, op="register-enterprise", ok={201},
        )  # fmt: skip
        enterprise = r.json()["enterprise_id"]  # VERIFIED with its representative
        await call(
            self.client, "POST", self._url("payroll", "/v1/employers"),
            json={"employer_id": enterprise}, headers=self._rep(rep.party_id),
            stats=self.stats, op="open-wallet", ok={201}, within_s=120,
        )  # fmt: skip
        return enterprise, rep.party_id

    def _rep(self, rep: str, key: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.suite.token(rep)}",
            "Idempotency-Key": key or uuid.uuid4().hex,
        }

    async def payroll_batch(self, enterprise: str, rep: str, items: int, seed: int) -> str:
        """Top up the wallet, submit ``items`` salaries of 8,888.88 and approve: the batch id."""
        rng = random.Random(seed)
        cards: set[str] = set()
        while len(cards) < items:
            cards.add(luhn_complete("622202" + "".join(rng.choices("0123456789", k=12))))
        total = SALARY_MINOR * items
        await call(
            self.client, "POST", self._url("payroll", f"/v1/employers/{enterprise}/top-ups"),
            json={"rail_reference": f"CHAOS-{self.suite.tag}-{seed}", "amount": f"{total / 100:.2f}"},
            headers=self._rep(rep, f"topup-{self.suite.tag}-{seed}"), stats=self.stats, op="top-up", ok={200},
        )  # fmt: skip
        body = [
            {"payee_name": f"员工{i}", "card_number": c, "amount": f"{SALARY_MINOR / 100:.2f}"}
            for i, c in enumerate(sorted(cards))
        ]
        r = await call(
            self.client, "POST", self._url("payroll", f"/v1/employers/{enterprise}/batches"),
            json={"items": body, "item_count": items, "control_sum": f"{total / 100:.2f}"},
            headers=self._rep(rep, f"batch-{self.suite.tag}-{seed}"), stats=self.stats,
            op="submit-batch", ok={201}, within_s=600,
        )  # fmt: skip
        batch = str(r.json()["batch_id"])
        await call(
            self.client, "POST", self._url("payroll", f"/v1/batches/{batch}/approval"),
            headers=self._rep(rep, f"approve-{batch}"), stats=self.stats, op="approve-batch",
            ok={200},
        )  # fmt: skip
        return batch


# ---------------------------------------------------------------------------------------------
# Checks


@dataclass
class TopicRecord:
    key: bytes | None
    ce_id: str
    value: bytes
    partition: int
    offset: int


async def read_topic(bootstrap: str, topic: str, *, within_s: float = 120) -> list[TopicRecord]:
    """Every record the topic holds now, from the beginning to the end offsets."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        began = time.monotonic()
        while not consumer.assignment():  # without a group: every partition, once known
            if time.monotonic() - began > 30:
                raise TimeoutError(f"{topic}: no partitions assigned within 30 s")
            await asyncio.sleep(0.1)
        parts = sorted(consumer.assignment())
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        out: list[TopicRecord] = []
        deadline = time.monotonic() + within_s

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in parts])

        while await behind():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {within_s} s")
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    ce = dict(r.headers).get("ce_id", b"").decode()
                    out.append(TopicRecord(r.key, ce, r.value or b"", r.partition, r.offset))
        return out
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str) -> Counter[str]:
    """Records not yet committed by ``group``, by topic, over every partition it committed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    lag: Counter[str] = Counter()
    if not committed:
        return lag
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(committed))
    finally:
        await consumer.stop()
    for tp, meta in committed.items():
        if meta.offset >= 0 and ends[tp] > meta.offset:
            lag[tp.topic] += ends[tp] - meta.offset
    return lag


async def wait_caught_up(
    bootstrap: str, groups: Iterable[str], within_s: float
) -> dict[str, dict[str, int]]:
    """Wait until no group lags; what still lags at the end, by group and topic (empty when
    every group caught up)."""
    groups = list(groups)
    deadline = time.monotonic() + within_s
    while True:
        behind: dict[str, dict[str, int]] = {}
        for g in groups:
            try:
                lag = await group_lag(bootstrap, g)
            except Exception as exc:  # the broker may still be coming back
                log(f"lag of {g}: {exc!r}")
                behind[g] = {"?": -1}
                continue
            if lag:
                behind[g] = dict(lag)
        if not behind or time.monotonic() > deadline:
            return behind
        await asyncio.sleep(1)


@dataclass
class Findings:
    """What the checks found: counts for the row, and each failed invariant."""

    operations: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, message: str, *, lost: int = 0, duplicated: int = 0) -> None:
        self.failures.append(message)
        self.lost += lost
        self.duplicated += duplicated


async def check_loans(
    suite: Suite, mongo: AsyncMongoClient[dict[str, Any]], applied: dict[str, str],
    parties: list[str], findings: Findings, *, within_s: float = 300,
) -> None:  # fmt: skip
    """Every application decided exactly once; every approved and accepted loan paid once."""
    db = mongo[suite.db("loan")]
    # Settled first: paid at the rail but not yet recorded, or accepted but not yet paid, is
    # work in flight (the recovery sweep finishes it), not a loss or a duplicate.
    deadline = time.monotonic() + within_s
    while True:
        records = await read_topic(suite.urls.kafka, suite.topic("loan"))
        submitted: dict[str, set[str]] = defaultdict(set)
        decided: dict[str, set[str]] = defaultdict(set)
        approved: set[str] = set()
        disbursed: dict[str, set[str]] = defaultdict(set)  # application → distinct event ids
        principal: dict[str, int] = {}
        rail_refs: Counter[str] = Counter()
        for record in records:
            event = loan_pb2.LoanEvent.FromString(record.value)
            kind = event.WhichOneof("event")
            if kind == "loan_application_submitted":
                submitted[event.loan_application_submitted.application_id].add(record.ce_id)
            elif kind in ("loan_approved", "loan_declined"):
                inner = getattr(event, kind)
                decided[inner.application_id].add(record.ce_id)
                if kind == "loan_approved":
                    approved.add(inner.application_id)
            elif kind == "loan_disbursed":
                d = event.loan_disbursed
                if record.ce_id not in disbursed[d.application_id]:
                    rail_refs[d.rail_reference] += 1
                disbursed[d.application_id].add(record.ce_id)
                principal[d.loan_id] = d.principal.minor_units
        paid = await db["rail_payments"].count_documents({"_id": {"$regex": "^disburse:"}})
        settled = (
            all(decided.get(a) for a in applied.values())
            and all(disbursed.get(a) for a in approved)
            and paid == len(principal)
            and not (await Ledger(db).check_invariants()).in_flight
        )
        if settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(3)
    findings.operations += len(parties)
    missing = [p for p in parties if p not in applied]
    if missing:
        findings.fail(
            f"{len(missing)} applications never accepted by the service", lost=len(missing)
        )
    per_party = Counter[str]()
    async for doc in db["applications"].find({}, {"party_id": 1}):
        per_party[doc["party_id"]] += 1
    extra = sum(n - 1 for n in per_party.values() if n > 1)
    if extra:
        findings.fail(f"{extra} duplicate applications in the loan database", duplicated=extra)
    ours = set(applied.values())
    undecided = [a for a in ours if not decided.get(a)]
    if undecided:
        findings.fail(f"{len(undecided)} applications never decided", lost=len(undecided))
    twice = [a for a, ids in decided.items() if len(ids) > 1]
    if twice:
        findings.fail(f"{len(twice)} applications decided more than once", duplicated=len(twice))
    resubmitted = [a for a, ids in submitted.items() if len(ids) > 1]
    if resubmitted:
        findings.fail(
            f"{len(resubmitted)} applications submitted twice", duplicated=len(resubmitted)
        )
    unpaid = [a for a in approved if not disbursed.get(a)]
    if unpaid:
        findings.fail(f"{len(unpaid)} approved loans never disbursed", lost=len(unpaid))
    paid_twice = [a for a, ids in disbursed.items() if len(ids) > 1]
    if paid_twice:
        findings.fail(
            f"{len(paid_twice)} loans disbursed twice (events)", duplicated=len(paid_twice)
        )
    rail = [doc async for doc in db["rail_payments"].find({"_id": {"$regex": "^disburse:"}})]
    by_ref = Counter(doc["rail_reference"] for doc in rail)
    if any(n > 1 for n in by_ref.values()) or any(n > 1 for n in rail_refs.values()):
        findings.fail("a rail reference appears on more than one disbursement", duplicated=1)
    rail_sum = sum(int(doc["amount_minor"]) for doc in rail if doc["status"] == "SETTLED")
    if len(rail) != len(principal) or rail_sum != sum(principal.values()):
        # A payout is keyed by its loan, so it cannot be a second one: either side missing
        # is a disbursement not recorded (paid, no LoanDisbursed) or not paid.
        findings.fail(
            f"rail payouts {len(rail)} ({rail_sum}) != loans disbursed {len(principal)} "
            f"({sum(principal.values())})",
            lost=abs(len(rail) - len(principal)),
        )  # fmt: skip
    report_ = await Ledger(db).check_invariants()
    if not report_.ok:
        findings.fail(f"loan ledger: {report_.problems[:3]}")
    findings.notes.append(
        f"{len(ours)} applications, {len(approved)} approved, {len(principal)} disbursed"
    )


async def check_payroll(
    suite: Suite, mongo: AsyncMongoClient[dict[str, Any]], batches: dict[str, int],
    findings: Findings, *, within_s: float,
) -> None:  # fmt: skip
    """Every batch COMPLETED, every salary paid once at the rail and on the topic, sums equal,
    the ledger balanced and the batches' reserves empty."""
    db, rail_db = mongo[suite.db("payroll")], mongo[suite.db("rail")]
    deadline = time.monotonic() + within_s
    for batch in batches:
        while True:
            doc = await db["batches"].find_one({"_id": batch}, {"state": 1})
            if doc and doc["state"] in ("COMPLETED", "REFUSED"):
                break
            if time.monotonic() > deadline:
                findings.fail(f"batch {batch} not finished (state {doc and doc['state']})")
                break
            await asyncio.sleep(1)
    expected = sum(batches.values())
    findings.operations += expected
    records = await read_topic(suite.urls.kafka, suite.topic("payroll"))
    paid: dict[str, set[str]] = defaultdict(set)
    amounts: dict[str, int] = {}
    for record in records:
        event = payroll_pb2.PayrollEvent.FromString(record.value)
        if event.WhichOneof("event") == "salary_paid":
            s = event.salary_paid
            if s.batch_id in batches:
                paid[s.end_to_end_id].add(record.ce_id)
                amounts[s.end_to_end_id] = s.amount.minor_units
    if len(paid) < expected:
        findings.fail(
            f"{expected - len(paid)} salaries never paid (events)", lost=expected - len(paid)
        )
    twice = [e for e, ids in paid.items() if len(ids) > 1]
    if twice:
        findings.fail(f"{len(twice)} salaries paid twice (events)", duplicated=len(twice))
    rail = [
        d
        async for d in rail_db["rail_sim_payments"].find(
            {}, {"reference": 1, "amount_minor": 1, "status": 1}
        )
    ]
    refs = Counter(d["reference"] for d in rail)
    if any(n > 1 for n in refs.values()):
        findings.fail("a rail reference is on two salaries", duplicated=1)
    settled = [d for d in rail if d["status"] == "ACSC"]
    rail_sum = sum(int(d["amount_minor"]) for d in settled)
    if len(settled) != expected or rail_sum != SALARY_MINOR * expected:
        diff = len(settled) - expected
        findings.fail(
            f"rail settled {len(settled)} salaries ({rail_sum}), expected {expected} "
            f"({SALARY_MINOR * expected})",
            lost=max(0, -diff), duplicated=max(0, diff),
        )  # fmt: skip
    if sum(amounts.values()) != SALARY_MINOR * len(amounts):
        findings.fail("SalaryPaid amounts do not add up")
    ledger = Ledger(db)
    report_ = await ledger.check_invariants()
    if not report_.ok:
        findings.fail(f"payroll ledger: {report_.problems[:3]}")
    for batch in batches:
        reserve = await ledger.balance(f"payroll:batch:{batch}:reserve")
        if reserve.minor_units != 0:
            findings.fail(f"batch {batch}: reserve holds {reserve.minor_units} after completion")
    findings.notes.append(f"{len(paid)} of {expected} salaries paid")


async def check_groups(suite: Suite, findings: Findings, *, within_s: float) -> None:
    behind = await wait_caught_up(suite.urls.kafka, suite.groups, within_s)
    if behind:
        findings.fail(f"consumer groups not caught up: {behind}")


async def until(
    probe: Callable[[], Awaitable[bool]], *, within_s: float, interval: float = 0.2
) -> float:
    """Await ``probe()`` until true; the seconds it took (raises TimeoutError after ``within_s``)."""
    began = time.monotonic()
    while not await probe():
        if time.monotonic() - began > within_s:
            raise TimeoutError(f"not recovered within {within_s} s")
        await asyncio.sleep(interval)
    return time.monotonic() - began
