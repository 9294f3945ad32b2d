"""What the partner gateway adds: unary GetLoan through the gateway (gRPC over mTLS, partner
credential, scope, rate limit, ownership check, audit record, then the loan service's HTTP
API) against the same read straight from the loan service's HTTP API, in the same run.

What runs (all real, on the engines of ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI``):
* the loan service as a subprocess (uvicorn), as bench/loan_310.py starts it, and its
  in-bench LOW-band risk responder to get one loan approved, accepted and disbursed;
* the gateway as a subprocess (``python -m zerocontact.gateway``) with a development CA, its
  server certificate and one partner (certificate + credential) issued for the run;
* the bench client in this process: aiohttp for the direct reads (the gateway's own HTTP
  client), grpc.aio for the gateway.

Latency: sequential calls, alternating blocks of direct and gateway reads so both see the same
machine; p50/p99 of each and the difference. Saturation: ``--concurrency`` callers for
``--seconds`` against each; calls per second. For the gateway, the saturation phases use ghz
(Go; ``deploy/tools/install.sh`` puts it in ``.cache/tools/bin``) over mTLS and server
reflection when it is installed — a Python grpc.aio client at 64 callers burns most of a core
itself — else the grpc.aio client; the output names the load generator. The direct HTTP
saturation always uses aiohttp. Per phase, the CPU time each server process spent per call is
printed too: unlike calls/s it hardly depends on what else the shared machine runs. The load
average is printed at the start and the end.

Shared rate limit: sequential ListLoanProducts (the service reads no database, so the
limiter's share shows) through three gateways on the same database, in alternating blocks:
the default shared limiter (MongoDB windows; this partner's rate claims 20 slots per write),
the shared limiter with a write for every call (``ZC_GATEWAY_RATE_LIMIT_MAX_CHUNK=1``: what a
partner under 100 calls/s costs), and the per-instance limiter (``ZC_GATEWAY_RATE_LIMIT=local``,
no database). p50/p99 of each and what each shared mode adds. The last line is JSON.

    .venv/bin/python bench/gateway_overhead.py [--calls 2000] [--concurrency 64] [--seconds 10]
        [--load-generator auto|ghz|python] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from pymongo import AsyncMongoClient

from zerocontact.gateway import certs
from zerocontact.gateway.store import OwnershipStore, PartnerStore
from zerocontact.gateway.v1 import audit_pb2, loan_pb2, loan_pb2_grpc
from zerocontact.identity.domain.authentication import Aal, Method
from zerocontact.identity.tokens import AccessGrant, SigningKeys, access_claims

ROOT = Path(__file__).resolve().parents[1]
GHZ = ROOT / ".cache" / "tools" / "bin" / "ghz"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


loan310 = _load("loan_310")


def pct(ordered: list[float], fraction: float) -> float:
    return float(loan310.percentile(ordered, fraction))


def loadavg() -> str:
    """The load average line (the machine is shared: say how busy it was)."""
    return Path("/proc/loadavg").read_text().strip()


def start_gateway(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The gateway as a subprocess."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "zerocontact.gateway"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def make_loan(run: Any, loan_url: str, token: str, party: str) -> str:
    """Apply, wait for the responder's approval, accept: the disbursed loan's id."""
    async with aiohttp.ClientSession(base_url=loan_url) as http:
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "party_id": party, "product_id": "merchant-310", "amount": "10000.00",
            "currency": "CNY", "term_months": 12, "purpose": "bench", "device_id": "bench-1",
        }  # fmt: skip
        for _ in range(200):
            async with http.post(
                "/v1/applications",
                json=body,
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            ) as r:
                if r.status == 202:
                    application = (await r.json())["application_id"]
                    break
            await asyncio.sleep(0.2)
        else:
            raise TimeoutError("the loan service never learned the party")
        for _ in range(300):
            async with http.get(f"/v1/applications/{application}", headers=headers) as r:
                if (await r.json())["state"] == "APPROVED":
                    break
            await asyncio.sleep(0.1)
        async with http.post(
            f"/v1/applications/{application}/acceptance",
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        ) as r:
            loan = await r.json()
            assert r.status == 200, loan
            return str(loan["loan_id"])


async def audited_latencies_ms(bootstrap: str, topic: str, last: int) -> list[float]:
    """Latencies (ms) of the last ``last`` audited GetLoan calls, as the gateway measured them."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[tuple[float, float]] = []
    try:
        idle = 0
        while idle < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    call = audit_pb2.GatewayAuditEvent.FromString(record.value or b"").call_audited
                    if call.method.endswith("/GetLoan") and call.outcome == "OK":
                        found.append((call.started_at.ToNanoseconds(), call.latency_us / 1000))
    finally:
        await consumer.stop()
    return sorted(ms for _, ms in sorted(found)[-last:])


