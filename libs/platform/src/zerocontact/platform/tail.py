"""Reading a topic's records decoded, for people: ``zerocontact topics tail TOPIC``.

A record's value is decoded with the topic catalog (topic -> wrapper message -> the event set
in its ``oneof``), a dead letter's with the catalog row of the topic it came from
(``dlq_original_topic``). Personal fields are masked (:mod:`zerocontact.platform.redact`).
A record that does not decode is reported as such (its size and why), never raised.

The consumer has no group and never commits: tailing a topic moves nobody's offsets.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from zerocontact.platform.kafka.connection import KafkaConnection, as_connection
from zerocontact.platform.redact import masked_dict
from zerocontact.platform.topics import RAW_BYTES, TopicCatalog, TopicSpec, message_class

__all__ = [
    "DEFAULT_LAST",
    "Decoder",
    "StartAt",
    "TailedRecord",
    "TopicNotFound",
    "kafka_consumer",
    "parse_since",
    "render",
    "tail",
]

DEFAULT_LAST: Final = 10
"""Without --from-beginning or --since, a tail starts this many records before each end."""

_SINCE: Final = re.compile(r"^\s*(?P<amount>[0-9]+)\s*(?P<unit>[smhd])\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Shown for a record in this order; the CloudEvents attributes a person looks for first.
_SHOWN_HEADERS: Final = ("ce_type", "ce_id", "ce_time", "ce_subject", "ce_source", "traceparent")


class TopicNotFound(LookupError):
    """The topic does not exist on the broker."""


def parse_since(text: str) -> timedelta:
    """``"10m"`` -> 10 minutes; units ``s``, ``m``, ``h``, ``d``. Raises ``ValueError``."""
    match = _SINCE.match(text)
    if match is None or int(match["amount"]) == 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 10m, 2h or 1d")
    return timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where each partition is read from: its beginning, a moment, or its last records."""

    from_beginning: bool = False
    since: datetime | None = None
    last: int = DEFAULT_LAST


@dataclass(frozen=True, slots=True)
class TailedRecord:
    """One record as shown: where it is, its CloudEvents headers and its decoded event."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: str | None
    headers: dict[str, str]
    size: int
    type: str | None = None
    event: dict[str, Any] | None = None
    decoded_as: str | None = None  # the catalog row whose value message decoded it
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` line: every field, ``error`` null when the record decoded."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "key": self.key,
            "headers": self.headers,
            "type": self.type,
            "event": self.event,
            "decoded_as": self.decoded_as,
            "size": self.size,
            "error": self.error,
        }


class Decoder:
    """Decodes records with the catalog; ``aliases`` decode other topic names as catalog rows.

    An alias (``{"mirror.loan": "loan.events.v1"}``) serves topics the catalog does not name:
    a mirror on another cluster, a test's topic. Aliasing a dead-letter row also aliases its
    source, so the dead letters' original values decode too.
    """

    def __init__(self, catalog: TopicCatalog, aliases: Mapping[str, str] | None = None) -> None:
        self._catalog = catalog
        self._aliases: dict[str, TopicSpec] = {}
        for name, row in (aliases or {}).items():
            spec = catalog.get(row)  # KeyError: the caller names a row that does not exist
            self._aliases[name] = spec
            if spec.dead_letter_of is not None and name.endswith(".dlq"):
                self._aliases.setdefault(
                    name.removesuffix(".dlq"), catalog.get(spec.dead_letter_of)
                )

    def spec_for(self, topic: str) -> TopicSpec | None:
        """The catalog row that describes ``topic``, None when neither names it."""
        if topic in self._aliases:
            return self._aliases[topic]
        try:
            return self._catalog.get(topic)
        except KeyError:
            return None

    def decode(self, record: ConsumerRecord[bytes, bytes]) -> TailedRecord:
        """The record decoded and masked, or with ``error`` saying why it could not be."""
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        shown = TailedRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=None if record.key is None else record.key.decode(errors="replace"),
            headers=headers,
            size=len(record.value or b""),
        )
        spec = self.spec_for(record.topic)
        if spec is None:
            return _failed(shown, f"{record.topic} is not in the topic catalog")
        if spec.value == RAW_BYTES:  # a dead letter: the value is the original record's
            original = headers.get("dlq_original_topic") or spec.dead_letter_of or ""
            source = self.spec_for(original)
            if source is None and spec.dead_letter_of is not None:
                source = self._catalog.get(spec.dead_letter_of)
            if source is None or source.value == RAW_BYTES:
                return _failed(shown, f"original topic {original!r} is not in the topic catalog")
            spec = source
        return _decoded(shown, spec, record.value)


def _failed(shown: TailedRecord, error: str) -> TailedRecord:
    return replace(shown, error=error)


def _decoded(shown: TailedRecord, spec: TopicSpec, value: bytes | None) -> TailedRecord:
    if value is None:
        return _failed(shown, "no value (a tombstone)")
    try:
        wrapper = message_class(spec.value).FromString(value)
    except LookupError as exc:
        return _failed(shown, str(exc))
    except DecodeError as exc:
        return _failed(shown, f"not a {spec.value}: {exc}")
    oneofs = wrapper.DESCRIPTOR.oneofs
    case = wrapper.WhichOneof(oneofs[0].name) if oneofs else None
    if case is None:
        # A wrapper without its event: written by a newer schema, or not this message at all.
        return _failed(shown, f"a {spec.value} with no event this catalog knows")
    event = getattr(wrapper, case)
    return replace(
        shown, type=event.DESCRIPTOR.full_name, event=masked_dict(event), decoded_as=spec.name
    )


def kafka_consumer(
    bootstrap: str | KafkaConnection, *, request_timeout_s: float = 10.0
) -> AIOKafkaConsumer:
    """The tail's Kafka consumer: no group, no commits; TLS and SASL as the connection says."""
    return AIOKafkaConsumer(
        **as_connection(bootstrap).client_kwargs(),
        client_id="zerocontact-tail",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # an offset deleted by retention: go on from the oldest
        request_timeout_ms=max(int(request_timeout_s * 1000), 1000),
    )


