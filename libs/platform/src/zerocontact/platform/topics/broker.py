"""Applying the topic catalog to a broker with the aiokafka admin client.

``ensure_topics`` creates what is missing on a broker and reports what differs, without ever
changing an existing topic (that is an operator's decision); ``inspect_topics`` reads what the
broker has.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped, unused-ignore]
    ConfigResource,
    ConfigResourceType,
)
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    TopicAlreadyExistsError,
    for_code,
)

from zerocontact.platform.topics.catalog import MANAGED_CONFIGS, TopicCatalog

__all__ = [
    "ConfigDrift",
    "EnsureReport",
    "PartitionDrift",
    "TopicCreationError",
    "TopicState",
    "ensure_topics",
    "inspect_topics",
]


class TopicCreationError(RuntimeError):
    """The broker refused to create a catalog topic."""

    def __init__(self, topic: str, error: str) -> None:
        super().__init__(f"cannot create topic {topic}: {error}")
        self.topic = topic


@dataclass(frozen=True, slots=True)
class TopicState:
    """What the broker says about one topic."""

    name: str
    partitions: int
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartitionDrift:
    """An existing topic whose partition count is not the catalog's."""

    topic: str
    expected: int
    actual: int


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    """An existing topic whose managed config is not the catalog's."""

    topic: str
    config: str
    expected: str
    actual: str | None


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """What ``ensure_topics`` did and found."""

    created: tuple[str, ...]
    existing: tuple[str, ...]
    partition_drift: tuple[PartitionDrift, ...]
    config_drift: tuple[ConfigDrift, ...]

    @property
    def in_sync(self) -> bool:
        """True when every catalog topic exists exactly as the catalog says."""
        return not self.partition_drift and not self.config_drift


async def inspect_topics(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    """Partition counts and managed configs of those ``names`` that exist on the broker."""
    # Only describe listed topics: a metadata request for a missing topic may auto-create it.
    present = set(await admin.list_topics())
    wanted = [name for name in names if name in present]
    if not wanted:
        return {}
    partitions: dict[str, int] = {}
    for topic in await admin.describe_topics(wanted):
        if topic["error_code"] != 0:
            raise for_code(topic["error_code"])(f"describe topic {topic['topic']}")
        partitions[topic["topic"]] = len(topic["partitions"])
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs=dict.fromkeys(MANAGED_CONFIGS))
        for name in wanted
    ]
    configs: dict[str, dict[str, str]] = {name: {} for name in wanted}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            if resource["error_code"] != 0:
                raise for_code(resource["error_code"])(resource["error_message"])
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return {
        name: TopicState(name, partitions[name], configs[name])
        for name in wanted
        if name in partitions
    }


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    catalog: TopicCatalog,
    *,
    replication_factor: int = 1,
    timeout_ms: int = 30_000,
) -> EnsureReport:
    """Create the catalog's missing topics with their configs; report drift of existing ones.

    Existing topics are never altered: raising partitions remaps keys and lowering them is
    impossible, so a difference is reported for an operator to decide. Idempotent; safe to
    race with another creator (its "already exists" counts as existing).
    """
    present = set(await admin.list_topics())
    missing = [spec for spec in catalog if spec.name not in present]
    created: list[str] = []
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(spec.name, spec.partitions, replication_factor, topic_configs=spec.configs)
                for spec in missing
            ],
            timeout_ms=timeout_ms,
        )
        for entry in response.topic_errors:
            topic, code = entry[0], entry[1]
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                message = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
                raise TopicCreationError(topic, message)
    existing = [spec for spec in catalog if spec.name not in created]
    names = [spec.name for spec in existing]
    states = await inspect_topics(admin, names)
    for _ in range(20):
        # A topic created a moment ago (by us or someone else) can be refused as existing
        # before the metadata lists it; wait for it rather than report it in sync.
        if all(name in states for name in names):
            break
        await asyncio.sleep(0.25)
        states = await inspect_topics(admin, names)
    partition_drift = []
    config_drift = []
    for spec in existing:
        state = states.get(spec.name)
        if state is None:  # reported as existing, gone since: let the next run create it
            continue
        if state.partitions != spec.partitions:
            partition_drift.append(PartitionDrift(spec.name, spec.partitions, state.partitions))
        for config, expected in spec.configs.items():
            actual = state.configs.get(config)
            if actual != expected:
                config_drift.append(ConfigDrift(spec.name, config, expected, actual))
    return EnsureReport(
        created=tuple(created),
        existing=tuple(spec.name for spec in existing),
        partition_drift=tuple(partition_drift),
        config_drift=tuple(config_drift),
    )