LIMITER_MODES = {
    # the gateway's default: one count per partner across instances, in MongoDB
    "shared": {"ZC_GATEWAY_RATE_LIMIT": "shared"},
    # the same with a write for every call (what a partner under 100 calls/s costs)
    "shared, write per call": {"ZC_GATEWAY_RATE_LIMIT": "shared",
                               "ZC_GATEWAY_RATE_LIMIT_MAX_CHUNK": "1"},
    # per instance, in memory (the limiter off, as far as MongoDB is concerned)
    "local": {"ZC_GATEWAY_RATE_LIMIT": "local"},
}  # fmt: skip


async def limiter_latency(
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    ca: Any,
    partner: Any,
    credential: str,
    shared_port: int,
) -> dict[str, dict[str, float]]:
    """Sequential ListLoanProducts (no service database read, so the limiter's share shows)
    through one gateway per rate-limit mode, in alternating blocks; p50/p99 and what each
    shared mode adds over the local limiter."""
    procs, channels, stubs = [], [], {}
    try:
        for mode, extra in LIMITER_MODES.items():
            port = shared_port if mode == "shared" else loan310.free_port()
            if mode != "shared":  # the gateway started above runs the default (shared)
                log = workdir / f"gateway-{extra['ZC_GATEWAY_RATE_LIMIT']}-{port}.log"
                procs.append(start_gateway(
                    {**env, **extra, "ZC_GATEWAY_GRPC_PORT": str(port)}, log
                ))  # fmt: skip
            channel = grpc.aio.secure_channel(
                f"127.0.0.1:{port}",
                grpc.ssl_channel_credentials(ca.cert_pem, partner.key_pem, partner.cert_pem),
                options=[("grpc.ssl_target_name_override", "localhost")],
            )
            await asyncio.wait_for(channel.channel_ready(), 300)
            channels.append(channel)
            stubs[mode] = loan_pb2_grpc.LoanServiceStub(channel)
        request = loan_pb2.ListLoanProductsRequest()
        metadata = (("x-partner-credential", credential),)
        lat: dict[str, list[float]] = {mode: [] for mode in stubs}
        for stub in stubs.values():  # warm-up
            for _ in range(200):
                await stub.ListLoanProducts(request, metadata=metadata, timeout=10)
        block = 250
        for _ in range(max(1, args.calls // block)):
            for mode, stub in stubs.items():
                for _ in range(block):
                    t0 = time.perf_counter()
                    await stub.ListLoanProducts(request, metadata=metadata, timeout=10)
                    lat[mode].append((time.perf_counter() - t0) * 1000)
        local = sorted(lat["local"])
        out: dict[str, dict[str, float]] = {}
        for mode, values in lat.items():
            ordered = sorted(values)
            out[mode] = {"p50_ms": round(pct(ordered, 0.5), 3),
                         "p99_ms": round(pct(ordered, 0.99), 3)}  # fmt: skip
            if mode != "local":
                out[mode]["added_p50_ms"] = round(pct(ordered, 0.5) - pct(local, 0.5), 3)
                out[mode]["added_p99_ms"] = round(pct(ordered, 0.99) - pct(local, 0.99), 3)
        return out
    finally:
        for channel in channels:
            await channel.close()
        for proc in procs:
            loan310.stop_process(proc)


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    run = loan310.Run(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/"),
    )
    payroll_topic, audit_topic = f"bench.payroll.{run.token}", f"bench.audit.{run.token}"
    gateway_db = f"bench_gateway_{run.token}"
    party = str(uuid.uuid4())
    keys = SigningKeys.from_config(
        pem=None, seed=base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    )
    now = datetime.now(UTC)
    token = keys.sign(
        access_claims(
            AccessGrant(party, str(uuid.uuid4()), Aal.AAL2, (Method.PASSWORD, Method.TOTP), now),
            issuer=loan310.ISSUER, audience=loan310.AUDIENCE, now=now, ttl=timedelta(minutes=30),
        )
    )  # fmt: skip
    admin = AIOKafkaAdminClient(bootstrap_servers=run.bootstrap)
    await admin.start()
    topics = [run.identity, run.risk, run.loan, payroll_topic, audit_topic]
    await admin.create_topics(
        [NewTopic(t, 6, 1) for t in topics]
        + [NewTopic(f"{t}.dlq", 1, 1) for t in (run.identity, run.risk)]
    )
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    jwks_app = FastAPI()
    jwks_app.get("/.well-known/jwks.json")(lambda: keys.jwks())
    jwks_port, loan_port, grpc_port = (loan310.free_port() for _ in range(3))
    jwks_server = uvicorn.Server(
        uvicorn.Config(jwks_app, host="127.0.0.1", port=jwks_port, log_level="warning")
    )
    jwks_task = asyncio.create_task(jwks_server.serve())
    stop = asyncio.Event()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(run.mongodb_uri)
    loan_proc = gateway_proc = None
    try:
        print(f"load average at start: {loadavg()}", flush=True)
        loan_proc = loan310.start_loan(
            run, loan_port, jwks_port, 5, workdir / "loan.log",
            loan310.tracing_env("loan", "off", ""),
        )  # fmt: skip
        responder = asyncio.create_task(loan310.responder(run, stop))
        loan_url = f"http://127.0.0.1:{loan_port}"
        await loan310.wait_http(f"{loan_url}/readyz", 300, loan_proc, workdir / "loan.log")
        producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, acks="all")
        await producer.start()
        await loan310.identity_events(producer, run, [party])
        await producer.stop()
        loan_id = await make_loan(run, loan_url, token, party)
        stop.set()
        await responder
        print(f"loan {loan_id} disbursed; starting the gateway", flush=True)

        ca = certs.issue_ca()
        ca.write(workdir, "ca")
        certs.issue_server(ca).write(workdir, "server")
        partner = certs.issue_partner(ca, "bench-partner")
        partner.write(workdir, "partner")
        pepper = base64.urlsafe_b64encode(os.urandom(32)).decode()
        store = PartnerStore(mongo[gateway_db], pepper.encode())
        credential = await store.register("bench-partner", ["loans:read"], rate_per_s=1_000_000.0)
        await OwnershipStore(mongo[gateway_db]).record("loan", loan_id, "bench-partner")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap, "MONGODB_URI": run.mongodb_uri,
            "ZC_GATEWAY_MONGODB_DATABASE": gateway_db, "ZC_GATEWAY_GRPC_HOST": "127.0.0.1",
            "ZC_GATEWAY_GRPC_PORT": str(grpc_port), "ZC_GATEWAY_HTTP_PORT": "0",
            "ZC_GATEWAY_TLS_CERT_FILE": str(workdir / "server.crt"),
            "ZC_GATEWAY_TLS_KEY_FILE": str(workdir / "server.key"),
            "ZC_GATEWAY_CLIENT_CA_FILE": str(workdir / "ca.crt"),
            "ZC_GATEWAY_CREDENTIAL_PEPPER": pepper,
            "ZC_GATEWAY_PII_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ZC_GATEWAY_PII_INDEX_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ZC_GATEWAY_LOAN_URL": loan_url, "ZC_GATEWAY_LOAN_TOPIC": run.loan,
            "ZC_GATEWAY_RISK_TOPIC": run.risk, "ZC_GATEWAY_PAYROLL_TOPIC": payroll_topic,
            "ZC_GATEWAY_AUDIT_TOPIC": audit_topic, "ZC_GATEWAY_LOG_LEVEL": "WARNING",
            "ZC_GATEWAY_JWKS_URL": f"http://127.0.0.1:{jwks_port}/.well-known/jwks.json",
            "ZC_GATEWAY_JWT_ISSUER": loan310.ISSUER, "ZC_GATEWAY_JWT_AUDIENCE": loan310.AUDIENCE,
        }  # fmt: skip
        gateway_proc = start_gateway(env, workdir / "gateway.log")
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{grpc_port}",
            grpc.ssl_channel_credentials(ca.cert_pem, partner.key_pem, partner.cert_pem),
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        await asyncio.wait_for(channel.channel_ready(), 300)
        stub = loan_pb2_grpc.LoanServiceStub(channel)
        request = loan_pb2.GetLoanRequest(loan_id=loan_id)
        metadata = (("x-partner-credential", credential), ("authorization", f"Bearer {token}"))
        http = aiohttp.ClientSession()
        url = f"{loan_url}/v1/loans/{loan_id}"
        headers = {"Authorization": f"Bearer {token}"}

        async def via_gateway() -> None:
            response = await stub.GetLoan(request, metadata=metadata, timeout=10)
            assert response.loan.loan_id == loan_id

        async def direct() -> None:
            async with http.get(url, headers=headers) as r:
                body = await r.read()
                assert r.status == 200 and loan_id.encode() in body

        health_stub = health_pb2_grpc.HealthStub(channel)
        health_request = health_pb2.HealthCheckRequest()

        async def grpc_floor() -> None:
            # The same channel, TLS and server, but no gateway code: what gRPC in Python costs.
            await health_stub.Check(health_request, timeout=10)

        for _ in range(200):  # warm-up: connections, caches, JWKS
            await via_gateway()
            await direct()
            await grpc_floor()
        lat: dict[str, list[float]] = {"direct": [], "gateway": [], "floor": []}
        block = 250
        for _ in range(max(1, args.calls // block)):
            for name, fn in (("direct", direct), ("gateway", via_gateway), ("floor", grpc_floor)):
                for _ in range(block):
                    t0 = time.perf_counter()
                    await fn()
                    lat[name].append((time.perf_counter() - t0) * 1000)

        cpu_per_call: dict[str, dict[str, float]] = {}
        procs = {"loan": loan_proc.pid, "gateway": gateway_proc.pid}
        use_ghz = args.load_generator == "ghz" or (args.load_generator == "auto" and GHZ.exists())
        generator = "ghz" if use_ghz else "python grpc.aio"

        async def python_callers(fn: Any) -> tuple[int, float]:
            done = 0
            end = time.perf_counter() + args.seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < end:
                    await fn()
                    done += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            return done, time.perf_counter() - started

        async def ghz(
            rpc: str, data: dict[str, str], call_metadata: dict[str, str]
        ) -> tuple[int, float]:
            """OK calls and seconds of a ghz run (Go, mTLS, the method by server reflection)."""
            method = rpc if "/" in rpc else f"zerocontact.gateway.v1.LoanService/{rpc}"
            process = await asyncio.create_subprocess_exec(
                str(GHZ), "--cacert", str(workdir / "ca.crt"),
                "--cert", str(workdir / "partner.crt"), "--key", str(workdir / "partner.key"),
                "--cname", "localhost", "--call", method,
                "-d", json.dumps(data), "-m", json.dumps(call_metadata),
                "-c", str(args.concurrency), "--connections", str(args.connections),
                "-z", f"{args.seconds}s", "--duration-stop", "ignore", "-O", "json",
                f"127.0.0.1:{grpc_port}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"ghz failed: {err.decode()[-2000:]}")
            report = json.loads(out)
            codes = report.get("statusCodeDistribution") or {}
            if set(codes) - {"OK"}:
                print(f"ghz {rpc}: not all OK: {codes} {report.get('errorDistribution')}")
            return int(codes.get("OK", 0)), float(report["total"]) / 1e9

        async def saturate(name: str, fn: Any, ghz_call: Any = None) -> float:
            # CPU time per call of each server process: unlike calls/s, it hardly depends on
            # what else the shared machine runs meanwhile.
            cpu0 = {k: loan310.cpu_seconds(pid) for k, pid in procs.items()}
            if use_ghz and ghz_call is not None:
                done, elapsed = await ghz(*ghz_call)  # its own clock: start-up not counted
            else:
                done, elapsed = await python_callers(fn)
            cpu_per_call[name] = {
                k: round((loan310.cpu_seconds(pid) - cpu0[k]) / max(done, 1) * 1000, 3)
                for k, pid in procs.items()
            }
            return done / elapsed

        # The gateway's own view of the same calls: its audit records' latency (from the
        # handler's start to its end, loan service included; no client or gRPC transport).
        server_side = await audited_latencies_ms(run.bootstrap, audit_topic, len(lat["gateway"]))
        products_request = loan_pb2.ListLoanProductsRequest()
        products_url = f"{loan_url}/v1/products"

        async def products_via_gateway() -> None:
            response = await stub.ListLoanProducts(
                products_request, metadata=metadata[:1], timeout=10
            )
            assert response.products

        async def products_direct() -> None:
            async with http.get(products_url) as r:
                await r.read()
                assert r.status == 200

        credential_md = {"x-partner-credential": credential}
        direct_rate = await saturate("direct", direct)
        gateway_rate = await saturate(
            "gateway",
            via_gateway,
            (
                "GetLoan",
                {"loan_id": loan_id},
                {**credential_md, "authorization": f"Bearer {token}"},
            ),
        )
        # The same, for a read that costs the service no database round trip: what the
        # gateway itself sustains when the service behind it is not the bottleneck.
        products_direct_rate = await saturate("products_direct", products_direct)
        products_gateway_rate = await saturate(
            "products_gateway", products_via_gateway, ("ListLoanProducts", {}, credential_md)
        )
        # The floor: a call that runs no gateway code (gRPC, TLS and HTTP/2 in Python).
        health_rate = await saturate(
            "health_gateway", grpc_floor, ("grpc.health.v1.Health/Check", {}, {})
        )
        limiter = await limiter_latency(args, env, workdir, ca, partner, credential, grpc_port)
        await http.close()
        await channel.close()
        d, g, f = sorted(lat["direct"]), sorted(lat["gateway"]), sorted(lat["floor"])
        result = {
            "calls_each": len(d),
            "direct_p50_ms": round(pct(d, 0.5), 3), "direct_p99_ms": round(pct(d, 0.99), 3),
            "gateway_p50_ms": round(pct(g, 0.5), 3), "gateway_p99_ms": round(pct(g, 0.99), 3),
            "added_p50_ms": round(pct(g, 0.5) - pct(d, 0.5), 3),
            "added_p99_ms": round(pct(g, 0.99) - pct(d, 0.99), 3),
            "grpc_health_check_p50_ms": round(pct(f, 0.5), 3),
            "grpc_health_check_p99_ms": round(pct(f, 0.99), 3),
            "gateway_handler_p50_ms": round(pct(server_side, 0.5), 3) if server_side else None,
            "gateway_handler_p99_ms": round(pct(server_side, 0.99), 3) if server_side else None,
            "direct_saturation_per_s": round(direct_rate),
            "gateway_saturation_rpc_per_s": round(gateway_rate),
            "products_direct_per_s": round(products_direct_rate),
            "products_gateway_rpc_per_s": round(products_gateway_rate),
            "health_check_gateway_rpc_per_s": round(health_rate),
            "cpu_ms_per_call": cpu_per_call,
            "shared_rate_limit": limiter,
            "load_generator": generator,
            "concurrency": args.concurrency,
            "load_average_end": loadavg(),
        }  # fmt: skip
        print(
            f"GetLoan, {len(d)} sequential calls each\n"
            f"  direct HTTP : p50 {result['direct_p50_ms']} ms  p99 {result['direct_p99_ms']} ms\n"
            f"  via gateway : p50 {result['gateway_p50_ms']} ms  p99 {result['gateway_p99_ms']} ms\n"
            f"  added       : p50 {result['added_p50_ms']} ms  p99 {result['added_p99_ms']} ms\n"
            f"  gRPC floor (grpc.health Check, same channel, no gateway code): p50 "
            f"{result['grpc_health_check_p50_ms']} ms  p99 {result['grpc_health_check_p99_ms']} ms\n"
            f"  gateway handler (its audit records, loan call included): p50 "
            f"{result['gateway_handler_p50_ms']} ms  p99 {result['gateway_handler_p99_ms']} ms\n"
            f"saturation ({args.concurrency} callers, {args.seconds} s each; gateway load "
            f"generator: {generator}): direct "
            f"{result['direct_saturation_per_s']} req/s, gateway "
            f"{result['gateway_saturation_rpc_per_s']} RPC/s\n"
            f"ListLoanProducts (no database read) saturation: direct "
            f"{result['products_direct_per_s']} req/s, gateway "
            f"{result['products_gateway_rpc_per_s']} RPC/s\n"
            f"grpc.health Check (no gateway code) saturation: "
            f"{result['health_check_gateway_rpc_per_s']} RPC/s\n"
            f"server CPU ms per call at saturation (loan, gateway): "
            + ", ".join(f"{k} {v['loan']}/{v['gateway']}" for k, v in cpu_per_call.items())
            + "\n"
            "shared rate limit, ListLoanProducts sequential (p50 / p99 ms; added vs local):\n"
            + "\n".join(
                f"  {mode:<24}: {v['p50_ms']} / {v['p99_ms']}"
                + (
                    f"  added {v['added_p50_ms']} / {v['added_p99_ms']}"
                    if "added_p50_ms" in v
                    else ""
                )
                for mode, v in limiter.items()
            )
            + "\n"
            f"load average at end: {result['load_average_end']}",
            flush=True,
        )
        return result
    finally:
        stop.set()
        loan310.stop_process(gateway_proc)
        loan310.stop_process(loan_proc)
        jwks_server.should_exit = True
        await jwks_task
        await admin.delete_topics(topics + [f"{t}.dlq" for t in (run.identity, run.risk)])
        await admin.close()
        for db in (run.database, gateway_db):
            await mongo.drop_database(db)
        await mongo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls of each kind")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="saturation phase, each")
    parser.add_argument(
        "--load-generator",
        choices=["auto", "ghz", "python"],
        default="auto",
        help="gateway saturation client (auto: ghz when deploy/tools/install.sh installed it)",
    )
    parser.add_argument("--connections", type=int, default=4, help="ghz's gRPC connections")
    result = asyncio.run(run_bench(parser.parse_args()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
