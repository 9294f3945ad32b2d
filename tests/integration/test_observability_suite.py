"""The observability contract of a running suite (docs/observability.md), with every service a
separate process as ``make up`` runs them: ``engines.py start`` on the session's engines, with
the local Jaeger and Prometheus.

- A partner's 310 journey through the gateway is one trace in Jaeger, across the gateway, the
  HTTP services, the outbox and Kafka, both ways between loan and the signals worker, down to
  the disbursement, and none of its spans holds the customer's phone or ID number.
- ``ZcConsumerGroupLag`` fires for group ``loan`` when the loan service is down while identity
  keeps writing the events it consumes (the lag exporter reads the lag from the broker).
- Every metric the alert rules and dashboards use is exported by some process of the suite.

The services listen on their fixed ports of ``deploy/local/services.toml`` (8001-8004, 8010,
8011, 6066, 8051, 50051, 9308), so nothing else may hold them. Started only when they do not
all answer already (a ``make up`` of the same cache is reused), and then stopped at the end
(``engines.py stop --services-only``; the engines stay).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
import httpx
import pyotp
import pytest
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from deploy.tools.prometheus_rule import metric_names_in_rules_and_dashboards
from tests.integration.conftest import ObservabilityEngines
from tests.integration.harness import RUN_ID, Engines, engines_started, local_home
from tests.integration.test_identity_service import PASSWORD, Person
from zerocontact.gateway import certs
from zerocontact.gateway.v1 import identity_pb2, loan_pb2
from zerocontact.partner_client import PartnerClient, cny, new_key

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "deploy" / "local" / "services.toml"
ALL_SCOPES = [
    "identity:write", "identity:read", "loans:write", "loans:read", "payroll:write",
    "payroll:read", "signals:read",
]  # fmt: skip
IDENTITY_URL = "http://127.0.0.1:8001"
GATEWAY_TARGET = "127.0.0.1:50051"
# ZcConsumerGroupLag fires above 100 records of one topic (deploy/monitoring/alerts.yaml).
LAG_THRESHOLD = 100
PROPAGATOR = TraceContextTextMapPropagator()
# The signals worker's risk assessment, consumed by loan: (publish span, process span).
RISK_HOP = ("signals.risk.v1 publish", "signals.risk.v1 process")
T = TypeVar("T")


@dataclass
class RunningSuite:
    """The services of services.toml running under this cache's supervisord."""

    engines: Engines
    observability: ObservabilityEngines
    home: Path
    services: list[dict[str, Any]]
    shared: dict[str, Any] = field(default_factory=dict)

    def secrets(self) -> dict[str, str]:
        secrets: dict[str, str] = json.loads((self.home / "run" / "local-secrets.json").read_text())
        return secrets

    def service(self, name: str) -> dict[str, Any]:
        return next(service for service in self.services if service["name"] == name)

    def supervisor(self) -> Any:
        """The localsuite's XML-RPC client of this cache's supervisord."""
        sys.path.insert(0, str(ROOT / "deploy" / "local"))
        from localsuite.layout import Layout
        from localsuite.supervisor import Supervisor

        return Supervisor(Layout.from_env())


@pytest.fixture(scope="module")
def suite(engines: Engines, observability_engines: ObservabilityEngines) -> Iterator[RunningSuite]:
    if engines.origin != "embedded":
        # engines.py runs the services next to the engines of its own cache only.
        pytest.skip(f"the suite runs on the embedded engines, not {engines.origin} ones")

    def refused(error: str) -> NoReturn:
        pytest.fail(f"the suite did not start: {error}")

    services = tomllib.loads(SERVICES.read_text())["service"]
    # the services only at the end: the session's engines serve the other modules
    with engines_started(["--if-needed", "--timeout", "180"], ["--services-only"], refused=refused):
        yield RunningSuite(engines, observability_engines, local_home(), services)


async def _eventually(
    probe: Callable[[], Awaitable[T | None]], *, within_s: float, interval: float = 1.0
) -> T | None:
    """``probe()``'s first truthy result within ``within_s`` (None when there was none)."""
    deadline = time.monotonic() + within_s
    while True:
        result = await probe()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(interval)


# -- the partner --------------------------------------------------------------------------


@dataclass
class Partner:
    partner_id: str
    credential: str
    ca: bytes
    cert: bytes
    key: bytes


