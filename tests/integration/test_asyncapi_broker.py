"""docs/asyncapi.yaml against a real broker: what the suite creates is what the document says.

The catalog is applied the way ``zerocontact topics create`` applies it (``ensure_topics``), under
this test's own name prefix so the shared broker's real topics are never touched; every topic
the broker then holds under that prefix must be a channel of the document, with the partitions
and configs the document's Kafka binding states. Any topic on the broker named like a catalog
topic (``<domain>.<kind>.vN[.dlq]``, e.g. after ``make up``) must be documented too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from deploy.tools.asyncapi import YAML_OUTPUT
from zerocontact.platform.topics import TopicCatalog, ensure_topics, load_catalog
from zerocontact.platform.topics.catalog import TOPIC_NAME


@pytest.fixture(scope="module")
def channels() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(YAML_OUTPUT.read_text())
    return {channel["address"]: channel for channel in document["channels"].values()}


@pytest.fixture
async def prefix(
    kafka_admin: AIOKafkaAdminClient, unique_name: Callable[[str], str]
) -> AsyncIterator[str]:
    """This test's topic prefix; its topics are deleted afterwards."""
    value = unique_name("asyncapi") + "."
    yield value
    mine = [t for t in await kafka_admin.list_topics() if t.startswith(value)]
    if mine:
        await kafka_admin.delete_topics(mine)


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None, "retention.ms": None})
        for n in names
    ]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]
            }
    return configs


async def test_every_topic_the_suite_creates_is_documented_as_the_broker_has_it(
    kafka_admin: AIOKafkaAdminClient, prefix: str, channels: dict[str, Any]
) -> None:
    catalog: TopicCatalog = load_catalog().renamed(lambda name: prefix + name)
    report = await ensure_topics(kafka_admin, catalog)
    assert sorted(report.created) == sorted(catalog.names)

    created = [t for t in await kafka_admin.list_topics() if t.startswith(prefix)]
    assert sorted(created) == sorted(catalog.names)
    partitions = {
        t["topic"]: len(t["partitions"]) for t in await kafka_admin.describe_topics(created)
    }
    configs = await _configs(kafka_admin, created)
    for topic in created:
        name = topic.removeprefix(prefix)
        assert name in channels, f"{name} is on the broker but not in docs/asyncapi.yaml"
        binding = channels[name]["bindings"]["kafka"]
        assert partitions[topic] == binding["partitions"]
        assert configs[topic] == {
            "cleanup.policy": ",".join(binding["topicConfiguration"]["cleanup.policy"]),
            "retention.ms": str(binding["topicConfiguration"]["retention.ms"]),
        }


async def test_no_catalog_named_topic_on_the_broker_is_undocumented(
    kafka_admin: AIOKafkaAdminClient, channels: dict[str, Any]
) -> None:
    named = [t for t in await kafka_admin.list_topics() if TOPIC_NAME.match(t)]
    assert [t for t in named if t not in channels] == []