async def _seek(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    start: StartAt,
) -> None:
    if start.from_beginning:
        await consumer.seek_to_beginning(*partitions)
    elif start.since is not None:
        moment = int(start.since.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(partitions, moment))
        for tp in partitions:
            at = found.get(tp)
            # None: no record at or after the moment in that partition.
            consumer.seek(tp, ends[tp] if at is None else at.offset)
    else:
        beginnings = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(beginnings[tp], ends[tp] - start.last))


async def tail(
    bootstrap: str | KafkaConnection,
    topic: str,
    decoder: Decoder,
    *,
    start: StartAt,
    key: str | None = None,
    follow: bool = False,
    limit: int | None = None,
    connect_timeout_s: float = 10.0,
) -> AsyncGenerator[TailedRecord, None]:
    """The topic's records from ``start``, decoded; without ``follow``, up to the end offsets
    seen at the start. Raises :class:`TopicNotFound`, ``TimeoutError`` or Kafka errors."""
    consumer = kafka_consumer(bootstrap, request_timeout_s=connect_timeout_s)
    try:
        async with asyncio.timeout(connect_timeout_s):
            await consumer.start()
            # All topics' metadata, not the topic's: asking for a missing topic may auto-create
            # it. consumer.topics() asks the same but keeps only the names.
            cluster = await consumer._client.fetch_all_metadata()
            found = cluster.partitions_for_topic(topic)
            if not found:
                raise TopicNotFound(topic)
            partitions = [TopicPartition(topic, p) for p in sorted(found)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await _seek(consumer, partitions, ends, start)
            remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        wanted = None if key is None else key.encode()
        shown = 0
        while follow or remaining:
            batches = await consumer.getmany(*(partitions if follow else remaining), timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if not follow and record.offset >= ends[tp]:
                        continue
                    if wanted is not None and record.key != wanted:
                        continue
                    yield decoder.decode(record)
                    shown += 1
                    if limit is not None and shown >= limit:
                        return
            if not follow:
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


def render(record: TailedRecord) -> RenderableType:
    """One record as a rich block: where it is, its headers, then the event (or the error)."""
    title = Text(f"{record.topic} [{record.partition}] @{record.offset}", style="bold")
    when = record.timestamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("key", Text(str(record.key)))
    grid.add_row("type", Text(record.type or "-"))
    for name in _SHOWN_HEADERS:
        # ce_type repeats the decoded type; shown only when the two disagree.
        if name in record.headers and record.headers[name] != record.type:
            grid.add_row(name, Text(record.headers[name]))
    for name, value in record.headers.items():
        if name.startswith("dlq_"):
            grid.add_row(name, Text(value, style="yellow" if name == "dlq_error" else ""))
    parts: list[RenderableType] = [grid]
    if record.error is not None:
        parts.append(Text(f"not decoded ({record.size} bytes): {record.error}", style="red"))
    else:
        parts.append(JSON(json.dumps(record.event, ensure_ascii=False)))
    return Panel(Group(*parts), title=title, subtitle=when, title_align="left", expand=False)
