"""A service whose broker (or database) goes down reports not-ready, and catches up after.

This test needs engines of its own to stop and start, so it runs a second embedded pair
(Kafka + FerretDB under their own supervisord, on free ports) from the same cache. Where
the session's engines are external or testcontainers, it is skipped: it cannot stop those.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from tests.integration.harness import (
    Engines,
    count_records,
    eventually,
    free_port,
    random_key,
    serve,
)
from zerocontact.platform.kafka.producer import EventPublisher
from zerocontact.platform.money import Money
from zerocontact.skeleton.app import create_accounts_app, create_projection_app
from zerocontact.skeleton.domain import DepositRecorded
from zerocontact.skeleton.handlers import to_cloud_event
from zerocontact.skeleton.settings import AccountsSettings, ProjectionSettings

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / "deploy" / "local" / "engines.py"


@dataclass
class PrivateEngines:
    env: dict[str, str]
    conf: Path
    kafka_bootstrap: str
    mongodb_uri: str

    def supervisorctl(self, action: str, program: str) -> None:
        ctl = Path(sys.executable).with_name("supervisorctl")
        subprocess.run(
            [str(ctl), "-c", str(self.conf), action, program], check=True, capture_output=True
        )


@pytest.fixture
def private_engines(engines: Engines, tmp_path: Path) -> Iterator[PrivateEngines]:
    if engines.origin != "embedded":
        pytest.skip(
            "stopping a broker needs the embedded engines (this session uses external ones)"
        )
    cache = Path(os.environ.get("ZC_LOCAL_HOME") or ROOT / ".cache")
    home = tmp_path / "engines"
    (home / "kafka").mkdir(parents=True)
    (home / "kafka" / "libs").symlink_to(cache / "kafka" / "libs")
    (home / "bin").symlink_to(cache / "bin")
    kafka, controller, mongo = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "ZC_LOCAL_HOME": str(home),
        "ZC_KAFKA_PORT": str(kafka),
        "ZC_KAFKA_CONTROLLER_PORT": str(controller),
        "ZC_KAFKA_SASL_PORT": str(free_port()),
        "ZC_MONGODB_PORT": str(mongo),
    }
    started = subprocess.run(
        [sys.executable, str(ENGINES), "start", "--engines-only"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stderr
    try:
        yield PrivateEngines(
            env,
            home / "run" / "supervisord.conf",
            f"127.0.0.1:{kafka}",
            f"mongodb://127.0.0.1:{mongo}/",
        )
    finally:
        subprocess.run([sys.executable, str(ENGINES), "stop"], env=env, capture_output=True)


async def _readiness(client: Any) -> dict[str, Any]:
    r = await client.get("/readyz")
    body: dict[str, Any] = r.json()
    body["http_status"] = r.status_code
    return body


async def _skeleton_topics(engines: PrivateEngines) -> None:
    """The walking skeleton's topic and its dead-letter topic on the private broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
    await admin.start()
    await admin.create_topics(
        [NewTopic("skeleton.events.v1", 3, 1), NewTopic("skeleton.events.v1.dlq", 1, 1)]
    )
    await admin.close()


async def test_broker_outage_makes_services_not_ready_and_they_catch_up(
    private_engines: PrivateEngines,
) -> None:
    await _skeleton_topics(private_engines)
    common = {
        "kafka_bootstrap_servers": private_engines.kafka_bootstrap,
        "mongodb_uri": private_engines.mongodb_uri,
        "readiness_timeout_s": 1.0,
    }
    accounts_app = create_accounts_app(
        AccountsSettings(
            **common, outbox_sweep_interval_s=0.5, pii_key=random_key(), pii_index_key=random_key()
        )
    )
    projection_app = create_projection_app(ProjectionSettings(**common))
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(private_engines.mongodb_uri)
    async with serve(accounts_app) as accounts, serve(projection_app) as projection:
        await eventually(lambda: _ready(accounts.client))
        await eventually(lambda: _ready(projection.client))
        r = await accounts.client.post(
            "/v1/accounts",
            json={"holder_name": "Wang Fang", "holder_phone": "+8613912345678", "currency": "CNY"},
            headers={"Idempotency-Key": "outage-open-1"},
        )
        account_id = r.json()["account_id"]
        await _deposit(accounts.client, account_id, "outage-dep-1", "1.00")
        await eventually(lambda: _balance(projection.client, account_id, 100))

        private_engines.supervisorctl("stop", "kafka")
        for app in (accounts, projection):
            body = await eventually(lambda app=app: _not_ready(app.client), within_s=30)
            assert body["checks"] == {"kafka": "failing", "mongodb": "ok"}

        # Writes still succeed: the event waits in the aggregate's outbox.
        await _deposit(accounts.client, account_id, "outage-dep-2", "2.00")
        doc = await mongo["zc_skeleton"]["accounts"].find_one({"_id": account_id})
        assert doc is not None
        assert doc["_outbox_pending"] is True
        assert doc["balance_minor"] == 300

        private_engines.supervisorctl("start", "kafka")
        await eventually(lambda: _ready(accounts.client), within_s=60)
        await eventually(lambda: _ready(projection.client), within_s=60)
        got = await eventually(lambda: _balance(projection.client, account_id, 300), within_s=60)
        assert got["deposits"] == 2  # caught up, and the republished event was applied once

        # The database goes away while an event arrives: the consumer retries the same record
        # (no dead letter, no skip) and applies it once the database is back.
        late = to_cloud_event(
            DepositRecorded(
                account_id, "outage-dep-3", Money("CNY", 400), Money("CNY", 700), datetime.now(UTC)
            ),
            topic="skeleton.events.v1",
        )
        private_engines.supervisorctl("stop", "ferretdb")
        body = await eventually(lambda: _not_ready(accounts.client), within_s=30)
        assert body["checks"] == {"kafka": "ok", "mongodb": "failing"}
        publisher = EventPublisher(
            bootstrap_servers=private_engines.kafka_bootstrap, client_id="outage-test"
        )
        await publisher.start(wait=True)
        await publisher.publish(late.topic, late.key, late.event)
        await publisher.stop()
        await eventually(lambda: _retrying(projection_app), within_s=30)
        private_engines.supervisorctl("start", "ferretdb")
        await eventually(lambda: _ready(accounts.client), within_s=30)
        got = await eventually(lambda: _balance(projection.client, account_id, 700), within_s=60)
        assert got["deposits"] == 3
    await mongo.close()
    dead = await count_records(private_engines.kafka_bootstrap, "skeleton.events.v1.dlq")
    assert dead == 0


