"""The topic catalog applied to a real broker: created as written, idempotent, drift reported.

Every test applies the real catalog under names of its own (``TopicCatalog.renamed`` with the
``unique_name`` fixture) and deletes its topics afterwards, so it never touches the real topics
and runs beside other tests on a shared broker.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from zerocontact.platform.topics import TopicCatalog, ensure_topics, load_catalog

if TYPE_CHECKING:
    from tests.integration.conftest import Engines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def catalog(
    kafka_admin: AIOKafkaAdminClient, unique_name: Callable[[str], str]
) -> AsyncIterator[TopicCatalog]:
    """The real catalog under this test's own names; its topics are deleted afterwards."""
    renamed = load_catalog().renamed(unique_name)
    yield renamed
    present = set(await kafka_admin.list_topics())
    leftovers = [name for name in renamed.names if name in present]
    if leftovers:
        await kafka_admin.delete_topics(leftovers)


async def broker_view(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, tuple[int, dict[str, str]]]:
    """Partition count and (cleanup.policy, retention.ms) of each topic, as the broker says."""
    partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    resources = [
        ConfigResource(
            ConfigResourceType.TOPIC, name, {"cleanup.policy": None, "retention.ms": None}
        )
        for name in names
    ]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            assert resource["error_code"] == 0, resource
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]
            }
    return {name: (partitions[name], configs[name]) for name in names}


async def test_ensure_topics_creates_the_catalog_as_written_and_is_idempotent(
    kafka_admin: AIOKafkaAdminClient, catalog: TopicCatalog
) -> None:
    first = await ensure_topics(kafka_admin, catalog)
    assert sorted(first.created) == sorted(catalog.names)
    assert first.in_sync

    view = await broker_view(kafka_admin, catalog.names)
    for spec in catalog:
        assert view[spec.name] == (
            spec.partitions,
            {"cleanup.policy": spec.cleanup_policy, "retention.ms": str(spec.retention_ms)},
        )

    second = await ensure_topics(kafka_admin, catalog)
    assert second.created == ()
    assert sorted(second.existing) == sorted(catalog.names)
    assert second.in_sync
    assert await broker_view(kafka_admin, catalog.names) == view


async def test_existing_topic_that_differs_is_reported_and_left_alone(
    kafka_admin: AIOKafkaAdminClient, catalog: TopicCatalog
) -> None:
    source = next(spec for spec in catalog if spec.dlq)
    # Someone created the topic by hand with 2 partitions and a 1-hour retention.
    await kafka_admin.create_topics(
        [NewTopic(source.name, 2, 1, topic_configs={"retention.ms": "3600000"})]
    )

    report = await ensure_topics(kafka_admin, catalog)

    assert sorted(report.created) == sorted(n for n in catalog.names if n != source.name)
    assert not report.in_sync
    assert [(d.topic, d.expected, d.actual) for d in report.partition_drift] == [
        (source.name, source.partitions, 2)
    ]
    assert [(d.topic, d.config, d.actual) for d in report.config_drift] == [
        (source.name, "retention.ms", "3600000")
    ]
    view = await broker_view(kafka_admin, [source.name])
    assert view[source.name] == (2, {"cleanup.policy": "delete", "retention.ms": "3600000"})


def _kafka_libs() -> Path | None:
    """Kafka's jars: $ZC_KAFKA_LIBS, else the engines cache, else the dev machine's copy."""
    candidates = [ROOT / ".cache" / "kafka" / "libs", Path("/tmp/kafkalibs")]
    if os.environ.get("ZC_KAFKA_LIBS"):
        candidates.insert(0, Path(os.environ["ZC_KAFKA_LIBS"]))
    for libs in candidates:
        if any(libs.glob("kafka-tools-*.jar")):
            return libs
    return None


def _java() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


async def test_created_topics_are_visible_to_kafkas_own_topic_command(
    kafka_admin: AIOKafkaAdminClient, catalog: TopicCatalog, engines: Engines
) -> None:
    libs, java = _kafka_libs(), _java()
    if libs is None or java is None:
        pytest.skip(f"Kafka's TopicCommand needs the broker jars ({libs=}) and java ({java=})")
    report = await ensure_topics(kafka_admin, catalog)
    assert sorted(report.created) == sorted(catalog.names)

    process = await asyncio.create_subprocess_exec(
        java,
        "-cp",
        f"{libs}/*",
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        engines.kafka_bootstrap,
        "--describe",
        "--topic",
        # TopicCommand takes a Java regex: exactly this test's topics.
        "|".join(re.escape(name) for name in catalog.names),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    listed = {
        match["name"]: (int(match["partitions"]), match["configs"])
        for match in re.finditer(
            r"^Topic: (?P<name>\S+)\s+TopicId: \S+\s+PartitionCount: (?P<partitions>\d+)"
            r".*?Configs: (?P<configs>\S*)$",
            stdout.decode(),
            re.MULTILINE,
        )
    }
    assert set(listed) == set(catalog.names), stdout.decode()
    for spec in catalog:
        partitions, configs = listed[spec.name]
        assert partitions == spec.partitions
        assert f"cleanup.policy={spec.cleanup_policy}" in configs
        assert f"retention.ms={spec.retention_ms}" in configs