def register_partner(suite: RunningSuite) -> Partner:
    """A partner with every scope, the way an operator registers one against ``make up``:
    a certificate from the suite's development CA and ``zerocontact gateway partners
    register`` with the gateway's own settings (services.toml and the local secrets)."""
    if "partner" in suite.shared:
        partner: Partner = suite.shared["partner"]
        return partner
    partner_id = f"obs-{RUN_ID}-{uuid.uuid4().hex[:6]}"
    certs_dir = suite.home / "gateway-certs"
    ca = certs.load(certs_dir, "ca")
    issued = certs.issue_partner(ca, partner_id)
    gateway = suite.service("gateway")
    secrets = suite.secrets()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": suite.engines.kafka_bootstrap,
        "MONGODB_URI": suite.engines.mongodb_uri,
        **{k: v.replace("{home}", str(suite.home)) for k, v in gateway["env"].items()},
        **{name: secrets[name] for name in gateway["secrets"]},
    }
    scopes = [arg for scope in ALL_SCOPES for arg in ("--scope", scope)]
    out = subprocess.run(
        [sys.executable, "-m", "zerocontact.platform.cli", "gateway", "partners", "register",
         partner_id, *scopes, "--rate", "1000"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    match = re.search(r"credential \(shown once\): (\S+)", out.stdout)
    assert match, out.stdout
    partner = Partner(partner_id, match.group(1), ca.cert_pem, issued.cert_pem, issued.key_pem)
    suite.shared["partner"] = partner
    return partner


class TracedPartnerClient(PartnerClient):
    """A partner that sends its own trace context (``traceparent``) on every call."""

    def metadata(
        self, *, token: str | None = None, key: str | None = None
    ) -> tuple[tuple[str, str], ...]:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)  # the active span: the partner's journey span
        return (*super().metadata(token=token, key=key), *carrier.items())


def connect(partner: Partner) -> TracedPartnerClient:
    client = TracedPartnerClient.connect(
        GATEWAY_TARGET,
        ca=partner.ca,
        cert=partner.cert,
        key=partner.key,
        credential=partner.credential,
        server_name="localhost",
    )
    assert isinstance(client, TracedPartnerClient)
    return client


async def enrol_totp(http: httpx.AsyncClient, party_id: str, token: str, device: str) -> pyotp.TOTP:
    """The customer's own app enrols an authenticator with identity (not through the gateway,
    and not in the partner's trace)."""
    headers = {"Authorization": f"Bearer {token}", "X-Device-Id": device}
    r = await http.post(
        f"/v1/customers/{party_id}/factors/totp", headers={**headers, "Idempotency-Key": new_key()}
    )
    assert r.status_code == 201, r.text
    totp = pyotp.parse_uri(r.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    r = await http.post(
        f"/v1/customers/{party_id}/factors/totp/confirmation",
        json={"code": totp.now()},
        headers={**headers, "Idempotency-Key": new_key()},
    )
    assert r.status_code == 200, r.text
    return totp


async def journey_310(zc: PartnerClient, person: Person) -> str:
    """Register, authenticate (password + TOTP), verify, apply, accept: returns the loan id."""
    party = await zc.register_customer(
        identity_pb2.RegisterCustomerRequest(**person.body(date_of_birth=person.birth.isoformat()))
    )
    device = f"device-{uuid.uuid4().hex[:10]}"
    first = await zc.start_authentication(person.phone, PASSWORD, device_id=device)
    # The customer's app has no part in the partner's trace (nor does an httpx instrumentation
    # another test of this process may have installed).
    outside = otel_context.attach(otel_context.Context())
    try:
        async with httpx.AsyncClient(base_url=IDENTITY_URL, timeout=10) as http:
            totp = await enrol_totp(http, party.party_id, first.access_token, device)
    finally:
        otel_context.detach(outside)
    again = await zc.start_authentication(person.phone, PASSWORD, device_id=device)
    aal2 = await zc.complete_authentication(
        again.access_token, identity_pb2.SECOND_FACTOR_TOTP, totp.at(time.time() + 30),
        device_id=device,
    )  # fmt: skip
    assert aal2.assurance_level == identity_pb2.ASSURANCE_LEVEL_AAL2
    token = aal2.access_token
    verified = await zc.verify_customer(party.party_id, token=token)
    assert verified.kyc_level == identity_pb2.KYC_LEVEL_VERIFIED
    request = loan_pb2.ApplyForLoanRequest(
        party_id=party.party_id, product_id="merchant-310", amount=cny(5_000_000),
        term_months=12, purpose="inventory", device_id=device,
    )  # fmt: skip
    key = new_key()  # one application, however many attempts it takes
    deadline = time.monotonic() + 30
    while True:  # the loan service learns of the verified party from identity's events
        try:
            application = await zc.apply_for_loan(request, token=token, key=key)
            break
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    loan_id = ""
    async for update in zc.watch_loan_application(application.application_id, token=token):
        if update.application.state == "APPROVED" and not loan_id:
            loan_id = (await zc.accept_loan_offer(application.application_id, token=token)).loan_id
        if update.terminal:
            assert update.loan.state == "DISBURSED", update
            return update.loan.loan_id or loan_id
    raise AssertionError("the watch ended before the loan was disbursed")


# -- Jaeger -------------------------------------------------------------------------------


@dataclass
class Trace:
    """One trace of Jaeger's query API (v1 JSON)."""

    raw: dict[str, Any]

    @property
    def spans(self) -> list[dict[str, Any]]:
        spans: list[dict[str, Any]] = self.raw["spans"]
        return spans

    def service(self, span: dict[str, Any]) -> str:
        return str(self.raw["processes"][span["processID"]]["serviceName"])

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        by_id = {s["spanID"]: s for s in self.spans}
        for ref in span.get("references", []):
            if ref["refType"] == "CHILD_OF" and ref["spanID"] in by_id:
                return by_id[ref["spanID"]]
        return None

    def orphans(self) -> list[tuple[str, str]]:
        """Spans whose parent is not in the trace (the partner's own span has none)."""
        return [
            (self.service(s), s["operationName"])
            for s in self.spans
            if self.parent(s) is None and not self.service(s).startswith("partner-")
        ]

    def services(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for span in self.spans:
            counts[self.service(span)] = counts.get(self.service(span), 0) + 1
        return counts

    def names(self, service: str | None = None) -> set[str]:
        return {
            s["operationName"] for s in self.spans if service is None or self.service(s) == service
        }

    def cross_kafka(self, producer: str, consumer: str) -> list[tuple[str, str]]:
        """(publish span, process span) pairs: a ``consumer`` span whose parent is a
        ``producer`` ``… publish`` span."""
        pairs = []
        for span in self.spans:
            parent = self.parent(span)
            if (
                parent is not None
                and self.service(span) == consumer
                and self.service(parent) == producer
                and parent["operationName"].endswith(" publish")
            ):
                pairs.append((parent["operationName"], span["operationName"]))
        return pairs

    def texts(self) -> list[str]:
        """Every attribute and log (span event) value of every span and process."""
        values: list[str] = []
        for span in self.spans:
            values += [str(tag["value"]) for tag in span.get("tags", [])]
            values += [str(f["value"]) for log in span.get("logs", []) for f in log["fields"]]
            values.append(span["operationName"])
        for process in self.raw["processes"].values():
            values += [str(tag["value"]) for tag in process.get("tags", [])]
        return values


def _complete(found: Trace) -> bool:
    services = found.services()
    names = found.names()
    return (
        {"gateway", "identity", "loan", "signals"} <= services.keys()
        and any(name.endswith(" publish") for name in names)
        and any(name.endswith(" process") for name in names)
        and "loan.disbursement" in names
        and bool(found.cross_kafka("loan", "signals"))
        and RISK_HOP in found.cross_kafka("signals", "loan")
        and not found.orphans()
    )


async def test_a_partner_journey_is_one_trace_across_every_process_and_kafka(
    suite: RunningSuite,
) -> None:
    partner = register_partner(suite)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"partner-{partner.partner_id}"})
    )
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=suite.observability.otlp_endpoint, insecure=True)
        )
    )
    tracer = provider.get_tracer("tests.integration.partner")
    person = Person()
    try:
        async with connect(partner) as zc:
            with tracer.start_as_current_span("partner 310 journey", kind=SpanKind.CLIENT) as root:
                await journey_310(zc, person)
        trace_id = format(root.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()  # exports the journey span

    async with httpx.AsyncClient(timeout=10) as http:

        async def fetched() -> Trace | None:
            r = await http.get(f"{suite.observability.jaeger_url}/api/traces/{trace_id}")
            if r.status_code != 200 or not r.json().get("data"):
                return None
            return Trace(r.json()["data"][0])

        async def complete() -> Trace | None:
            found = await fetched()
            return found if found is not None and _complete(found) else None

        # Services export in batches (every 5 s by default).
        found = await _eventually(complete, within_s=45) or await fetched()
    assert found is not None, f"trace {trace_id} is not in Jaeger"
    services = found.services()
    shape = {
        "services": services,
        "loan->signals": sorted(set(found.cross_kafka("loan", "signals"))),
        "signals->loan": sorted(set(found.cross_kafka("signals", "loan"))),
    }
    print(f"trace {trace_id}: {len(found.spans)} spans, {json.dumps(shape)}")
    assert {"gateway", "identity", "loan", "signals"} <= services.keys(), shape
    assert services.get(f"partner-{partner.partner_id}") == 1, shape
    names = found.names()
    assert any(n.endswith(" publish") for n in names), names
    assert any(n.endswith(" process") for n in names), names
    assert "loan.disbursement" in found.names("loan"), found.names("loan")
    # One trace: every span but the partner's own has its parent in it.
    assert not found.orphans(), found.orphans()
    # Across Kafka, both ways: loan's events -> the signals worker, its risk -> loan.
    assert found.cross_kafka("loan", "signals"), shape
    assert RISK_HOP in found.cross_kafka("signals", "loan"), shape
    # The gateway's server spans continue the partner's span.
    root_id = next(
        s["spanID"] for s in found.spans if found.service(s) == f"partner-{partner.partner_id}"
    )
    assert any(
        found.service(s) == "gateway" and (found.parent(s) or {}).get("spanID") == root_id
        for s in found.spans
    )
    # No personal data in any attribute or log of the trace.
    national = person.phone.removeprefix("+86")
    for text in found.texts():
        assert national not in text and person.rid not in text, text


# -- metrics ------------------------------------------------------------------------------


async def test_every_metric_of_the_rules_and_dashboards_is_exported(suite: RunningSuite) -> None:
    wanted = {
        name
        for name in metric_names_in_rules_and_dashboards()
        if not name.startswith("zc:") and name != "up"
    }
    wanted = {re.sub(r"_(bucket|count|sum)$", "", name) for name in wanted}
    exported: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for service in suite.services:
            if not service.get("metrics"):
                continue
            r = await http.get(service["metrics"])
            assert r.status_code == 200, (service["name"], r.status_code)
            for name in re.findall(r"^# TYPE (\S+) ", r.text, flags=re.MULTILINE):
                exported.setdefault(name, service["name"])
    assert "zc_consumer_group_lag" in exported, "the lag exporter does not run in the suite"
    missing = sorted(wanted - exported.keys())
    assert not missing, f"no process of the suite exports {missing}"


# -- alerts -------------------------------------------------------------------------------


async def _register_customers(count: int) -> None:
    """``count`` customers through identity's HTTP API: each writes identity events."""
    async with httpx.AsyncClient(base_url=IDENTITY_URL, timeout=30) as http:
        made = 0

        async def one() -> None:
            nonlocal made
            for _ in range(3):  # a random ID number may already be taken in a long-lived cache
                headers = {"Idempotency-Key": new_key(), "X-Device-Id": "device-lag-test"}
                r = await http.post("/v1/customers", json=Person().body(), headers=headers)
                if r.status_code == 201:
                    made += 1
                    return
                assert r.status_code == 409, r.text

        gate = asyncio.Semaphore(6)

        async def bounded() -> None:
            async with gate:
                await one()

        await asyncio.gather(*(bounded() for _ in range(count)))
    assert made == count


async def _loan_lag(http: httpx.AsyncClient, prometheus: str) -> float | None:
    query = 'sum(max by (topic, partition) (zc_consumer_group_lag{group="loan"}))'
    r = await http.get(f"{prometheus}/api/v1/query", params={"query": query})
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def test_consumer_lag_alert_fires_while_loan_is_down(suite: RunningSuite) -> None:
    prometheus = suite.observability.prometheus_url
    supervisor = suite.supervisor()  # supervisorctl, as a developer would stop one program
    stopped = supervisor.ctl("stop", "loan")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    try:
        await _register_customers(LAG_THRESHOLD + 20)
        async with httpx.AsyncClient(timeout=10) as http:

            async def firing() -> dict[str, Any] | None:
                r = await http.get(f"{prometheus}/api/v1/alerts")
                for alert in r.json()["data"]["alerts"]:
                    labels = alert["labels"]
                    if (
                        labels["alertname"] == "ZcConsumerGroupLag"
                        and labels.get("group") == "loan"
                        and alert["state"] == "firing"
                    ):
                        return dict(alert)
                return None

            # for: 1m, after the lag exporter (15 s), the scrape (5 s) and the evaluation (5 s).
            alert = await _eventually(firing, within_s=180, interval=2)
            lag = await _loan_lag(http, prometheus)
            assert alert is not None, f"ZcConsumerGroupLag did not fire for loan (lag {lag})"
            assert alert["labels"]["topic"] == "identity.events.v1", alert
            assert float(alert["value"]) > LAG_THRESHOLD, alert
    finally:
        started = supervisor.ctl("start", "loan")
        assert started.returncode == 0, started.stdout + started.stderr
    async with httpx.AsyncClient(timeout=10) as http:
        health = suite.service("loan")["health"]

        async def healthy() -> bool:
            try:
                return (await http.get(health)).status_code == 200
            except httpx.TransportError:
                return False

        assert await _eventually(healthy, within_s=60, interval=0.5), "loan did not come back"

        async def caught_up() -> bool:
            return await _loan_lag(http, prometheus) == 0

        # Back to work: the restarted consumer commits what it missed.
        assert await _eventually(caught_up, within_s=60, interval=1), await _loan_lag(
            http, prometheus
        )