async def _retrying(app: Any) -> bool:
    return bool(app.state.deps.consumer.retrying)


async def _ready(client: Any) -> bool:
    return (await _readiness(client))["http_status"] == 200


async def _not_ready(client: Any) -> dict[str, Any] | None:
    body = await _readiness(client)
    return body if body["http_status"] == 503 else None


async def _deposit(client: Any, account_id: str, key: str, amount: str) -> None:
    r = await client.post(
        f"/v1/accounts/{account_id}/deposits",
        json={"amount": amount, "currency": "CNY"},
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 200, r.text


async def _balance(client: Any, account_id: str, minor: int) -> dict[str, Any] | None:
    r = await client.get(f"/v1/balances/{account_id}")
    if r.status_code != 200:
        return None
    body: dict[str, Any] = r.json()
    return body if body["balance_minor"] == minor else None


async def test_a_request_while_the_database_is_down_gets_a_retryable_503_and_changes_nothing(
    private_engines: PrivateEngines,
) -> None:
    await _skeleton_topics(private_engines)
    accounts_app = create_accounts_app(
        AccountsSettings(
            kafka_bootstrap_servers=private_engines.kafka_bootstrap,
            mongodb_uri=private_engines.mongodb_uri,
            readiness_timeout_s=1.0,
            outbox_sweep_interval_s=0.5,
            pii_key=random_key(),
            pii_index_key=random_key(),
        )
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(private_engines.mongodb_uri)
    async with serve(accounts_app) as accounts:
        await eventually(lambda: _ready(accounts.client))
        r = await accounts.client.post(
            "/v1/accounts",
            json={"holder_name": "Li Na", "holder_phone": "+8613912345679", "currency": "CNY"},
            headers={"Idempotency-Key": "down-open-1"},
        )
        account_id = r.json()["account_id"]
        await _deposit(accounts.client, account_id, "down-dep-1", "1.00")

        private_engines.supervisorctl("stop", "ferretdb")
        for path, body in (
            (f"/v1/accounts/{account_id}/deposits", {"amount": "2.00", "currency": "CNY"}),
            (f"/v1/accounts/{account_id}", None),
        ):
            if body is None:
                r = await accounts.client.get(path)
            else:
                r = await accounts.client.post(
                    path, json=body, headers={"Idempotency-Key": "down-dep-2"}
                )
            # Not a 500: the engine is missing, so the same request can succeed later.
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["Retry-After"] == "1"
            problem = r.json()
            assert problem["title"] == "engine_unavailable"
            assert str(private_engines.mongodb_uri.split(":")[-1].rstrip("/")) not in r.text

        private_engines.supervisorctl("start", "ferretdb")
        await eventually(lambda: _ready(accounts.client), within_s=60)
        doc = await mongo["zc_skeleton"]["accounts"].find_one({"_id": account_id})
        assert doc is not None
        assert doc["balance_minor"] == 100  # the refused deposit changed nothing
        # The client's retry with the same key is applied once.
        await _deposit(accounts.client, account_id, "down-dep-2", "2.00")
        await _deposit(accounts.client, account_id, "down-dep-2", "2.00")
        doc = await mongo["zc_skeleton"]["accounts"].find_one({"_id": account_id})
        assert doc is not None
        assert doc["balance_minor"] == 300
    await mongo.close()
