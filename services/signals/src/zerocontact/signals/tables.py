"""The Faust tables behind the features, built from the feature registry, and how they are read.

Every table is changelogged to Kafka (``<app id>-<table>-changelog``), so a worker that starts
without its local store rebuilds it from there. The windowed features of one key kind live in
one *activity* table (``party_activity``, ``device_activity``, ``source_address_activity``):
4 h tumbling buckets with ``expires`` whose values keep 15-min slot counts per measure, the
distinct-party list and the ids of the applications counted (see
:mod:`zerocontact.signals.features`). An event writes its key's current bucket once, whatever
features it feeds, and the application-id guards ride in the same write. A table may only be
written inside per-event stream iteration (docs/architecture.md, decision 1), so the writers take no
batches.

Reads go through the table's window with an explicit timestamp (the lookup Faust's own
``WindowSet.current`` uses), because the support page reads outside stream iteration and an
assessment reads many buckets at the event's time.

The agents read through a cache in front of the tables: an application reads ~20 buckets, and
each Faust read JSON-encodes the key and asks RocksDB twice (contains, get) -- the largest
cost of the worker when profiled. The cache is exact because every write of these tables goes
through :class:`FeatureTables` (write-through) and one worker owns a partition's keys: it is
emptied whenever partitions are assigned or revoked, and every ``cache_seconds`` so that it
holds no more than that many seconds of keys (and no bucket Faust has expired since). The
support page reads the tables themselves.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from base64 import b64decode
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from heapq import heappop, heappush
from typing import Any, Final

import faust
from faust import stores
from faust.stores.rocksdb import Store as FaustRocksDBStore
from faust.types import StoreT

from zerocontact.signals.features import (
    ACTIVITY_BUCKET,
    ACTIVITY_EXPIRES,
    FEATURES,
    Aggregation,
    FeatureDefinition,
    FeatureKey,
    bucket_starts,
    counted,
    distinct_union,
    feature,
    has_id,
    members_of,
    revenue_change_pct,
    slot_of,
    window_part,
)
from zerocontact.signals.store import RocksDBStore

__all__ = ["DISTINCT_CAP", "FeatureTables", "PartyFeatures", "WindowIndexTable"]

# A device seen with this many parties is as suspicious as one seen with more: the member
# lists stop growing there, which bounds the table values.
DISTINCT_CAP: Final = 64
DEDUPE_WINDOW: Final = timedelta(days=1)
# Application ids kept per activity bucket (the redelivery guard; redeliveries are recent).
IDS_CAP: Final = 256


class WindowIndexTable(faust.Table[Any, Any]):
    """``faust.Table`` whose expiry index holds window ends only, never keys.

    faust-streaming indexes a windowed table for expiry in the process: on *every* write it
    pushes the window's end onto its partition's heap and adds the key to that end's key set,
    and both live until the window expires (32 h for the activity buckets). The heap grew with
    the traffic and the key sets with the distinct keys: the worker's memory grew with every
    new customer for 32 hours (the 30-minute soak, docs/signals.md "Memory").

    This table keeps one heap entry per (partition, window end) and no keys. When an end has
    gone stale, expiry scans the store once and drops every key whose window is stale, which
    removes the same keys as Faust's index, plus those a restart recovered from the changelog
    (Faust's index never held those, so they were never expired). A scan reads every key of
    the table's active partitions; it runs when an end goes stale, about once per bucket
    (4 h for the activity tables), not per write.
    """

    def _new_store_by_url(self, url: Any) -> StoreT[Any, Any]:
        # A rocksdb:// table gets the store that applies every RocksDB option (store.py).
        if not issubclass(stores.by_url(url), FaustRocksDBStore):
            return super()._new_store_by_url(url)
        return RocksDBStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    def _maybe_set_key_ttl(self, key: Any, partition: int) -> None:
        if not self._should_expire_keys():
            return
        _, (_, range_end) = key
        ends = self._partition_timestamps[partition]
        if range_end in ends:  # a handful of ends per partition: the buckets of ``expires``
            return
        heappush(ends, range_end)
        latest = self._partition_latest_timestamp[partition]
        self._partition_latest_timestamp[partition] = max(latest, range_end)

    def _maybe_del_key_ttl(self, key: Any, partition: int) -> None:
        return  # the index holds no keys

    async def _del_old_keys(self) -> None:
        window = self.window
        assert window is not None
        now = time.time()
        popped = False
        for ends in self._partition_timestamps.values():
            while ends and window.stale(ends[0], now):
                heappop(ends)
                popped = True
        if popped:
            await self.drop_stale_keys(now)

    async def drop_stale_keys(self, now: float) -> int:
        """Drop every key whose window is stale at ``now`` from the local store; the count.

        Local only, as Faust's expiry: the changelog's retention (the window's ``expires``)
        drops them from the topic. On RocksDB it reads each active partition's raw keys and
        deletes in that partition's database (Faust's own decoding and ``pop`` cost ~30 µs a
        key, a read and a delete in every partition), yielding to the loop between partitions.
        """
        window = self.window
        assert window is not None
        store = self.data
        if self._on_window_close is None and isinstance(store, FaustRocksDBStore):
            dropped = 0
            for db in list(store._dbs_for_actives()):
                stale = [
                    raw
                    for raw in store._visible_keys(db)
                    if window.stale(json.loads(raw)[1][1], now)
                ]
                for raw in stale:
                    db.delete(raw)
                dropped += len(stale)
                await asyncio.sleep(0)
            return dropped
        keys = [key for key in store if window.stale(key[1][1], now)]
        for key in keys:
            value = store.pop(key, None)
            await self.on_window_close(key, value)
        return len(keys)


def _table_options(
    partitions: int, store: dict[str, int | str], values: str = "json"
) -> dict[str, Any]:
    # Keys of windowed tables are (key, (start, end)) tuples: JSON, unlike the raw topics.
    schema: faust.Schema[Any, Any] = faust.Schema(key_serializer="json", value_serializer=values)
    return {"partitions": partitions, "schema": schema, "options": dict(store)}


def _packed(value: bytes, headers: list[tuple[str, bytes]]) -> bytes:
    """A record (value, headers) as compressed bytes: the headers as JSON (latin-1 carries
    any byte), their length, the value. ~800 bytes for an assessment, ~2.4 kB as JSON."""
    head = json.dumps([[name, raw.decode("latin-1")] for name, raw in headers]).encode()
    return zlib.compress(len(head).to_bytes(4, "big") + head + value)


def _unpacked(stored: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The (value, headers) of a :func:`_packed` record, or of a JSON one kept before it."""
    if stored[:1] == b"{":  # kept by a worker before _packed (the changelog keeps 48 h)
        record = json.loads(stored)
        headers = [(name, b64decode(raw)) for name, raw in record["headers"]]
        return b64decode(record["value"]), headers
    packed = zlib.decompress(stored)
    size = int.from_bytes(packed[:4], "big")
    head = json.loads(packed[4 : 4 + size])
    return packed[4 + size :], [(name, raw.encode("latin-1")) for name, raw in head]


@dataclass
class FeatureTables:
    """Every table of the app, created on ``app`` from the registry."""

    app: Any
    partitions: int
    # The store's options for every table (RocksDB's memory bounds; SignalsSettings).
    store_options: dict[str, int | str] = field(default_factory=dict)
    activity: dict[FeatureKey, Any] = field(default_factory=dict)  # key kind -> WindowWrapper
    plain: dict[str, Any] = field(default_factory=dict)  # feature name -> Table
    device_alerts: Any = None
    login_alerts: Any = None
    assessments: Any = None  # application ce_id -> the RiskAssessment record published for it
    # (table name, key, bucket start or None) -> value, for the agents' reads; see above.
    cache: dict[tuple[str, str, float | None], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def options() -> dict[str, Any]:  # one dict per table: Faust's store edits it
            return _table_options(self.partitions, self.store_options)

        for kind in FeatureKey:
            name = f"{kind.value.removesuffix('_id')}_activity"
            self.activity[kind] = self.app.Table(
                name, default=dict, help=f"windowed activity per {kind.value}", **options()
            ).tumbling(ACTIVITY_BUCKET, expires=ACTIVITY_EXPIRES)
        for definition in FEATURES:
            if definition.bucket is None:
                self.plain[definition.name] = self.app.Table(
                    definition.name, default=dict, help=definition.description, **options()
                )
        # One alert per subject and window, not one per event (written only when one fires).
        self.device_alerts = self.app.Table(
            "device_shared_alerts", default=bool, **options()
        ).tumbling(timedelta(hours=24), expires=timedelta(hours=48))
        self.login_alerts = self.app.Table(
            "failed_login_burst_alerts", default=bool, **options()
        ).tumbling(timedelta(hours=1), expires=timedelta(hours=2))
        # The assessment published for each application, kept as long as a duplicate of the
        # application is recognised (DEDUPE_WINDOW): a duplicate sends the same record again.
        # Its values are bytes (_packed): a third of the JSON record's size.
        self.assessments = self.app.Table(
            "risk_assessments",
            default=bytes,
            value_type=bytes,  # Faust picks the store's and the changelog's codec by this type
            **_table_options(self.partitions, self.store_options, values="raw"),
        ).tumbling(DEDUPE_WINDOW, expires=2 * DEDUPE_WINDOW)

    @property
    def party_table(self) -> Any:
        """A party-keyed table: the web page routes a party's request by it."""
        return self.plain["repayment_history"]

    # -- the bucket store: cached reads, write-through writes ---------------------------------

    def bucket(self, wrapper: Any, key: str, at: float, *, cached: bool = True) -> Any:
        """The value of ``key`` in the bucket of ``wrapper``'s table that holds ``at``."""
        table = wrapper.table
        window_range = table.window.current(at)
        if not cached:
            return table._get_key((key, window_range))
        slot = (table.name, key, window_range[0])
        try:
            return self.cache[slot]
        except KeyError:
            value = self.cache[slot] = table._get_key((key, window_range))
            return value

    def set_bucket(self, wrapper: Any, key: str, at: float, value: Any) -> None:
        """Write ``key`` in the bucket holding ``at`` (inside stream iteration only)."""
        table = wrapper.table
        window_range = table.window.current(at)
        table._set_key((key, window_range), value)  # what WindowWrapper's __setitem__ does
        self.cache[(table.name, key, window_range[0])] = value

    def plain_value(self, name: str, key: str, *, cached: bool = True) -> Any:
        """The value of ``key`` in the whole-history table ``name``."""
        table = self.plain[name]
        if not cached:
            return table[key]
        slot = (name, key, None)
        try:
            return self.cache[slot]
        except KeyError:
            value = self.cache[slot] = table[key]
            return value

    def set_plain(self, name: str, key: str, value: Any) -> None:
        """Write ``key`` in the whole-history table ``name`` (inside stream iteration only)."""
        self.plain[name][key] = value
        self.cache[(name, key, None)] = value

    def forget(self, *_: Any, **__: Any) -> None:
        """Empty the read cache (a rebalance moved partitions, or its period is over)."""
        self.cache.clear()

    # -- writes (inside stream iteration only) ---------------------------------------------

    def record(
        self,
        kind: FeatureKey,
        key: str,
        at: float,
        *,
        count: str | None = None,
        member: str | None = None,
        event_id: str | None = None,
    ) -> bool:
        """One event into ``key``'s current activity bucket: a single table write (or none).

        ``count`` is the measure it adds one to, ``member`` a party for the distinct count,
        ``event_id`` an application id for :meth:`seen`; an ``event_id`` the bucket holds
        already counts nothing (the same record delivered again). True when it wrote.
        """
        wrapper = self.activity[kind]
        current = self.bucket(wrapper, key, at)
        start = float(wrapper.table.window.current(at)[0])
        updated = counted(
            current,
            slot_of(at, start),
            count=count,
            member=member,
            event_id=event_id,
            member_cap=DISTINCT_CAP,
            ids_cap=IDS_CAP,
        )
        if updated is None:
            return False
        self.set_bucket(wrapper, key, at, updated)
        return True

    def seen(self, kind: FeatureKey, key: str, event_id: str, at: float) -> bool:
        """True when ``key``'s buckets of the last ``DEDUPE_WINDOW`` hold ``event_id``."""
        wrapper = self.activity[kind]
        step = ACTIVITY_BUCKET.total_seconds()
        buckets = int(DEDUPE_WINDOW / ACTIVITY_BUCKET) + 1
        return any(
            has_id(self.bucket(wrapper, key, at - i * step), event_id) for i in range(buckets)
        )

    def published(self, event_id: str, at: float) -> tuple[bytes, list[tuple[str, bytes]]] | None:
        """The (value, headers) kept for application ``event_id`` by :meth:`keep_published`
        from a delivery at most ``DEDUPE_WINDOW`` before ``at``; None when there is none."""
        for when in (at, at - DEDUPE_WINDOW.total_seconds()):  # its window or the one before
            stored = self.bucket(self.assessments, event_id, when)
            if stored:
                return _unpacked(stored)
        return None

    def keep_published(
        self, event_id: str, at: float, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Keep the record about to be published for application ``event_id`` (one write)."""
        self.set_bucket(self.assessments, event_id, at, _packed(value, headers))

    def raise_once(self, wrapper: Any, subject: str, at: float) -> tuple[bool, float]:
        """(True the first time in this window, the window's start) for an alert's subject."""
        window_start = float(wrapper.table.window.current(at)[0])
        if self.bucket(wrapper, subject, at):
            return False, window_start
        self.set_bucket(wrapper, subject, at, True)
        return True, window_start

    # -- reads -------------------------------------------------------------------------------

    def windowed_value(
        self, definition: FeatureDefinition, key: str, at: float, *, cached: bool = True
    ) -> int:
        """The window's value of a bucketed feature at ``at`` (epoch seconds)."""
        wrapper = self.activity[definition.key]
        window = wrapper.table.window
        starts = bucket_starts(definition, at)
        if definition.aggregation is Aggregation.DISTINCT_PARTIES:
            return distinct_union(
                (
                    members_of(self.bucket(wrapper, key, s, cached=cached), definition.measure)
                    for s in starts
                ),
                cap=DISTINCT_CAP,
            )
        return sum(
            window_part(
                definition,
                self.bucket(wrapper, key, s, cached=cached),
                slot_of(s, float(window.current(s)[0])),
            )
            for s in starts
        )

    def keyed_values(
        self, key_kind: FeatureKey, key: str, at: float, *, cached: bool = True
    ) -> dict[str, int]:
        """Every windowed feature aggregated under ``key_kind`` for ``key``."""
        return {
            d.name: self.windowed_value(d, key, at, cached=cached)
            for d in FEATURES
            if d.key is key_kind and d.bucket is not None
        }

    def party_features(
        self, party_id: str, at: float | None = None, *, cached: bool = True
    ) -> PartyFeatures:
        """Every party-keyed feature of ``party_id`` at ``at`` (default: now).

        ``cached=False`` outside the agents (the support page): it reads the tables.
        """
        moment = time.time() if at is None else at
        counts = self.keyed_values(FeatureKey.PARTY, party_id, moment, cached=cached)
        repayments = self.plain_value("repayment_history", party_id, cached=cached) or {}
        reports, change = revenue_change_pct(
            self.plain_value("merchant_revenue_trend", party_id, cached=cached)
        )
        values: dict[str, Decimal] = {name: Decimal(v) for name, v in counts.items()}
        values["repayments_on_time"] = Decimal(int(repayments.get("on_time", 0)))
        values["repayments_late"] = Decimal(int(repayments.get("late", 0)))
        values["max_days_late"] = Decimal(int(repayments.get("max_days_late", 0)))
        values["merchant_revenue_reports"] = Decimal(reports)
        values["merchant_revenue_change_pct"] = change
        return PartyFeatures(values)


@dataclass(frozen=True)
class PartyFeatures:
    """Feature values by name, with the window each was aggregated over."""

    values: dict[str, Decimal]

    def listed(self) -> list[tuple[str, Decimal, str]]:
        """(name, value, window label) in name order."""
        return [(name, value, window_of(name)) for name, value in sorted(self.values.items())]


def window_of(name: str) -> str:
    """The window label of a feature value's name ("" for whole-history values)."""
    try:
        return feature(name).window_label
    except KeyError:
        return ""
