"""The signals worker's windowed tables index window ends for expiry, never keys."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from zerocontact.signals.tables import WindowIndexTable

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
