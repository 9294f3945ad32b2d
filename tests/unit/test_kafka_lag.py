"""Consumer-group lag: the arithmetic and what the exporter serves of a reading."""

from __future__ import annotations

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from zerocontact.platform.kafka.lag import LagCollector, LagReading, PartitionLag, partition_lags


def test_lag_is_end_minus_committed_per_partition() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    committed = {"g1": {a0: 3, a1: 10}, "g2": {a0: 0, b0: 5}}
    ends = {a0: 10, a1: 10, b0: 4}
    assert partition_lags(committed, ends) == [
        PartitionLag("g1", "a", 0, 7),
        PartitionLag("g1", "a", 1, 0),  # caught up
        PartitionLag("g2", "a", 0, 10),
        PartitionLag("g2", "b", 0, 0),  # committed past the end (topic recreated): no lag
    ]


def test_lag_leaves_out_partitions_without_an_end_or_a_commit() -> None:
    gone, kept = TopicPartition("deleted", 0), TopicPartition("a", 0)
    assert partition_lags({"g": {gone: 3, kept: -1}}, {kept: 5}) == []


def test_collector_serves_the_last_reading_only() -> None:
    collector = LagCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("zc_consumer_group_lag_last_success_timestamp_seconds") == 0
    collector.reading = LagReading((PartitionLag("g", "t", 2, 42),), at=1234.5)
    labels = {"group": "g", "topic": "t", "partition": "2"}
    assert registry.get_sample_value("zc_consumer_group_lag", labels) == 42
    assert registry.get_sample_value("zc_consumer_group_lag_last_success_timestamp_seconds") == (
        1234.5
    )
    collector.reading = LagReading((), at=1300.0)  # the group went away: so does its series
    assert registry.get_sample_value("zc_consumer_group_lag", labels) is None
