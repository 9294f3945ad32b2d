"""The signals worker's windowed tables index window ends for expiry, never keys."""

from __future__ import annotations

import asyncio
import json
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.exceptions import ImproperlyConfigured
from faust.types import TP

from zerocontact.platform.ids import new_id
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.tables import WindowIndexTable, _packed, _unpacked

OLD, CURRENT = (0.0, 3599.9), (4e9, 4e9 + 3599.9)  # 1970 and 2096: stale and not


def _table(cls: type, **app: Any) -> Any:
    app.setdefault("store", "memory://")
    faust_app = faust.App(f"t-{cls.__name__}", Table=cls, autodiscover=False, **app)
    schema = faust.Schema(key_serializer="json", value_serializer="json")
    wrapper = faust_app.Table("activity", default=int, partitions=2, schema=schema)
    return wrapper.tumbling(3600, expires=7200).table


def test_the_index_holds_window_ends_not_keys() -> None:
    """faust.Table pushed the window's end on every write and kept every key until its window
    expired (32 h of traffic and of new customers for the activity buckets)."""
    stock, ours = _table(faust.Table), _table(WindowIndexTable)
    windows = [(0.0, 3599.9), (3600.0, 7199.9)]
    for table in (stock, ours):
        for n in range(1_000):
            table._maybe_set_key_ttl((f"party-{n}", windows[n % 2]), n % 2)
    assert sum(map(len, stock._partition_timestamps.values())) == 1_000
    assert sum(map(len, stock._partition_timestamp_keys.values())) == 1_000
    assert {p: sorted(ends) for p, ends in ours._partition_timestamps.items()} == {
        0: [3599.9],
        1: [7199.9],
    }
    assert not ours._partition_timestamp_keys
    assert ours._partition_latest_timestamp == {0: 3599.9, 1: 7199.9}


def test_an_expired_window_loses_every_key_even_those_a_restart_recovered() -> None:
    ours = _table(WindowIndexTable)
    for n in range(300):
        for window in (OLD, CURRENT):
            key = (f"party-{n % 30}", window)
            ours.data[key] = n
            if n < 150:  # the rest came from the changelog: never written by this process
                ours._maybe_set_key_ttl(key, n % 2)
    asyncio.run(ours._del_old_keys())
    assert sorted({key[1] for key in ours.data}) == [CURRENT]
    assert len(ours.data) == 30
    assert all(sorted(heap) == [CURRENT[1]] for heap in ours._partition_timestamps.values())


def test_nothing_is_scanned_until_an_end_is_stale() -> None:
    ours = _table(WindowIndexTable)
    ours.data[("party-1", OLD)] = 1  # recovered, and no window of this process is stale yet
    ours._maybe_set_key_ttl(("party-2", CURRENT), 0)
    ours.data[("party-2", CURRENT)] = 1
    asyncio.run(ours._del_old_keys())
    assert len(ours.data) == 2


def test_expiry_on_rocksdb_drops_stale_keys_in_every_active_partition(tmp_path: Path) -> None:
    pytest.importorskip("rocksdict")
    ours = _table(WindowIndexTable, store="rocksdb://", datadir=str(tmp_path))
    topic = ours.changelog_topic_name
    ours.app.assignor.assigned_actives = lambda: {TP(topic, 0), TP(topic, 1)}
    store = ours.data
    for n in range(1_000):
        for window in (OLD, CURRENT):
            db = store._db_for_partition(n % 2)
            db[store._encode_key((f"party-{n}", window))] = store._encode_value(n)
    started = time.perf_counter()
    assert asyncio.run(ours.drop_stale_keys(time.time())) == 1_000
    print(f"dropped 1,000 of 2,000 keys in {(time.perf_counter() - started) * 1e3:.1f} ms")
    left = sorted(store.keys())
    assert len(left) == 1_000 and {tuple(key[1]) for key in left} == {CURRENT}
    assert store[("party-7", CURRENT)] == 7


def _sst_files(store: Any, partition: int) -> int:
    return len(list(store.partition_path(partition).glob("*.sst")))


def _rocksdb_app(name: str, datadir: Path) -> Any:
    pytest.importorskip("rocksdict")
    return faust.App(
        name, Table=WindowIndexTable, autodiscover=False, store="rocksdb://", datadir=str(datadir)
    )


def _files_after_flushes(
    options: dict[str, Any], tmp_path: Path, flushes: int, *, settle_s: float = 10
) -> int:
    """SST files of one partition after ``flushes`` memtable flushes of keys in time order
    (the tables' UUIDv7 ids), once compaction has had its chance to merge them."""
    faust_app = _rocksdb_app("t-files", tmp_path)
    schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    table = faust_app.Table("kept", default=dict, partitions=1, schema=schema, options=options)
    store: Any = table.data
    db = store._db_for_partition(0)
    for _flush in range(flushes):
        for _ in range(100):
            db[store._encode_key(new_id())] = store._encode_value({"score": 512})
        db.flush()
    deadline = time.monotonic() + settle_s
    while _sst_files(store, 0) > 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # compaction runs on RocksDB's own threads
    time.sleep(0.2)
    files = _sst_files(store, 0)
    assert len(list(db.keys())) == 100 * flushes  # merged, nothing lost
    db.close()
    return files


def test_a_table_keeps_a_few_files_however_often_it_flushes(tmp_path: Path) -> None:
    """RocksDB keeps every SST file open, and leveled compaction (Faust's) never merged the
    files of keys arriving in time order: one file per flush (the soak's descriptors)."""
    options = SignalsSettings(kafka_bootstrap_servers="localhost:9092").rocksdb_options()
    assert _files_after_flushes(options, tmp_path / "ours", 20) <= 2
    stock = {key: options[key] for key in ("write_buffer_size", "max_write_buffer_number")}
    assert _files_after_flushes(stock, tmp_path / "stock", 20, settle_s=1) >= 10


def test_an_option_rocksdb_does_not_have_is_refused_when_the_table_is_made(
    tmp_path: Path,
) -> None:
    faust_app = _rocksdb_app("t-bad", tmp_path)
    made = faust_app.Table("kept", default=dict, partitions=1, options={"level_zero_trigger": 1})
    with pytest.raises(ImproperlyConfigured, match="table kept: RocksDB has no option level_"):
        _ = made.data
    styled = faust_app.Table(
        "styled", default=dict, partitions=1, options={"compaction_style": "x"}
    )
    with pytest.raises(ImproperlyConfigured, match="compaction_style 'x' is not one of"):
        _ = styled.data


def test_a_kept_record_comes_back_byte_for_byte_in_either_format() -> None:
    value = bytes(range(256)) * 4
    headers = [("ce_id", b"0190-assessment"), ("traceparent", b"00-ab-cd-01"), ("bin", b"\xff\x00")]
    packed = _packed(value, headers)
    assert _unpacked(packed) == (value, headers)
    assert len(packed) < len(value) // 2  # compressed
    legacy = {  # the JSON record a worker kept before the packed one
        "value": b64encode(value).decode(),
        "headers": [[name, b64encode(raw).decode()] for name, raw in headers],
    }
    assert _unpacked(json.dumps(legacy).encode()) == (value, headers)
