"""Login throughput of identity with password + TOTP (AAL2 in one step), on real engines.

Starts the identity service in-process (uvicorn, a free loopback port) against the engines
named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``MONGODB_URI`` with a database and topics of its own,
registers ``--users`` customers and enrols TOTP for each (setup, not timed), then times
``--users`` logins, each with the password and a fresh TOTP code, ``--concurrency`` at a time.
Every login is the full path: argon2id verification (production cost by default), TOTP check
with replay protection, the version-guarded write of counters + AuthenticationSucceeded
outbox event, the session insert and the Ed25519-signed token. The database and topics are
removed afterwards. The last stdout line is JSON.

    .venv/bin/python bench/identity_login.py [--users 100] [--concurrency 16]
        [--argon2-memory-kib 65536 --argon2-time-cost 3 --argon2-parallelism 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import httpx
import pyotp
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pymongo import AsyncMongoClient
from stdnum.cn import ric

from zerocontact.identity.app import create_app
from zerocontact.identity.settings import IdentitySettings

PASSWORD = "bench password, long enough"


def key32() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def person(n: int) -> dict[str, Any]:
    birth = datetime(1970, 1, 1) + timedelta(days=n % 15000)
    body = f"110105{birth:%Y%m%d}{n % 1000:03d}"
    return {
        "name": f"用户{n}",
        "resident_id": body + ric.calc_check_digit(body + "0"),
        "phone": f"+86139{n:08d}",
        "date_of_birth": birth.date().isoformat(),
        "address": "上海市浦东新区世纪大道100号",
        "password": PASSWORD,
    }


def headers(token: str | None = None) -> dict[str, str]:
    h = {"Idempotency-Key": uuid.uuid4().hex, "X-Device-Id": "bench-device"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    return h


async def setup_user(client: httpx.AsyncClient, n: int) -> tuple[str, pyotp.TOTP]:
    body = person(n)
    r = await client.post("/v1/customers", json=body, headers=headers())
    r.raise_for_status()
    cid = r.json()["customer_id"]
    login = await client.post(
        "/v1/sessions", json={"phone": body["phone"], "password": PASSWORD}, headers=headers()
    )
    login.raise_for_status()
    token = login.json()["access_token"]
    r = await client.post(f"/v1/customers/{cid}/factors/totp", headers=headers(token))
    r.raise_for_status()
    totp = pyotp.parse_uri(r.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    r = await client.post(
        f"/v1/customers/{cid}/factors/totp/confirmation",
        json={"code": totp.now()},
        headers=headers(token),
    )
    r.raise_for_status()
    return body["phone"], totp


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    mongodb = os.environ.get("MONGODB_URI", "mongodb://127.0.0.1:27017/")
    run_id = uuid.uuid4().hex[:8]
    events, notes = (
        f"bench-{run_id}-identity.events.v1",
        f"bench-{run_id}-identity.notifications.v1",
    )
    database = f"bench_identity_{run_id}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    topics = [events, f"{events}.dlq", notes, f"{notes}.dlq"]
    await admin.create_topics([NewTopic(t, 3 if "dlq" not in t else 1, 1) for t in topics])
    gateway = X25519PrivateKey.generate().public_key()
    raw = gateway.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    settings = IdentitySettings.model_validate(
        {
            "kafka_bootstrap_servers": bootstrap,
            "mongodb_uri": mongodb,
            "mongodb_database": database,
            "events_topic": events,
            "notifications_topic": notes,
            "consumer_group": f"bench-{run_id}",
            "pii_key": key32(),
            "pii_index_key": key32(),
            "jwt_signing_seed": key32(),
            "sms_gateway_public_key": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "sms_gateway_key": key32(),
            "operator_key": key32(),
            "password_memory_kib": args.argon2_memory_kib,
            "password_time_cost": args.argon2_time_cost,
            "password_parallelism": args.argon2_parallelism,
            "log_level": "WARNING",
        }
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb)
    try:
        limits = httpx.Limits(max_connections=args.concurrency * 2)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as client:
            began = time.perf_counter()
            gate = asyncio.Semaphore(args.concurrency)

            async def one_setup(n: int) -> tuple[str, pyotp.TOTP]:
                async with gate:
                    return await setup_user(client, n)

            base = random.randrange(10**7)
            users = await asyncio.gather(*(one_setup(base + n) for n in range(args.users)))
            setup_s = time.perf_counter() - began
            print(
                f"setup: {args.users} customers registered with TOTP in {setup_s:.1f} s", flush=True
            )

            latencies: list[float] = []
            failures = 0

            async def one_login(phone: str, totp: pyotp.TOTP) -> None:
                nonlocal failures
                async with gate:
                    # The next step's code: the confirmation used the current one (no replay).
                    code = totp.at(datetime.now(UTC), counter_offset=1)
                    start = time.perf_counter()
                    r = await client.post(
                        "/v1/sessions",
                        json={"phone": phone, "password": PASSWORD, "totp_code": code},
                        headers=headers(),
                    )
                    latencies.append(time.perf_counter() - start)
                    if r.status_code != 200 or r.json()["aal"] != "AAL2":
                        failures += 1

            began = time.perf_counter()
            await asyncio.gather(*(one_login(phone, totp) for phone, totp in users))
            elapsed = time.perf_counter() - began
    finally:
        server.should_exit = True
        await serving
        await mongo.drop_database(database)
        await mongo.close()
        await admin.delete_topics(topics)
        await admin.close()
    ordered = sorted(latencies)
    return {
        "bench": "identity_login",
        "logins": len(latencies),
        "failures": failures,
        "concurrency": args.concurrency,
        "argon2": f"m={args.argon2_memory_kib}KiB,t={args.argon2_time_cost},p={args.argon2_parallelism}",
        "logins_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 1),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--argon2-memory-kib", type=int, default=65_536)
    parser.add_argument("--argon2-time-cost", type=int, default=3)
    parser.add_argument("--argon2-parallelism", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"{result['logins']} logins (password + TOTP) at concurrency {result['concurrency']}: "
        f"{result['logins_per_s']} logins/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"{result['failures']} failed (argon2id {result['argon2']})"
    )
    print(json.dumps(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
