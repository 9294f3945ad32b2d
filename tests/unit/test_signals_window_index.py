"""The signals worker's tables keep one expiry entry per window, not one per write."""

from __future__ import annotations

import asyncio

import faust

from zerocontact.signals.tables import WindowIndexTable


def _table(cls: type) -> tuple[faust.App, object]:
    app = faust.App(f"t-{cls.__name__}", store="memory://", Table=cls, autodiscover=False)
    wrapper = app.Table("activity", default=int, partitions=2).tumbling(3600, expires=7200)
    return app, wrapper.table


def test_one_expiry_entry_per_window_however_often_its_keys_are_written() -> None:
    """faust.Table pushed the window's end on every write (the heap grew with the traffic
    until the window expired: 32 h of writes for the activity buckets)."""
    _, stock = _table(faust.Table)
    _, ours = _table(WindowIndexTable)
    windows = [(0.0, 3599.9), (3600.0, 7199.9)]
    for table in (stock, ours):
        for n in range(1_000):
            key = (f"party-{n % 10}", windows[n % 2])
            table._maybe_set_key_ttl(key, 0)  # type: ignore[attr-defined]
    assert len(stock._partition_timestamps[0]) == 1_000  # type: ignore[attr-defined]
    assert sorted(ours._partition_timestamps[0]) == [3599.9, 7199.9]  # type: ignore[attr-defined]
    for table in (stock, ours):
        keys = table._partition_timestamp_keys  # type: ignore[attr-defined]
        assert {end: len(keys[(0, end)]) for _, end in windows} == {3599.9: 5, 7199.9: 5}


def test_an_expired_window_still_loses_every_key() -> None:
    _, ours = _table(WindowIndexTable)
    old, current = (0.0, 3599.9), (4e9, 4e9 + 3599.9)  # 1970 and 2096: stale and not
    for n in range(300):
        for window in (old, current):
            key = (f"party-{n % 30}", window)
            ours.data[key] = n  # type: ignore[attr-defined]
            ours._maybe_set_key_ttl(key, n % 2)  # type: ignore[attr-defined]
    asyncio.run(ours._del_old_keys())  # type: ignore[attr-defined]
    assert sorted({key[1] for key in ours.data}) == [current]  # type: ignore[attr-defined]
    assert len(ours.data) == 30  # type: ignore[attr-defined]
    assert all(  # type: ignore[attr-defined]
        sorted(heap) == [current[1]] for heap in ours._partition_timestamps.values()
    )
