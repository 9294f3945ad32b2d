"""Scenario 7, fuzzing with credentials: one ``CHAOS-ROW`` per target.

    python -m tests.chaos.fuzz [--quick] [--only http,grpc,parsers]

* **HTTP** (``http:<service>``): schemathesis generates requests from each service's own
  OpenAPI (identity, loan, payroll, marketing; the signals worker's pages, which have no
  OpenAPI, from a four-route description here) and sends them over real HTTP with valid
  credentials: the back office's operator key, and the bearer token of a real customer (an
  employer's representative for payroll) made through identity with two factors (AAL2, so the
  step-up routes are reached). Path parameters are the world's real ids in most cases (the
  generated value otherwise), so handlers run past the lookups. A failure is a 5xx or a
  response that does not match its documented schema.
* **gRPC** (``grpc:gateway``): every RPC of the gateway's services, from the contracts'
  descriptors, is fed generated messages (every field, nested messages, unknown enum values,
  the world's real ids among the strings) with the partner's credential, a customer token and
  an idempotency key: a failure is a status ``INTERNAL`` or ``UNKNOWN``.
* **parsers** (``parser:<name>``): atheris (coverage-guided, libFuzzer) on the payroll CSV,
  the pain.001 import, CloudEvents headers and receipt verification, each for a fixed number of
  runs in its own process (``tests/chaos/parser_targets.py``): a failure is an uncaught
  exception other than the parser's documented error.

``operations`` is the number of generated cases, ``lost`` the failures found (``duplicated``
does not apply: 0). Exit 1 when any row lost something (named on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import schemathesis
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.chaos.security_world import (
    OPERATOR_KEY,
    World,
    engines_from_env,
    running_world,
)
from zerocontact.gateway.v1 import (
    identity_pb2,
    loan_pb2,
    payroll_pb2,
    signals_pb2,
    webhooks_pb2,
)
from zerocontact.partner_client import PartnerClient, new_key

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "fuzz"


@dataclass
class Budget:
    http_examples: int  # per operation
    grpc_examples: int  # per RPC
    parser_runs: int  # per parser


FULL = Budget(http_examples=150, grpc_examples=150, parser_runs=200_000)
QUICK = Budget(http_examples=4, grpc_examples=4, parser_runs=4_000)


@dataclass
class Row:
    target: str
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    detail: str = ""
    transient: int = 0  # documented retryable 503s (party_not_yet_known), not failures
    started: float = field(default_factory=time.monotonic)

    def emit(self) -> None:
        distinct = sorted(set(self.failures))
        row = {
            "scenario": f"{SCENARIO}:{self.target}",
            "faults": self.operations,
            "operations": self.operations,
            "lost": len(self.failures),
            "duplicated": 0,
            "recover_s": None,
            "detail": (
                f"{time.monotonic() - self.started:.0f} s; "
                + self.detail
                + (
                    f"; {self.transient} retryable 503 party_not_yet_known"
                    if self.transient
                    else ""
                )
                + ("; found: " + " | ".join(distinct[:3]) if distinct else "")
            )[:400],
        }
        print("CHAOS-ROW " + json.dumps(row, ensure_ascii=False), flush=True)
        for failure in distinct:
            print(f"fuzz {self.target}: {failure}", file=sys.stderr)


# -- HTTP ------------------------------------------------------------------------------------

SIGNALS_SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "signals worker pages", "version": "1"},
    "paths": {
        "/healthz": {"get": {"responses": {"200": {"description": "live"}}}},
        "/readyz": {"get": {"responses": {"200": {"description": "ready"}}}},
        "/metrics": {"get": {"responses": {"200": {"description": "Prometheus"}}}},
        "/signals/v1/parties/{party_id}/features": {
            "get": {
                "parameters": [
                    {
                        "name": "party_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": {"description": "features"}},
            }
        },
    },
}


def _path_ids(world: World) -> dict[str, list[str]]:
    a = world.holdings["shop-a"]
    return {
        "customer_id": [a.customer.party_id],
        "party_id": [a.customer.party_id, a.enterprise_id],
        "enterprise_id": [a.enterprise_id],
        "employer_id": [a.enterprise_id],
        "application_id": [a.application_id],
        "loan_id": [a.loan_id],
        "batch_id": [a.batch_id],
        "product_id": ["merchant-310"],
    }


def fuzz_openapi(
    target: str,
    spec: dict[str, Any],
    base_url: str,
    headers: dict[str, str],
    ids: dict[str, list[str]],
    examples: int,
) -> Row:
    """Generate ``examples`` cases per operation of ``spec`` and check each response."""
    row = Row(target, detail="schemathesis, real HTTP, operator key + AAL2 customer token")
    schema = schemathesis.openapi.from_dict(spec)
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=examples, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
        )  # fmt: skip
        @given(case=operation.as_strategy(), rng=st.randoms(use_true_random=False))
        def run(case: Any, rng: random.Random) -> None:
            label = case.operation.label
            row.operations += 1
            for name in list(case.path_parameters or {}):
                if name in ids and rng.random() < 0.7:
                    case.path_parameters[name] = rng.choice(ids[name])
            sent = dict(headers)
            if case.headers and "Idempotency-Key" in case.headers and rng.random() < 0.7:
                sent["Idempotency-Key"] = new_key()  # mostly a valid key: reach the handler
            try:
                response = case.call(base_url=base_url, headers=sent, timeout=30)
            except Exception as exc:  # the connection itself failed: the server broke
                row.failures.append(f"{label}: {type(exc).__name__}")
                return
            if response.status_code == 503 and "party_not_yet_known" in response.text:
                # architecture.md decision 19: a party the service has not heard of is a
                # retryable 503 with retry_after_s after a bounded wait, by design
                row.transient += 1
                return
            try:
                case.validate_response(
                    response, checks=[not_a_server_error, response_schema_conformance]
                )
            except BaseException as exc:  # the checks raise their failures (a group of them)
                if not isinstance(exc, Exception | BaseExceptionGroup):
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                row.failures.append(f"{label} -> {response.status_code}: {first[:120]}")

        run()
    row.emit()
    return row


def http_rows(world: World, budget: Budget) -> list[Row]:
    suite = world.suite
    a = world.holdings["shop-a"]
    identity_operator = suite.identity.app.state.ctx.settings.operator_key.get_secret_value()
    ids = _path_ids(world)
    common = {"X-Operator-Id": "chaos-operator", "X-Device-Id": a.customer.device_id}
    targets: list[tuple[str, Any, str, dict[str, str]]] = [
        ("identity", suite.identity.app, suite.identity.url,
         {"Authorization": f"Bearer {a.customer.token}", "X-Operator-Key": identity_operator}),
        ("loan", suite.loan.app, suite.loan.url,
         {"Authorization": f"Bearer {a.customer.token}", "X-Operator-Key": OPERATOR_KEY}),
        ("payroll", suite.payroll.app, suite.payroll.url,
         {"Authorization": f"Bearer {a.representative.token}"}),
        ("marketing", world.marketing.app, world.marketing.url, {"X-Operator-Key": OPERATOR_KEY}),
    ]  # fmt: skip
    rows = []
    for name, app, url, auth in targets:
        rows.append(
            fuzz_openapi(
                f"http:{name}", app.openapi(), url, {**common, **auth}, ids, budget.http_examples
            )
        )
    if suite.signals_port:
        rows.append(
            fuzz_openapi(
                "http:signals", SIGNALS_SPEC, f"http://127.0.0.1:{suite.signals_port}", {},
                ids, budget.http_examples,
            )
        )  # fmt: skip
    return rows


# -- gRPC ------------------------------------------------------------------------------------

SERVICES = [
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    loan_pb2.DESCRIPTOR.services_by_name["LoanService"],
    payroll_pb2.DESCRIPTOR.services_by_name["PayrollService"],
    signals_pb2.DESCRIPTOR.services_by_name["SignalService"],
    webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"],
]
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(f: FieldDescriptor, pool: list[str]) -> st.SearchStrategy[Any]:
    if f.type in _INT_RANGES:
        low, high = _INT_RANGES[f.type]
        return st.one_of(st.integers(-3, 10**7), st.integers(low, high))
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 1000))
    return st.one_of(st.sampled_from(pool), st.text(max_size=48))  # strings


@st.composite
def _message(draw: Any, desc: Descriptor, pool: list[str], depth: int = 0) -> Message:
    message = GetMessageClass(desc)()
    _fill(draw, message, desc, pool, depth)
    return message


def _fill(draw: Any, message: Message, desc: Descriptor, pool: list[str], depth: int) -> None:
    for f in desc.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(message, f.name)
        is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
        if is_map:
            key_f, value_f = (
                f.message_type.fields_by_name["key"],
                f.message_type.fields_by_name["value"],
            )
            for _ in range(draw(st.integers(0, 2))):
                key = draw(_scalar(key_f, pool))
                if value_f.message_type is not None:
                    if depth < 3:
                        _fill(draw, target[key], value_f.message_type, pool, depth + 1)
                else:
                    target[key] = draw(_scalar(value_f, pool))
        elif f.is_repeated:
            for _ in range(draw(st.integers(0, 3))):
                if f.message_type is not None:
                    if depth < 3:
                        _fill(draw, target.add(), f.message_type, pool, depth + 1)
                else:
                    target.append(draw(_scalar(f, pool)))
        elif f.message_type is not None:
            if depth < 3:
                _fill(draw, target, f.message_type, pool, depth + 1)
                target.SetInParent()
        else:
            setattr(message, f.name, draw(_scalar(f, pool)))


def _serialize(message: Message) -> bytes:
    # The message's own method: ``Message.SerializeToString`` is the abstract base's, which
    # raises NotImplementedError, so gRPC sent nothing and logged "Exception serializing
    # message!" for most generated requests.
    return message.SerializeToString()


def fuzz_grpc(
    world: World, client: PartnerClient, loop: asyncio.AbstractEventLoop, examples: int
) -> Row:
    row = Row("grpc:gateway", detail="every RPC from the descriptors, partner credential, token")
    a, b = world.holdings["shop-a"], world.holdings["bank-b"]
    pool = [
        a.customer.party_id, a.application_id, a.loan_id, a.enterprise_id, a.batch_id,
        b.customer.party_id, b.loan_id, b.batch_id, "merchant-310", "CNY", a.customer.person.phone,
        a.customer.device_id, "https://example.com/hook",
    ]  # fmt: skip
    tokens = [a.customer.token, a.representative.token, a.aal1_token, ""]
    rng = random.Random(11)

    def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=60)

    async def call(method: MethodDescriptor, request: Message) -> grpc.StatusCode:
        path = f"/{method.containing_service.full_name}/{method.name}"
        response_class = GetMessageClass(method.output_type)
        md = list(client.metadata(token=rng.choice(tokens) or None, key=new_key()))
        try:
            if method.server_streaming:
                stream = client.channel.unary_stream(
                    path, request_serializer=_serialize,
                    response_deserializer=response_class.FromString,
                )(request, metadata=md, timeout=3)  # fmt: skip
                async for _ in stream:
                    pass
            else:
                await client.channel.unary_unary(
                    path, request_serializer=_serialize,
                    response_deserializer=response_class.FromString,
                )(request, metadata=md, timeout=20)  # fmt: skip
        except grpc.aio.AioRpcError as err:
            return err.code()
        return grpc.StatusCode.OK

    for service in SERVICES:
        for method in service.methods:

            @settings(
                max_examples=examples, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.generate],
            )  # fmt: skip
            @given(request=_message(method.input_type, pool), method=st.just(method))
            def run(request: Message, method: MethodDescriptor) -> None:
                row.operations += 1
                code = run_sync(call(method, request))
                if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    row.failures.append(f"{method.full_name}: {code.name}")

            run()
    row.emit()
    return row


# -- parsers ---------------------------------------------------------------------------------

PARSERS = ("payroll-csv", "pain001", "cloudevents", "receipt")


def fuzz_parser(name: str, runs: int, work: Path) -> Row:
    row = Row(f"parser:{name}", detail=f"atheris, {runs} runs, coverage-guided from valid seeds")
    corpus = work / name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "tests.chaos.parser_targets"]
    subprocess.run([*run, "--seed", name, str(corpus)], cwd=ROOT, env=env, check=True)
    done = subprocess.run(
        [*run, name, str(corpus), f"-runs={runs}", f"-artifact_prefix={work}/crash-{name}-",
         "-max_len=8192", "-timeout=30", "-rss_limit_mb=4096"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    counted = re.search(r"Done (\d+) runs", done.stderr)
    row.operations = int(counted.group(1)) if counted else 0
    if done.returncode != 0:
        # atheris prints the exception's own line under this banner (``struct.error`` too), on
        # stdout; libFuzzer prints the input on stderr, kept here to reproduce the crash with
        # ``python -m tests.chaos.parser_targets <name> <file>``
        output = done.stdout + done.stderr
        crash = re.search(r"=== Uncaught Python exception: ===\n([^\n]+)", output)
        crash = crash or re.search(r"^(\w+(Error|Exception)[^\n]*)$", output, re.M)
        found = crash.group(1)[:160] if crash else f"exit {done.returncode}"
        sample = re.search(r"^Base64: (\S+)$", output, re.M)
        row.failures.append(
            f"{found} (input, base64: {sample.group(1)[:400]})" if sample else found
        )
        row.operations = row.operations or len(re.findall(r"^#\d+", done.stderr, re.M))
    row.emit()
    return row


# -- main ------------------------------------------------------------------------------------


async def services_rows(budget: Budget, parts: set[str]) -> list[Row]:
    with engines_from_env() as engines:
        async with running_world(engines) as world:
            loop = asyncio.get_running_loop()
            rows: list[Row] = []
            if "http" in parts:
                rows += await asyncio.to_thread(http_rows, world, budget)
            if "grpc" in parts:
                async with world.client("shop-a") as client:
                    rows.append(
                        await asyncio.to_thread(
                            fuzz_grpc, world, client, loop, budget.grpc_examples
                        )
                    )
            return rows


def quiet_services() -> None:
    """The services run in this process: their JSON logs would share the rows' stdout."""
    for service in ("IDENTITY", "LOAN", "PAYROLL", "MARKETING", "GATEWAY", "SIGNALS"):
        os.environ.setdefault(f"ZC_{service}_LOG_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> int:
    quiet_services()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (CI)")
    parser.add_argument("--only", default="http,grpc,parsers", help="comma-separated parts")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else FULL
    parts = set(args.only.split(","))
    started = time.monotonic()
    rows: list[Row] = []
    if "parsers" in parts:
        with tempfile.TemporaryDirectory(prefix="zc-fuzz-") as work:
            for name in PARSERS:
                rows.append(fuzz_parser(name, budget.parser_runs, Path(work)))
    if parts & {"http", "grpc"}:
        rows += asyncio.run(services_rows(budget, parts))
    failed = [r.target for r in rows if r.failures]
    print(f"fuzz: {len(rows)} targets in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if failed:
        print(f"fuzz: failures in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
