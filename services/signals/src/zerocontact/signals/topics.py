"""The app's topics, created before its consumer joins the group.

Faust declares its internal (repartition) topics and its tables' changelog topics when its
consumer has started, moments before the first assignment; the broker's metadata does not
show them yet, so the assignor skips them ("Ignoring missing topic") and the group rebalances
again once the consumer's metadata is refreshed (``consumer_metadata_max_age_ms`` later),
recovering every table a second time. A second rebalance during that recovery has left a
stage's partitions unprocessed ("Stream has not started processing"). Creating the missing
topics before the app starts (the worker's first start), with the partitions and settings Faust
would give them, makes the first assignment the only one. Faust's own declaration still runs and
finds them there.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from zerocontact.signals.settings import SignalsSettings

__all__ = ["TopicSpec", "app_topics", "declare_app_topics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic as Faust would declare it."""

    name: str
    partitions: int
    replicas: int
    config: dict[str, str]


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _spec(topic: Any, name: str, settings: SignalsSettings) -> TopicSpec:
    # The topic configuration Faust's aiokafka transport derives (Transport._topic_config).
    config = {str(k): str(v) for k, v in (topic.config or {}).items()}
    policy = [
        flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on
    ]
    if policy:
        config.setdefault("cleanup.policy", ",".join(policy))
    if topic.retention:
        config.setdefault("retention.ms", str(int(_seconds(topic.retention) * 1000)))
    return TopicSpec(
        name,
        topic.partitions or settings.topic_partitions,
        topic.replicas or settings.topic_replication_factor,
        config,
    )


def app_topics(app: Any, settings: SignalsSettings) -> list[TopicSpec]:
    """Every internal topic an agent of ``app`` consumes and every table's changelog topic."""
    topics: list[Any] = [
        agent.channel for agent in app.agents.values() if getattr(agent.channel, "internal", False)
    ]
    topics += [table.changelog_topic for table in app.tables.values()]
    found = {name: _spec(topic, name, settings) for topic in topics for name in topic.topics}
    return [found[name] for name in sorted(found)]


async def declare_app_topics(app: Any, settings: SignalsSettings, wait_s: float = 10) -> None:
    """Create the app's topics the broker lacks and wait until its metadata lists them."""
    wanted = app_topics(app, settings)
    admin = AIOKafkaAdminClient(
        **settings.kafka_connection().client_kwargs(), client_id=f"{settings.app_id}-declare"
    )
    await admin.start()
    try:
        missing = {t.name for t in wanted} - set(await admin.list_topics())
        if not missing:
            return
        # A topic another worker created meanwhile is an error in the response, not raised.
        await admin.create_topics(
            [
                NewTopic(t.name, t.partitions, t.replicas, topic_configs=t.config)
                for t in wanted
                if t.name in missing
            ]
        )
        for _ in range(int(wait_s / 0.1)):  # until the broker's metadata lists them
            if not missing - set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        log.info("topics created", extra={"topics": sorted(missing)})
    finally:
        await admin.close()
