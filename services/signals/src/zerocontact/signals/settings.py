"""Settings of the signals worker (``ZC_SIGNALS_*``; Kafka from ``KAFKA_BOOTSTRAP_SERVERS``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from zerocontact.platform.settings import ServiceSettings


class SignalsSettings(ServiceSettings):
    """The Faust app's identity, store, topics and tuning knobs.

    ``app_id`` names the consumer group and prefixes the changelog and repartition topics,
    so two deployments (or two test runs) with different ids never share state. Topic names
    are settings so tests can run against topics of their own.
    """

    model_config = SettingsConfigDict(env_prefix="ZC_SIGNALS_", extra="ignore")

    service_name: str = "signals"
    app_id: str = "zc-signals-risk"
    # "rocksdb://" (rocksdict) in production; "memory://" for unit tests.
    store: str = "rocksdb://"
    data_dir: Path = Path(".cache/signals")
    http_port: int = Field(default=6066, ge=1, le=65535)
    loan_topic: str = "loan.events.v1"
    identity_topic: str = "identity.events.v1"
    risk_topic: str = "signals.risk.v1"
    # Partitions of the input topics; the app's own topics get as many, so that every
    # party-keyed stream and table is co-partitioned with the inputs.
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # Throughput/latency knobs (see docs/signals.md for what was measured).
    producer_linger_ms: int = Field(default=5, ge=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    stream_buffer_maxsize: int = Field(default=4096, ge=1)
    table_cleanup_interval_s: float = Field(default=60.0, gt=0)
    # The agents' read cache in front of the tables is emptied this often (bounds its memory).
    read_cache_seconds: float = Field(default=60.0, gt=0)
    # A worker that died without leaving the group holds its partitions this long.
    session_timeout_s: float = Field(default=30.0, ge=6)
    # Every table partition is a RocksDB database of its own (11 tables x topic_partitions),
    # each with its own memtables and block cache. Faust's defaults (three 64 MiB write
    # buffers, a 2 GiB block cache, per database) let the worker's memory grow by every
    # write until a memtable fills: +10.9 % in a 30-minute soak, and gigabytes at sixty-six
    # databases. These bound it (docs/signals.md, "Memory").
    rocksdb_write_buffer_bytes: int = Field(default=1 << 20, ge=64 << 10)
    rocksdb_write_buffers: int = Field(default=2, ge=1)
    rocksdb_block_cache_bytes: int = Field(default=2 << 20, ge=64 << 10)
    # RocksDB keeps every SST file open, and the tables' keys (UUIDv7 ids) arrive in time
    # order: leveled compaction never merged their files, one per flush. Universal compaction
    # merges a database's sorted runs once it holds this many (docs/signals.md, "Files").
    rocksdb_sorted_runs: int = Field(default=2, ge=2)

    def rocksdb_options(self) -> dict[str, int | str]:
        """Faust's RocksDB options for one table (a new dict: Faust's store takes keys out of
        the dict it is given)."""
        return {
            "write_buffer_size": self.rocksdb_write_buffer_bytes,
            "max_write_buffer_number": self.rocksdb_write_buffers,
            "block_cache_size": self.rocksdb_block_cache_bytes,
            # applied by zerocontact.signals.store (Faust's own store drops these)
            "compaction_style": "universal",
            "level_zero_file_num_compaction_trigger": self.rocksdb_sorted_runs,
        }
