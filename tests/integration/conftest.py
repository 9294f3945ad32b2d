"""Session-scoped real engines for the integration tests.

Engines are chosen in this order:
1. external: ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URI`` set in the environment;
2. testcontainers: when a Docker engine answers;
3. embedded: Kafka (KRaft) and FerretDB started as local processes by
   ``deploy/local/engines.py`` (reused when they already answer, stopped at the end
   only if this run started them).

Jaeger and Prometheus (``observability_engines``) are started only for the tests that ask for
them, by ``engines.py start --observability-only`` whatever the engines' origin, and reused the
same way.

Tests isolate themselves by names (unique topics, groups and databases), never by
restarting engines, so they can run in any order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.harness import RUN_ID, Engines, engines_started, eventually


def _docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker  # testcontainers' dependency

        client = docker.from_env(timeout=3)
    except Exception:  # no usable Docker configuration here
        return False
    try:
        client.ping()
    except Exception:  # a socket without an engine behind it
        return False
    finally:
        client.close()
    return True


@pytest.fixture(scope="session")
def engines() -> Iterator[Engines]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Engines(kafka, mongo, "external")
        return
    if os.environ.get("ZC_TEST_ENGINES", "auto") != "embedded" and _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with (
            KafkaContainer("apache/kafka:4.1.1").with_kraft() as kc,
            MongoDbContainer("mongo:8.0") as mc,
        ):
            yield Engines(kc.get_bootstrap_server(), mc.get_connection_url(), "testcontainers")
        return

    def refused(error: str) -> NoReturn:
        pytest.exit(f"embedded engines did not start: {error}", returncode=3)

    with engines_started(["--engines-only", "--if-needed"], [], refused=refused):
        yield Engines(
            f"127.0.0.1:{os.environ.get('ZC_KAFKA_PORT', '9092')}",
            f"mongodb://127.0.0.1:{os.environ.get('ZC_MONGODB_PORT', '27017')}/",
            "embedded",
        )


@dataclass(frozen=True)
class ObservabilityEngines:
    """Where the local Jaeger and Prometheus answer."""

    jaeger_url: str  # query API (/api/services, /api/traces/<id>) and UI
    otlp_endpoint: str  # OTLP/gRPC, the services' OTEL_EXPORTER_OTLP_ENDPOINT
    otlp_http_endpoint: str  # OTLP/HTTP (POST /v1/traces)
    prometheus_url: str


def _port_env(name: str, default: int) -> str:
    return os.environ.get(name, str(default))


@pytest.fixture(scope="session")
def observability_engines() -> Iterator[ObservabilityEngines]:
    """Jaeger and Prometheus of this cache (``ZC_LOCAL_HOME``), started when they do not answer.

    Stopped at the end only if this run started them (Kafka and FerretDB are left alone). The
    first start builds both with Go when ``make fetch`` has not (a few minutes).
    """

    def refused(error: str) -> NoReturn:
        pytest.fail(f"Jaeger and Prometheus did not start: {error}")

    with engines_started(
        ["--observability-only", "--if-needed"], ["--observability-only"], refused=refused
    ):
        yield ObservabilityEngines(
            jaeger_url=f"http://127.0.0.1:{_port_env('ZC_JAEGER_UI_PORT', 16686)}",
            otlp_endpoint=f"http://127.0.0.1:{_port_env('ZC_OTLP_PORT', 4317)}",
            otlp_http_endpoint=f"http://127.0.0.1:{_port_env('ZC_OTLP_HTTP_PORT', 4318)}",
            prometheus_url=f"http://127.0.0.1:{_port_env('ZC_PROMETHEUS_PORT', 9090)}",
        )


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names unique to this test: ``unique_name("orders")`` -> ``t<run>-orders-<test>-<hex>``."""
    token = uuid.uuid4().hex[:10]
    test = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40].strip("-")

    def make(prefix: str) -> str:
        return f"t{RUN_ID}-{prefix}-{test}-{token}"

    return make


@pytest.fixture(scope="session", autouse=True)
async def _remove_what_this_run_created(
    kafka_admin: AIOKafkaAdminClient, mongo_client: AsyncMongoClient[dict[str, object]]
) -> AsyncIterator[None]:
    """Delete this run's topics and databases afterwards, so a long-lived broker stays small.

    Thousands of leftover test partitions made the embedded broker take ~18 s to start.
    """
    yield
    topics = [t for t in await kafka_admin.list_topics() if t.startswith(f"t{RUN_ID}-")]
    for start in range(0, len(topics), 100):
        await kafka_admin.delete_topics(topics[start : start + 100])
    for name in await mongo_client.list_database_names():
        if name.startswith((f"t{RUN_ID}_", f"t{RUN_ID}-")):
            await mongo_client.drop_database(name)


@pytest.fixture(scope="session")
async def mongo_client(engines: Engines) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        engines.mongodb_uri, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    yield client
    await client.close()


@pytest.fixture
async def mongo_db(
    mongo_client: AsyncMongoClient[dict[str, object]], unique_name: Callable[[str], str]
) -> AsyncIterator[AsyncDatabase[dict[str, object]]]:
    """A database of this test's own, dropped afterwards."""
    name = unique_name("db").replace("-", "_")[:60]
    yield mongo_client[name]
    await mongo_client.drop_database(name)


@pytest.fixture(scope="session")
async def kafka_admin(engines: Engines) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=engines.kafka_bootstrap)
    await admin.start()
    yield admin
    await admin.close()


@pytest.fixture
def create_topic(
    kafka_admin: AIOKafkaAdminClient, unique_name: Callable[[str], str]
) -> Callable[..., Awaitable[str]]:
    """Create a topic of this test's own: ``await create_topic("events", partitions=3)``.

    It returns once the broker describes every partition with a leader: CreateTopics answers
    when the controller has the topic, and the broker's metadata may lag behind it (a loaded
    CI run described the new topic with no partitions).
    """

    async def create(prefix: str = "topic", *, partitions: int = 3) -> str:
        name = unique_name(prefix)
        await kafka_admin.create_topics([NewTopic(name, partitions, 1)])

        async def led() -> bool:
            (described,) = await kafka_admin.describe_topics([name])
            leaders = [p for p in described["partitions"] if p["leader"] >= 0]
            return described["error_code"] == 0 and len(leaders) == partitions

        await eventually(led, within_s=30)
        return name

    return create
