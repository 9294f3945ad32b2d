"""Consumer-group lag read from the broker: committed offsets against the partitions' ends.

The lag exporter (``zerocontact kafka lag-exporter``) runs :class:`LagReader` every interval
and serves the last reading as ``zc_consumer_group_lag{group,topic,partition}``. The figures
come from the broker, not from the consumers, so a consumer that died (or never started)
still shows its lag growing as producers go on.

One reading costs one ListGroups request per broker, one OffsetFetch per group, one Metadata
request and one ListOffsets per partition leader: nothing runs between readings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from zerocontact.platform.kafka.connection import KafkaConnection

__all__ = ["LagCollector", "LagReader", "LagReading", "PartitionLag", "partition_lags"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class PartitionLag:
    """How far one group is behind on one partition."""

    group: str
    topic: str
    partition: int
    lag: int


@dataclass(frozen=True)
class LagReading:
    """One reading of every group's lag, and when it was taken (Unix seconds)."""

    lags: tuple[PartitionLag, ...] = ()
    at: float = 0.0


def partition_lags(
    committed: Mapping[str, Mapping[TopicPartition, int]],
    ends: Mapping[TopicPartition, int],
) -> list[PartitionLag]:
    """Each group's lag per partition it committed on: end offset minus committed offset.

    A partition whose end is unknown (topic deleted since the commit) is left out; a
    committed offset past the end (a truncated or recreated topic) counts as no lag.
    """
    lags = []
    for group, offsets in committed.items():
        for tp, offset in offsets.items():
            end = ends.get(tp)
            if end is None or offset < 0:
                continue
            lags.append(PartitionLag(group, tp.topic, tp.partition, max(end - offset, 0)))
    return sorted(lags)


def _group_ids(listed: Iterable[Any]) -> list[str]:
    """ListGroups answers (group id, protocol type) pairs; only consumer groups have offsets
    a consumer committed (Kafka Connect or schema registry groups use the protocol too)."""
    return sorted({str(g[0]) for g in listed if len(g) < 2 or g[1] in ("consumer", "")})


@dataclass
class LagReader:
    """Reads every consumer group's lag with one long-lived admin client and consumer."""

    connection: KafkaConnection
    client_id: str = "zerocontact-lag-exporter"
    request_timeout_ms: int = 10_000
    _admin: AIOKafkaAdminClient | None = field(default=None, init=False)
    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)

    async def start(self) -> None:
        """Connect (waits for the broker: raises the client's error if none answers)."""
        kwargs = {
            **self.connection.client_kwargs(),
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }
        admin = AIOKafkaAdminClient(**kwargs)
        consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
        try:
            await admin.start()
            await consumer.start()
        except BaseException:
            await admin.close()
            await consumer.stop()
            raise
        self._admin, self._consumer = admin, consumer

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def read(self) -> LagReading:
        """Every consumer group's lag now."""
        assert self._admin is not None and self._consumer is not None, "start() first"
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in _group_ids(await self._admin.list_consumer_groups()):
            offsets = await self._admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items()}
        # Only partitions that exist now: asking for the end of a deleted topic's partition
        # would wait for the request timeout and fail the whole reading.
        wanted = {tp for offsets in committed.values() for tp in offsets}
        existing = await self._partitions({tp.topic for tp in wanted})
        partitions = sorted(tp for tp in wanted if tp.partition in existing.get(tp.topic, ()))
        ends: dict[TopicPartition, int] = {}
        if partitions:
            ends = await self._consumer.end_offsets(partitions)
        return LagReading(tuple(partition_lags(committed, ends)), time.time())

    async def _partitions(self, topics: set[str]) -> dict[str, set[int]]:
        """The partitions of those of ``topics`` that exist (one Metadata request)."""
        assert self._admin is not None
        if not topics:
            return {}
        described = await self._admin.describe_topics(sorted(topics))
        return {
            t["topic"]: {p["partition"] for p in t.get("partitions") or ()}
            for t in described
            if not t.get("error_code")
        }


class LagCollector(Collector):
    """Serves the last :class:`LagReading` (a group that went away is gone from the next)."""

    def __init__(self) -> None:
        self.reading = LagReading()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = self.reading  # one consistent reading per scrape (swapped whole)
        lag = GaugeMetricFamily(
            "zc_consumer_group_lag",
            "Records a consumer group has not committed yet (end offset - committed offset)",
            labels=["group", "topic", "partition"],
        )
        for p in reading.lags:
            lag.add_metric([p.group, p.topic, str(p.partition)], p.lag)
        yield lag
        yield GaugeMetricFamily(
            "zc_consumer_group_lag_last_success_timestamp_seconds",
            "When the lag was last read from the broker (0: not yet)",
            value=reading.at,
        )
